// BlockStore: the one seam between the block cache and its disk. Two kinds of records:
//
//  - blocks: the bytes of block `index` of image number `image_no`, each with a 64-bit check
//    value the cache computes and validates (the store keeps it beside the bytes). PutBlocks is
//    fast and NOT durable on its own: a crash may lose recent puts or leave bytes without their
//    check; Sync makes every earlier put durable. The cache validates every block it gets, so a
//    lost or damaged block is a miss, never wrong data. DeleteImage drops all of an image's
//    blocks at once; image numbers are never reused, and a put to a deleted number is dropped.
//  - meta: small records under string keys (image versions, the pre-fetch queue), durable when
//    PutMeta returns (they survive kill -9).
//
// RocksBlockStore (rocks_block_store.h) is the real one; NewMemBlockStore is an in-memory twin
// for tests, with faults that can be switched on. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cache/block.h"
#include "fs/base/byte_source.h"
#include "fs/base/status.h"

namespace glancefs::cache {

struct BlockKey {
  uint64_t image_no = 0;
  uint64_t index = 0;
};

// One block of a PutBlocks run.
struct BlockPut {
  std::string_view data;
  uint64_t check = 0;
};

class BlockStore {
 public:
  virtual ~BlockStore() = default;

  virtual std::string Describe() const = 0;

  // Blocks of image numbers are laid out `block_size` apart. Called once, before any block
  // call (the cache keeps the size in a meta record).
  virtual void SetBlockSize(uint32_t block_size) = 0;
  // Reads block `key`, which must be `len` bytes, into dst, and the check stored with it into
  // *check. NotFound when absent; Corruption when the store itself sees damage (a wrong length,
  // a short file); the caller treats both as a miss.
  virtual Status GetBlock(BlockKey key, char* dst, size_t len, uint64_t* check) = 0;
  // Reads the run of consecutive blocks first.index + i into dsts[i] (each of its block's
  // length) and their checks into (*checks)[i], in one request where the store can. Any block
  // absent or damaged fails the whole run (NotFound, Corruption): the caller reads its blocks
  // one by one. Default: GetBlock per block.
  virtual Status GetBlocks(BlockKey first, const std::vector<IoSlice>& dsts,
                           std::vector<uint64_t>* checks) {
    checks->resize(dsts.size());
    for (size_t i = 0; i < dsts.size(); ++i) {
      GLANCEFS_RETURN_IF_ERROR(GetBlock({first.image_no, first.index + i}, dsts[i].data,
                                        dsts[i].size, &(*checks)[i]));
    }
    return Status::Ok();
  }
  // The same run without a copy: (*blocks)[i] views block first.index + i where the store keeps
  // it (a mapping of its file, locked in memory, so reading it cannot fault on I/O), and
  // (*checks)[i] is its check. NotSupported, nothing returned, where the store cannot (the
  // in-memory store; a mapping or lock refused: the file is short, a page unreadable, address
  // space or RLIMIT_MEMLOCK exhausted): the caller reads the run with GetBlocks, which says
  // why. Otherwise as GetBlocks. The blocks outlive the store and the image's deletion.
  virtual Status MapBlocks(BlockKey first, const std::vector<size_t>& lens,
                           std::vector<std::shared_ptr<const Block>>* blocks,
                           std::vector<uint64_t>* checks) {
    (void)first, (void)lens, (void)blocks, (void)checks;
    return Status::NotSupported("no mapped blocks");
  }
  // Stores a run of consecutive blocks: blocks[i] is block first.index + i. On an error none
  // of them counts as stored (some may be, unindexed: misses).
  virtual Status PutBlocks(BlockKey first, const std::vector<BlockPut>& blocks) = 0;
  // Deletes every block of `image_no`, durably; later puts to it are dropped.
  virtual Status DeleteImage(uint64_t image_no) = 0;
  // Calls fn(key) for every block, in key order.
  virtual Status ScanBlocks(const std::function<void(BlockKey)>& fn) = 0;

  virtual Result<std::optional<std::string>> GetMeta(std::string_view key) = 0;
  virtual Status PutMeta(std::string_view key, std::string_view value) = 0;
  virtual Status DeleteMeta(std::string_view key) = 0;
  // Calls fn(key, value) for every meta record whose key starts with `prefix`, in key order.
  virtual Status ScanMeta(std::string_view prefix,
                          const std::function<void(std::string_view, std::string_view)>& fn) = 0;

  // Makes every earlier PutBlocks durable.
  virtual Status Sync() = 0;
  // Bytes the store occupies on disk (0 if it does not know).
  virtual uint64_t DiskBytes() = 0;
};

// Faults the in-memory store can inject (tests).
struct MemStoreFaults {
  std::atomic<bool> fail_puts{false};     // PutBlocks answers IOError (a full disk)
  std::atomic<bool> corrupt_gets{false};  // GetBlock flips a byte of the data it returns
  std::atomic<int> get_delay_ms{0};       // GetBlock waits this long first (a slow disk)
};

// An in-memory BlockStore. `faults`, if given, is read on every call and may be changed by the
// test while the store is in use (it must outlive the store).
std::unique_ptr<BlockStore> NewMemBlockStore(const MemStoreFaults* faults = nullptr);

}  // namespace glancefs::cache
