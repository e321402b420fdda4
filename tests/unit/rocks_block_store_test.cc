// RocksBlockStore's mapped reads (MapBlocks), alone: the blocks view the stored bytes and
// outlive the store; a data file shorter than its index is refused, never faulted on; the
// bytes locked at once stay under the cap.
#include "cache/rocks_block_store.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cache/stored_blocks.h"
#include "tests/unit/cache_test_util.h"

namespace glancefs::cache {
namespace {

using test_util::Pattern;

constexpr uint32_t kBlock = 64 << 10;

class RocksBlockStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("glancefs-store-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override {
    store_.reset();
    std::filesystem::remove_all(dir_);
  }
  BlockStore& Open(uint64_t max_locked = 256 << 20) {
    store_.reset();
    RocksOptions o;
    o.max_locked_bytes = max_locked;
    store_ = OpenRocksBlockStore(dir_.string(), o).value();
    store_->SetBlockSize(kBlock);
    return *store_;
  }
  // Stores `n` blocks of image number 1 (the last one `last_len` bytes) and returns their bytes.
  std::string Put(size_t n, size_t last_len = kBlock) {
    std::string data = Pattern((n - 1) * kBlock + last_len, static_cast<uint32_t>(n));
    std::vector<BlockPut> puts;
    for (size_t i = 0; i < n; ++i) {
      std::string_view b(data.data() + i * kBlock, i + 1 < n ? kBlock : last_len);
      puts.push_back({b, BlockCheck({1, i}, b.data(), b.size())});
    }
    EXPECT_TRUE(store_->PutBlocks({1, 0}, puts).ok());
    return data;
  }
  std::filesystem::path dir_;
  std::unique_ptr<BlockStore> store_;
};

TEST_F(RocksBlockStoreTest, MappedRunsViewTheStoredBytesAndOutliveTheStore) {
  Open();
  std::string data = Put(4, 1000);  // a short last block, as an image's
  std::vector<size_t> lens = {kBlock, kBlock, kBlock, 1000};
  std::vector<BlockData> blocks;
  std::vector<uint64_t> checks;
  Status s = store_->MapBlocks({1, 0}, lens, &blocks, &checks);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(blocks.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_EQ(blocks[i]->size(), lens[i]);
    EXPECT_EQ(std::string(blocks[i]->data(), lens[i]), data.substr(i * kBlock, lens[i])) << i;
    EXPECT_EQ(checks[i], BlockCheck({1, i}, blocks[i]->data(), lens[i])) << i;
  }
  ASSERT_TRUE(store_->DeleteImage(1).ok());  // the file is unlinked
  store_.reset();                             // and the store closed
  EXPECT_EQ(std::string(blocks[2]->data(), kBlock), data.substr(2 * kBlock, kBlock));
}

TEST_F(RocksBlockStoreTest, ADataFileShorterThanItsIndexIsRefusedNotFaultedOn) {
  Open();
  Put(4);
  store_.reset();
  // As after a power loss that kept the index and lost the file's end, or a file cut by hand.
  auto blk = std::filesystem::directory_iterator(dir_ / "data")->path();
  std::filesystem::resize_file(blk, kBlock + kBlock / 2);
  Open();
  std::vector<BlockData> blocks;
  std::vector<uint64_t> checks;
  const std::vector<size_t> lens(4, kBlock);
  EXPECT_TRUE(store_->MapBlocks({1, 0}, lens, &blocks, &checks).IsNotSupported());
  std::vector<std::string> bufs(4, std::string(kBlock, '\0'));
  std::vector<IoSlice> dsts;
  for (auto& b : bufs) dsts.push_back({b.data(), b.size()});
  Status s = store_->GetBlocks({1, 0}, dsts, &checks);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  // The blocks still in the file map as before.
  EXPECT_TRUE(store_->MapBlocks({1, 0}, {kBlock}, &blocks, &checks).ok());
}

TEST_F(RocksBlockStoreTest, BytesLockedAtOnceStayUnderTheCap) {
  Open(/*max_locked=*/3 * kBlock);
  Put(4);
  std::vector<BlockData> first, second;
  std::vector<uint64_t> checks;
  ASSERT_TRUE(store_->MapBlocks({1, 0}, {kBlock, kBlock}, &first, &checks).ok());
  // Two more would lock four blocks: copied instead (NotSupported).
  EXPECT_TRUE(store_->MapBlocks({1, 2}, {kBlock, kBlock}, &second, &checks).IsNotSupported());
  first.resize(1);  // a run stays locked while any of its blocks is held
  EXPECT_TRUE(store_->MapBlocks({1, 2}, {kBlock, kBlock}, &second, &checks).IsNotSupported());
  first.clear();
  EXPECT_TRUE(store_->MapBlocks({1, 2}, {kBlock, kBlock}, &second, &checks).ok());
}

}  // namespace
}  // namespace glancefs::cache
