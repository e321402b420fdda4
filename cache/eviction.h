// Eviction: which images to evict, as a pure choice (nbdkit's cache filter splits the same way:
// lru.c keeps the order, reclaim.c decides). No locks, no I/O: the image table (image_table.h)
// gathers the candidates, this picks, and the caller evicts them outside every lock that
// readers of other images wait on.
//
// The rule: while the cached bytes exceed max_bytes (0: no limit) or fewer than need_free
// bytes have been freed, evict whole images, unpinned before pinned (pinned: queued for or
// done by pre-fetch), least recently read first. The image being fetched is never a candidate
// (the caller leaves it out), nor an image with nothing cached.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace glancefs::cache {

struct EvictionCandidate {
  std::string id;
  uint64_t cached_bytes = 0;
  bool pinned = false;
  int64_t last_access = 0;
};

// The ids to evict, in order. `cached_total`: the bytes cached in all, candidates or not.
std::vector<std::string> ChooseVictims(std::vector<EvictionCandidate> candidates,
                                       uint64_t cached_total, uint64_t max_bytes,
                                       uint64_t need_free);

}  // namespace glancefs::cache
