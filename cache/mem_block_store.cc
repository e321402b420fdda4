// The in-memory twin of RocksBlockStore (tests only; never persistent).
#include <chrono>
#include <cstring>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "cache/block_store.h"
#include "fs/base/mutex.h"

namespace glancefs::cache {
namespace {

class MemBlockStore final : public BlockStore {
 public:
  explicit MemBlockStore(const MemStoreFaults* faults) : faults_(faults) {}

  std::string Describe() const override { return "memory"; }

  void SetBlockSize(uint32_t) override {}
  Status GetBlock(BlockKey key, char* dst, size_t len, uint64_t* check) override {
    if (faults_ && faults_->get_delay_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(faults_->get_delay_ms.load()));
    }
    MutexLock lock(&mu_);
    auto it = blocks_.find({key.image_no, key.index});
    if (it == blocks_.end()) return Status::NotFound("no block");
    const std::string& data = it->second.first;
    if (data.size() != len) return Status::Corruption("block of another length");
    std::memcpy(dst, data.data(), len);
    *check = it->second.second;
    if (faults_ && faults_->corrupt_gets && len > 0) dst[len / 2] ^= 0x55;
    return Status::Ok();
  }
  Status PutBlocks(BlockKey first, const std::vector<BlockPut>& blocks) override {
    if (faults_ && faults_->fail_puts) return Status::IOError("No space left on device (injected)");
    MutexLock lock(&mu_);
    if (deleted_.count(first.image_no)) return Status::Ok();
    for (size_t i = 0; i < blocks.size(); ++i) {
      blocks_[{first.image_no, first.index + i}] = {std::string(blocks[i].data), blocks[i].check};
    }
    return Status::Ok();
  }
  Status DeleteImage(uint64_t image_no) override {
    MutexLock lock(&mu_);
    deleted_.insert(image_no);
    blocks_.erase(blocks_.lower_bound({image_no, 0}), blocks_.lower_bound({image_no + 1, 0}));
    return Status::Ok();
  }
  Status ScanBlocks(const std::function<void(BlockKey)>& fn) override {
    MutexLock lock(&mu_);
    for (const auto& [k, v] : blocks_) fn(BlockKey{k.first, k.second});
    return Status::Ok();
  }
  Result<std::optional<std::string>> GetMeta(std::string_view key) override {
    MutexLock lock(&mu_);
    auto it = meta_.find(std::string(key));
    if (it == meta_.end()) return std::optional<std::string>();
    return std::optional<std::string>(it->second);
  }
  Status PutMeta(std::string_view key, std::string_view value) override {
    MutexLock lock(&mu_);
    meta_[std::string(key)] = std::string(value);
    return Status::Ok();
  }
  Status DeleteMeta(std::string_view key) override {
    MutexLock lock(&mu_);
    meta_.erase(std::string(key));
    return Status::Ok();
  }
  Status ScanMeta(std::string_view prefix,
                  const std::function<void(std::string_view, std::string_view)>& fn) override {
    MutexLock lock(&mu_);
    for (auto it = meta_.lower_bound(std::string(prefix));
         it != meta_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      fn(it->first, it->second);
    }
    return Status::Ok();
  }
  Status Sync() override { return Status::Ok(); }
  uint64_t DiskBytes() override { return 0; }

 private:
  const MemStoreFaults* const faults_;
  Mutex mu_;
  std::map<std::pair<uint64_t, uint64_t>, std::pair<std::string, uint64_t>> blocks_
      GUARDED_BY(mu_);
  std::set<uint64_t> deleted_ GUARDED_BY(mu_);
  std::map<std::string, std::string> meta_ GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<BlockStore> NewMemBlockStore(const MemStoreFaults* faults) {
  return std::make_unique<MemBlockStore>(faults);
}

}  // namespace glancefs::cache
