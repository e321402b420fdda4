#include "cache/cache_metrics.h"

#include <iterator>

namespace glancefs::cache {
namespace {

constexpr double kLatencyBounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

}  // namespace

std::vector<std::pair<std::string, uint64_t>> CounterValues(const CacheCounters& c) {
  return {{"hits_memory", c.hits_memory},
          {"hits_disk", c.hits_disk},
          {"misses", c.misses},
          {"readahead_blocks", c.readahead_blocks},
          {"prefetch_blocks", c.prefetch_blocks},
          {"fetch_requests", c.fetch_requests},
          {"fetch_errors", c.fetch_errors},
          {"bytes_fetched", c.bytes_fetched},
          {"fetch_us", c.fetch_us},
          {"corrupt_blocks", c.corrupt_blocks},
          {"store_errors", c.store_errors}};
}

CacheMetrics::CacheMetrics() {
  MutexLock lock(&mu_);
  latency_counts_.assign(std::size(kLatencyBounds) + 1, 0);
}

void CacheMetrics::RecordLatency(uint64_t us) {
  MutexLock lock(&mu_);
  size_t i = 0;
  while (i < std::size(kLatencyBounds) && us > kLatencyBounds[i] * 1e6) ++i;
  ++latency_counts_[i];
  latency_total_us_ += us;
}

void CacheMetrics::Fill(CacheTotals& t) {
  t.counters = CounterValues(totals);
  const std::pair<uint64_t CacheTotals::*, const std::atomic<uint64_t>*> kept[] = {
      {&CacheTotals::evictions, &evictions},
      {&CacheTotals::evicted_bytes, &evicted_bytes},
      {&CacheTotals::verified, &verified},
      {&CacheTotals::verify_failures, &verify_failures},
      {&CacheTotals::signatures_verified, &signatures_verified},
      {&CacheTotals::signatures_invalid, &signatures_invalid},
      {&CacheTotals::signatures_unverifiable, &signatures_unverifiable}};
  for (const auto& [field, value] : kept) t.*field = value->load();
  MutexLock lock(&mu_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < std::size(kLatencyBounds); ++i) {
    cumulative += latency_counts_[i];
    t.latency_buckets.emplace_back(kLatencyBounds[i], cumulative);
  }
  t.latency_count = cumulative + latency_counts_.back();
  t.latency_sum_s = static_cast<double>(latency_total_us_) / 1e6;
}

}  // namespace glancefs::cache
