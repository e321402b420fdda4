// RateLimiter on a fake clock, and StoreWriter's backpressure: no real time passes in the
// first, no more runs than allowed in the second.
#include "cache/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "cache/store_writer.h"
#include "cache/work_pool.h"

namespace glancefs::cache {
namespace {

using std::chrono::milliseconds;

// Time moves only when slept on.
class FakeClock final : public RateClock {
 public:
  TimePoint Now() override { return now_; }
  void SleepUntil(TimePoint t) override {
    ++sleeps;
    if (t > now_) now_ = t;
  }
  milliseconds Elapsed() const {
    return std::chrono::duration_cast<milliseconds>(now_ - TimePoint());
  }
  int sleeps = 0;

 private:
  TimePoint now_{};
};

auto Never = [] { return false; };

TEST(RateLimiterTest, NoCapNeverWaits) {
  FakeClock clock;
  RateLimiter limiter(0, &clock);
  limiter.Pace(1ULL << 40, Never);
  EXPECT_EQ(clock.sleeps, 0);
}

TEST(RateLimiterTest, BytesWaitUntilTheyFitTheBudget) {
  FakeClock clock;
  RateLimiter limiter(1000000, &clock);  // 1 MB/s
  limiter.Pace(0, Never);
  EXPECT_EQ(clock.Elapsed(), milliseconds(0));
  limiter.Pace(500000, Never);
  EXPECT_EQ(clock.Elapsed(), milliseconds(500));
  limiter.Pace(400000, Never);  // already within the budget
  EXPECT_EQ(clock.Elapsed(), milliseconds(500));
  limiter.Pace(2000000, Never);
  EXPECT_EQ(clock.Elapsed(), milliseconds(2000));
}

TEST(RateLimiterTest, SleepsInSlicesSoStopIsHeard) {
  FakeClock clock;
  RateLimiter limiter(1000, &clock);  // 1 kB/s: 10 s for 10 kB
  int asked = 0;
  limiter.Pace(10000, [&] { return ++asked > 3; });
  EXPECT_EQ(clock.Elapsed(), milliseconds(300));  // three 100 ms slices, then stop
  EXPECT_EQ(clock.sleeps, 3);
  FakeClock full;
  RateLimiter whole(1000, &full);
  whole.Pace(1000, Never);
  EXPECT_EQ(full.sleeps, 10);
  EXPECT_EQ(full.Elapsed(), milliseconds(1000));
}

TEST(RateLimiterTest, LargeTransfersDoNotOverflow) {
  FakeClock clock;
  RateLimiter limiter(1ULL << 30, &clock);  // 1 GiB/s
  EXPECT_EQ(limiter.Until(10ULL << 40) - clock.Now(), std::chrono::seconds(10240));
  RateLimiter odd(3, &clock);
  EXPECT_EQ(odd.Until(10) - clock.Now(), std::chrono::microseconds(3333333));
}

TEST(StoreWriterTest, AtMostMaxPendingRunsAndDrainWaitsForAll) {
  WorkPool pool(4, "test-store");
  std::atomic<int> running{0}, most{0}, done{0};
  {
    StoreWriter writer(&pool, 2);
    for (int i = 0; i < 12; ++i) {
      writer.Submit([&] {
        int now = ++running;
        for (int seen = most; now > seen && !most.compare_exchange_weak(seen, now);) {
        }
        std::this_thread::sleep_for(milliseconds(5));
        --running;
        ++done;
      });
    }
    writer.Drain();
    EXPECT_EQ(done, 12);
  }
  EXPECT_LE(most, 2);
  EXPECT_GE(most, 1);
}

TEST(StoreWriterTest, RunsInlineWhenThePoolIsShutDown) {
  WorkPool pool(1, "test-store");
  pool.Shutdown();
  StoreWriter writer(&pool, 1);
  bool ran = false;
  writer.Submit([&] { ran = true; });
  EXPECT_TRUE(ran);
}

}  // namespace
}  // namespace glancefs::cache
