// CacheMetrics: the cache's totals that are not per image: the counters of every image added
// up (CacheCounters, block_cache.h), evictions, verifications, signature verdicts and the fetch
// latency histogram. Counters are atomics, bumped without locks; the histogram has its own
// leaf lock (taken with no other held, held for an increment). Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "cache/block_cache.h"
#include "fs/base/mutex.h"

namespace glancefs::cache {

// Counter values by name, in the order metrics show them.
std::vector<std::pair<std::string, uint64_t>> CounterValues(const CacheCounters& c);

class CacheMetrics {
 public:
  CacheMetrics();
  CacheMetrics(const CacheMetrics&) = delete;
  CacheMetrics& operator=(const CacheMetrics&) = delete;

  CacheCounters totals;
  std::atomic<uint64_t> evictions{0}, evicted_bytes{0}, verified{0}, verify_failures{0};
  std::atomic<uint64_t> signatures_verified{0}, signatures_invalid{0}, signatures_unverifiable{0};

  // Adds `n` to counter `member` of `image`'s counters and of the totals.
  void Add(CacheCounters& image, std::atomic<uint64_t> CacheCounters::*member, uint64_t n = 1) {
    (image.*member).fetch_add(n, std::memory_order_relaxed);
    (totals.*member).fetch_add(n, std::memory_order_relaxed);
  }
  void RecordLatency(uint64_t us) EXCLUDES(mu_);
  // Fills the fields of `t` this object keeps (all but images, cached, memory and disk bytes).
  void Fill(CacheTotals& t) EXCLUDES(mu_);

 private:
  Mutex mu_;
  std::vector<uint64_t> latency_counts_ GUARDED_BY(mu_);  // one per bucket + overflow
  uint64_t latency_total_us_ GUARDED_BY(mu_) = 0;
};

}  // namespace glancefs::cache
