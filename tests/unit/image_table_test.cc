// ImageTable, alone over an in-memory store: what a restart loads, how a new version and the
// limits drop old blocks and records, all without a fetch or a reader.
#include "cache/image_table.h"

#include <gtest/gtest.h>

#include <set>

#include "cache/cache_metrics.h"

namespace glancefs::cache {
namespace {

constexpr uint32_t kBs = 4096;

ImageRecordFields Fields(uint64_t no, uint64_t blocks, const std::string& state) {
  ImageRecordFields f;
  f.version = "v1";
  f.size = blocks * kBs;
  f.no = no;
  f.state = state;
  f.hash_algo = "sha256";
  f.hash_value = "00";
  return f;
}

void PutBlock(BlockStore& store, uint64_t no, uint64_t index) {
  static const std::string bytes(kBs, 'x');
  ASSERT_TRUE(store.PutBlocks({no, index}, {BlockPut{bytes, 0}}).ok());
}

std::set<uint64_t> StoredNumbers(BlockStore& store) {
  std::set<uint64_t> out;
  EXPECT_TRUE(store.ScanBlocks([&](BlockKey k) { out.insert(k.image_no); }).ok());
  return out;
}

ImageRecord Record(const std::string& id, uint64_t blocks, const std::string& version) {
  ImageRecord r;
  r.id = id;
  r.status = "active";
  r.size = blocks * kBs;
  r.data_version = version;
  return r;
}

class ImageTableTest : public ::testing::Test {
 protected:
  ImageTableTest() : store_(NewMemBlockStore()) {}
  std::unique_ptr<ImageTable> Table() {
    return std::make_unique<ImageTable>(store_.get(), kBs, [this] { return now_; }, "policy",
                                        &metrics_);
  }
  std::unique_ptr<BlockStore> store_;
  CacheMetrics metrics_;
  int64_t now_ = 100;
};

TEST_F(ImageTableTest, LoadKeepsOwnedBlocksAndDropsTheRest) {
  ASSERT_TRUE(store_->PutMeta("img/a", EncodeImageRecord(Fields(3, 2, "verified"))).ok());
  ASSERT_TRUE(store_->PutMeta("img/b", EncodeImageRecord(Fields(4, 3, "verified"))).ok());
  ASSERT_TRUE(store_->PutMeta("img/bad", "version=v1\nsize=4096\n").ok());  // no number
  for (uint64_t i : {0, 1}) PutBlock(*store_, 3, i);
  for (uint64_t i : {0, 1}) PutBlock(*store_, 4, i);  // b lost its third block
  PutBlock(*store_, 9, 0);                           // no record owns number 9
  auto table = Table();
  ASSERT_TRUE(table->Load().ok());

  ImagePtr a = table->Find("a"), b = table->Find("b");
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(table->Find("bad"));
  {
    MutexLock lock(&a->mu);
    EXPECT_TRUE(a->complete());
    EXPECT_EQ(a->state(), CacheState::kVerified);
  }
  {
    MutexLock lock(&b->mu);
    EXPECT_FALSE(b->complete());
    EXPECT_EQ(b->state(), CacheState::kPartial);  // verified once, missing a block now
  }
  auto record = DecodeImageRecord(*store_->GetMeta("img/b").value());
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->state, "partial");
  EXPECT_EQ(StoredNumbers(*store_), (std::set<uint64_t>{3, 4}));
  EXPECT_EQ(table->cached_bytes(), 4u * kBs);
  EXPECT_GT(table->ImageFor(Record("c", 1, "v1"))->no.load(), 9u);  // numbers never reused
}

TEST_F(ImageTableTest, ANewVersionRetiresTheOldOneAndItsBlocks) {
  auto table = Table();
  ASSERT_TRUE(table->Load().ok());
  ImagePtr old = table->ImageFor(Record("a", 2, "v1"));
  table->EnsureRecord(*old);
  const uint64_t old_no = old->no;
  PutBlock(*store_, old_no, 0);
  {
    MutexLock lock(&old->mu);
    table->AddBlockLocked(*old, 0);
  }
  ImagePtr fresh = table->ImageFor(Record("a", 2, "v2"));
  EXPECT_NE(fresh, old);
  EXPECT_TRUE(old->retired);
  EXPECT_NE(fresh->no.load(), old_no);
  EXPECT_EQ(StoredNumbers(*store_), std::set<uint64_t>{});
  EXPECT_FALSE(store_->GetMeta("img/a").value().has_value());
  table->EnsureRecord(*fresh);
  EXPECT_EQ(DecodeImageRecord(*store_->GetMeta("img/a").value())->no, fresh->no.load());
  table->EnsureRecord(*old);  // a retired image never writes its record again
  EXPECT_EQ(DecodeImageRecord(*store_->GetMeta("img/a").value())->no, fresh->no.load());
  EXPECT_EQ(table->cached_bytes(), 0u);
}

TEST_F(ImageTableTest, LimitsEvictLeastRecentlyReadUnpinnedFirst) {
  auto table = Table();
  ASSERT_TRUE(table->Load().ok());
  std::vector<ImagePtr> images;
  for (int i = 0; i < 3; ++i) {
    ImagePtr image = table->ImageFor(Record("i" + std::to_string(i), 2, "v1"));
    table->EnsureRecord(*image);
    image->last_access = 10 - i;  // i2 read least recently
    MutexLock lock(&image->mu);
    image->pinned = i == 2;
    for (uint64_t b = 0; b < 2; ++b) table->AddBlockLocked(*image, b);
    images.push_back(image);
  }
  table->EnforceLimits(4 * kBs, 0, nullptr);
  // i1 (unpinned, older than i0) goes; i2 is pinned, so it waits for the unpinned ones.
  EXPECT_EQ(table->cached_bytes(), 4u * kBs);
  EXPECT_FALSE(store_->GetMeta("img/i1").value().has_value());
  EXPECT_TRUE(store_->GetMeta("img/i2").value().has_value());
  table->EnforceLimits(1, 0, images[0].get());  // never the image being fetched
  EXPECT_EQ(table->cached_bytes(), 2u * kBs);
  EXPECT_TRUE(store_->GetMeta("img/i0").value().has_value());
  EXPECT_EQ(metrics_.evictions.load(), 2u);
  EXPECT_EQ(table->Evict("nope").code(), Status::Code::kNotFound);
}

}  // namespace
}  // namespace glancefs::cache
