// RateLimiter: paces a transfer to at most bytes_per_s, from the moment it is made: Pace(n)
// returns once n bytes (counted from the start) fit the budget. The pre-fetch of an image uses
// one per image (image_prefetch.h): before each request it paces the bytes already requested,
// so even the first requests of an image are capped (counting completed requests instead let
// the first readahead_requests x request_bytes go out uncapped); a whole-image stream paces its
// receiver, block by block.
//
// It sleeps in slices of at most 100 ms, asking stop() between them, so a dequeued or stopping
// pre-fetch ends within that. The clock is a seam (RateClock), so tests run on a fake clock
// that advances when slept on (rate_limiter_test.cc). Not thread-safe: one owner.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace glancefs::cache {

class RateClock {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  virtual ~RateClock() = default;
  virtual TimePoint Now() = 0;
  virtual void SleepUntil(TimePoint t) = 0;
  // The steady clock and real sleeps.
  static RateClock* Real();
};

class RateLimiter {
 public:
  // bytes_per_s == 0: no cap (Pace returns at once).
  explicit RateLimiter(uint64_t bytes_per_s, RateClock* clock = RateClock::Real());

  // Waits until `bytes` fit the budget since construction, or stop() turns true.
  void Pace(uint64_t bytes, const std::function<bool()>& stop);
  // When `bytes` fit the budget.
  RateClock::TimePoint Until(uint64_t bytes) const;
  uint64_t bytes_per_s() const { return bytes_per_s_; }

 private:
  const uint64_t bytes_per_s_;
  RateClock* const clock_;
  const RateClock::TimePoint start_;
};

}  // namespace glancefs::cache
