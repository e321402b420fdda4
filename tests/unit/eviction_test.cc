// ChooseVictims, alone: which images go when the cache is over its size or short of disk.
#include "cache/eviction.h"

#include <gtest/gtest.h>

namespace glancefs::cache {
namespace {

using V = std::vector<std::string>;

TEST(EvictionTest, NothingWithinTheLimits) {
  std::vector<EvictionCandidate> c = {{"a", 10, false, 1}, {"b", 10, false, 2}};
  EXPECT_EQ(ChooseVictims(c, 20, 0, 0), V{});   // no limit
  EXPECT_EQ(ChooseVictims(c, 20, 20, 0), V{});  // at the limit
  EXPECT_EQ(ChooseVictims(c, 20, 100, 0), V{});
}

TEST(EvictionTest, LeastRecentlyReadFirstUntilUnderTheSize) {
  std::vector<EvictionCandidate> c = {
      {"new", 10, false, 30}, {"old", 10, false, 10}, {"mid", 10, false, 20}};
  EXPECT_EQ(ChooseVictims(c, 30, 25, 0), V{"old"});
  EXPECT_EQ(ChooseVictims(c, 30, 15, 0), (V{"old", "mid"}));
  EXPECT_EQ(ChooseVictims(c, 30, 1, 0), (V{"old", "mid", "new"}));
}

TEST(EvictionTest, PinnedImagesGoLast) {
  std::vector<EvictionCandidate> c = {
      {"queued", 10, true, 1}, {"read", 10, false, 50}, {"also-read", 10, false, 40}};
  EXPECT_EQ(ChooseVictims(c, 30, 15, 0), (V{"also-read", "read"}));
  EXPECT_EQ(ChooseVictims(c, 30, 5, 0), (V{"also-read", "read", "queued"}));
}

TEST(EvictionTest, FreeSpaceFloorEvictsUntilEnoughIsFreed) {
  std::vector<EvictionCandidate> c = {
      {"a", 100, false, 1}, {"b", 50, false, 2}, {"c", 10, false, 3}};
  EXPECT_EQ(ChooseVictims(c, 160, 0, 120), (V{"a", "b"}));
  EXPECT_EQ(ChooseVictims(c, 160, 0, 1), V{"a"});
  // Both limits: whichever asks more.
  EXPECT_EQ(ChooseVictims(c, 160, 155, 1), V{"a"});
  EXPECT_EQ(ChooseVictims(c, 160, 5, 1), (V{"a", "b", "c"}));
}

TEST(EvictionTest, ImagesWithNothingCachedAreNotVictims) {
  std::vector<EvictionCandidate> c = {{"empty", 0, false, 0}, {"full", 10, false, 5}};
  EXPECT_EQ(ChooseVictims(c, 10, 1, 0), V{"full"});
}

// The total may include bytes no candidate holds (the image being fetched): eviction stops
// when the candidates are gone, and a total smaller than the candidates (a stale sum) never
// makes it evict everything.
TEST(EvictionTest, TotalsThatDoNotAddUp) {
  std::vector<EvictionCandidate> c = {{"a", 10, false, 1}, {"b", 10, false, 2}};
  EXPECT_EQ(ChooseVictims(c, 100, 50, 0), (V{"a", "b"}));
  EXPECT_EQ(ChooseVictims(c, 15, 12, 0), V{"a"});
  EXPECT_EQ(ChooseVictims(c, 5, 1, 0), V{"a"});
}

}  // namespace
}  // namespace glancefs::cache
