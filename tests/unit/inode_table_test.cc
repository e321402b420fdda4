#include "fs/core/inode_table.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

namespace glancefs::core {
namespace {

NodeKey Image(const std::string& id) { return NodeKey{NodeKind::kImageDir, {}, id, ""}; }

TEST(InodeTableTest, FixedInodes) {
  InodeTable t;
  EXPECT_EQ(t.size(), 3u);
  EXPECT_EQ(t.Get(kRootIno)->kind, NodeKind::kRoot);
  EXPECT_EQ(t.Get(kImagesIno)->kind, NodeKind::kImagesDir);
  EXPECT_EQ(t.Get(kByNameIno)->kind, NodeKind::kByNameDir);
  t.Forget(kImagesIno, 0);
  EXPECT_TRUE(t.Get(kImagesIno));
}

TEST(InodeTableTest, LookupCountsAreExact) {
  InodeTable t;
  uint64_t a = t.Acquire(Image("a"));
  EXPECT_EQ(t.Acquire(Image("a")), a);
  EXPECT_NE(t.Acquire(Image("b")), a);
  EXPECT_EQ(t.size(), 5u);
  t.Forget(a, 1);
  EXPECT_TRUE(t.Get(a));  // one lookup left
  t.Forget(a, 1);
  EXPECT_FALSE(t.Get(a));
  EXPECT_FALSE(t.Find(Image("a")));
  // Numbers are never reused: the same key gets a new inode.
  EXPECT_NE(t.Acquire(Image("a")), a);
}

TEST(InodeTableTest, OverlargeForgetIsClampedNotFatal) {
  InodeTable t;
  uint64_t a = t.Acquire(Image("a"));
  t.Forget(a, 5);
  EXPECT_FALSE(t.Get(a));
  t.Forget(a, 1);  // unknown now: logged, ignored
}

TEST(InodeTableTest, KindsDoNotCollide) {
  InodeTable t;
  uint64_t dir = t.Acquire(Image("x"));
  uint64_t file = t.Acquire(NodeKey{NodeKind::kImageFile, fsns::ImageFile::kDiskRaw, "x", "v1"});
  uint64_t file2 = t.Acquire(NodeKey{NodeKind::kImageFile, fsns::ImageFile::kDiskRaw, "x", "v2"});
  uint64_t meta = t.Acquire(NodeKey{NodeKind::kImageFile, fsns::ImageFile::kMetadata, "x", "v1"});
  uint64_t link = t.Acquire(NodeKey{NodeKind::kByNameLink, {}, "x", ""});
  // A new content version is a new inode.
  EXPECT_EQ(std::set<uint64_t>({dir, file, file2, meta, link}).size(), 5u);
}

TEST(InodeTableTest, ConcurrentAcquireAndForgetBalance) {
  InodeTable t;
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&t] {
      for (int i = 0; i < 2000; ++i) {
        uint64_t ino = t.Acquire(Image(std::to_string(i % 50)));
        t.Forget(ino, 1);
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(t.size(), 3u);
}

}  // namespace
}  // namespace glancefs::core
