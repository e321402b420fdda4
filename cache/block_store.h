// BlockStore: the one seam between the block cache and its disk. Two kinds of records:
//
//  - blocks: opaque values addressed by (image number, block index), kept sorted by that key so
//    an image's blocks are contiguous and DeleteImage is one range deletion. PutBlock is fast and
//    NOT durable on its own: a crash may lose recent puts (never half of one); Sync makes every
//    earlier put durable. The cache validates each value itself, so a lost or damaged block is a
//    miss, never wrong data.
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

#include "fs/base/status.h"

namespace glancefs::cache {

struct BlockKey {
  uint64_t image_no = 0;
  uint64_t index = 0;
};

class BlockStore {
 public:
  virtual ~BlockStore() = default;

  virtual std::string Describe() const = 0;

  // Reads a block into *value. NotFound when absent; Corruption when the store itself detects
  // damage (the caller treats both as a miss).
  virtual Status GetBlock(BlockKey key, std::string* value) = 0;
  virtual Status PutBlock(BlockKey key, std::string_view value) = 0;
  // Deletes every block of `image_no`, durably.
  virtual Status DeleteImage(uint64_t image_no) = 0;
  // Calls fn(key) for every block, in key order.
  virtual Status ScanBlocks(const std::function<void(BlockKey)>& fn) = 0;

  virtual Result<std::optional<std::string>> GetMeta(std::string_view key) = 0;
  virtual Status PutMeta(std::string_view key, std::string_view value) = 0;
  virtual Status DeleteMeta(std::string_view key) = 0;
  // Calls fn(key, value) for every meta record whose key starts with `prefix`, in key order.
  virtual Status ScanMeta(std::string_view prefix,
                          const std::function<void(std::string_view, std::string_view)>& fn) = 0;

  // Makes every earlier PutBlock durable.
  virtual Status Sync() = 0;
  // Bytes the store occupies on disk (0 if it does not know).
  virtual uint64_t DiskBytes() = 0;
};

// Faults the in-memory store can inject (tests).
struct MemStoreFaults {
  std::atomic<bool> fail_puts{false};     // PutBlock answers IOError (a full disk)
  std::atomic<bool> corrupt_gets{false};  // GetBlock flips a byte of what it returns
};

// An in-memory BlockStore. `faults`, if given, is read on every call and may be changed by the
// test while the store is in use (it must outlive the store).
std::unique_ptr<BlockStore> NewMemBlockStore(const MemStoreFaults* faults = nullptr);

}  // namespace glancefs::cache
