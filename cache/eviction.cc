#include "cache/eviction.h"

#include <algorithm>

namespace glancefs::cache {

std::vector<std::string> ChooseVictims(std::vector<EvictionCandidate> candidates,
                                       uint64_t cached_total, uint64_t max_bytes,
                                       uint64_t need_free) {
  std::vector<std::string> victims;
  const bool over_size = max_bytes > 0 && cached_total > max_bytes;
  if (!over_size && need_free == 0) return victims;
  candidates.erase(std::remove_if(candidates.begin(), candidates.end(),
                                  [](const EvictionCandidate& c) { return c.cached_bytes == 0; }),
                   candidates.end());
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const EvictionCandidate& a, const EvictionCandidate& b) {
                     if (a.pinned != b.pinned) return !a.pinned;
                     return a.last_access < b.last_access;
                   });
  uint64_t freed = 0;
  for (const EvictionCandidate& c : candidates) {
    const bool over = max_bytes > 0 && cached_total > freed && cached_total - freed > max_bytes;
    const bool still_over = over || freed < need_free;
    if (!still_over) break;
    victims.push_back(c.id);
    freed += c.cached_bytes;
  }
  return victims;
}

}  // namespace glancefs::cache
