#include "cache/rate_limiter.h"

#include <algorithm>
#include <thread>

namespace glancefs::cache {
namespace {

class RealClock final : public RateClock {
 public:
  TimePoint Now() override { return std::chrono::steady_clock::now(); }
  void SleepUntil(TimePoint t) override { std::this_thread::sleep_until(t); }
};

constexpr std::chrono::milliseconds kStopPoll{100};

}  // namespace

RateClock* RateClock::Real() {
  static RealClock clock;
  return &clock;
}

RateLimiter::RateLimiter(uint64_t bytes_per_s, RateClock* clock)
    : bytes_per_s_(bytes_per_s), clock_(clock), start_(clock->Now()) {}

RateClock::TimePoint RateLimiter::Until(uint64_t bytes) const {
  if (bytes_per_s_ == 0) return start_;
  // In two steps, so bytes x 10^6 cannot overflow for any transfer below 18 TB.
  const uint64_t us =
      bytes / bytes_per_s_ * 1000000 + bytes % bytes_per_s_ * 1000000 / bytes_per_s_;
  return start_ + std::chrono::microseconds(us);
}

void RateLimiter::Pace(uint64_t bytes, const std::function<bool()>& stop) {
  if (bytes_per_s_ == 0) return;
  const RateClock::TimePoint until = Until(bytes);
  while (!stop() && clock_->Now() < until) {
    clock_->SleepUntil(std::min<RateClock::TimePoint>(until, clock_->Now() + kStopPoll));
  }
}

}  // namespace glancefs::cache
