// FlightTable, alone: one claim per block however many claim at once, waiters woken with the
// outcome, failures that leave no flight behind.
#include "cache/flight_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "cache/block.h"

namespace glancefs::cache {
namespace {

BlockData Bytes(BlockPool& pool, char c) {
  std::shared_ptr<Block> b = pool.Allocate(16);
  std::memset(b->mutable_data(), c, 16);
  return b;
}

TEST(FlightTableTest, OneClaimPerBlockAmongConcurrentClaimers) {
  FlightTable flights;
  constexpr int kThreads = 8, kBlocks = 200;
  std::atomic<int> won[kBlocks] = {};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kBlocks; ++i) {
        if (flights.Claim({7, static_cast<uint64_t>(i)})) ++won[i];
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kBlocks; ++i) EXPECT_EQ(won[i], 1) << i;
  EXPECT_EQ(flights.size(), static_cast<size_t>(kBlocks));
  EXPECT_FALSE(flights.Claim({7, 0}));
  EXPECT_TRUE(flights.Claim({8, 0}));  // another image number: another block
}

TEST(FlightTableTest, WaitersGetTheBlockAndLandRemovesTheFlight) {
  FlightTable flights;
  BlockPool pool(16, 4);
  ASSERT_TRUE(flights.Claim({1, 3}));
  std::vector<std::thread> waiters;
  std::atomic<int> got{0};
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&] {
      auto outcome = flights.Await({1, 3});
      if (outcome && outcome->ok() && (**outcome)->data()[0] == 'x') ++got;
    });
  }
  flights.Complete({1, 3}, Bytes(pool, 'x'));
  for (auto& t : waiters) t.join();
  EXPECT_EQ(got, 4);
  EXPECT_TRUE(flights.Has({1, 3}));  // done, not stored yet: late readers take its bytes
  auto late = flights.Await({1, 3});
  ASSERT_TRUE(late && late->ok());
  flights.Land({1, 3}, Bytes(pool, 'y'));  // done already: its bytes stay
  EXPECT_FALSE(flights.Has({1, 3}));
  EXPECT_FALSE(flights.Await({1, 3}).has_value());
  EXPECT_EQ((**late)->data()[0], 'x');
}

TEST(FlightTableTest, FailureReachesEveryWaiterAndLeavesNoFlight) {
  FlightTable flights;
  ASSERT_TRUE(flights.Claim({2, 0}));
  // A ticket taken before the failure still gives the failure.
  FlightTable::Ticket early = flights.Find({2, 0});
  ASSERT_TRUE(early);
  // Waiters hold their tickets before the failure, as readers found the flight under the
  // image's lock; some wait before it comes, some after.
  std::vector<std::thread> waiters;
  std::atomic<int> failed{0};
  for (int i = 0; i < 4; ++i) {
    waiters.emplace_back([&, i, ticket = flights.Find({2, 0})] {
      if (i % 2) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (FlightTable::Wait(ticket).status().code() == Status::Code::kUnavailable) ++failed;
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  flights.Fail({2, 0}, Status::Unavailable("Glance is down"));
  for (auto& t : waiters) t.join();
  EXPECT_EQ(failed, 4);
  EXPECT_FALSE(FlightTable::Wait(early).ok());
  EXPECT_FALSE(flights.Has({2, 0}));
  EXPECT_TRUE(flights.Claim({2, 0}));  // the next reader fetches again
}

// Claimers race; each winner completes or fails its block; every loser waits and sees exactly
// the winner's outcome.
TEST(FlightTableTest, ConcurrentClaimersAndFailures) {
  FlightTable flights;
  BlockPool pool(16, 64);
  constexpr int kThreads = 6, kBlocks = 300;
  std::atomic<int> mismatches{0}, winners{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (uint64_t i = 0; i < kBlocks; ++i) {
        const BlockKey key{5, i};
        const bool fails = i % 3 == 0;
        if (flights.Claim(key)) {
          ++winners;
          if (fails) {
            flights.Fail(key, Status::IOError("injected"));
          } else {
            flights.Complete(key, Bytes(pool, static_cast<char>('a' + i % 26)));
            flights.Land(key, nullptr);
          }
          continue;
        }
        auto outcome = flights.Await(key);
        if (!outcome) continue;  // landed or failed before we looked
        const bool ok = outcome->ok() && (**outcome)->data()[0] == static_cast<char>('a' + i % 26);
        if (fails ? outcome->ok() : !ok) ++mismatches;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(mismatches, 0);
  EXPECT_GE(winners, kBlocks);  // a failed or landed block may be claimed again
  EXPECT_EQ(flights.size(), 0u);
}

TEST(FlightTableTest, PendingFlightsOfOneImageFailTogether) {
  FlightTable flights;
  BlockPool pool(16, 4);
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(flights.Claim({9, i}));
  ASSERT_TRUE(flights.Claim({10, 0}));
  flights.Complete({9, 1}, Bytes(pool, 'k'));  // arrived, not stored yet
  EXPECT_TRUE(flights.HasPending(9));
  flights.FailPending(9, Status::Unavailable("the stream broke"));
  EXPECT_FALSE(flights.HasPending(9));
  EXPECT_TRUE(flights.HasAny(9));  // the arrived one stays until it is stored
  EXPECT_TRUE(flights.Await({9, 1})->ok());
  EXPECT_FALSE(flights.Has({9, 0}));
  EXPECT_TRUE(flights.HasPending(10));
  flights.FailAll(Status::Unavailable("closing"));
  EXPECT_EQ(flights.size(), 0u);
  EXPECT_FALSE(flights.HasAny(9));
}

}  // namespace
}  // namespace glancefs::cache
