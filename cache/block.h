// Block: the bytes of one cache block, shared read-only once filled (BlockData).
//
// Buffers come from a BlockPool and return to it when the last reference drops; or a block views
// a page-aligned piece of a file mapping (Block::Mapped) that the store made. A streaming
// reader passes thousands of blocks per GiB through the memory tier; without the pool each
// would be fresh memory, faulted and zeroed page by page, then given back -- measured (with
// 256 KiB blocks) as more CPU than the copies themselves. The pool keeps at most `max_idle`
// spare buffers, so RSS stays bounded by what the tier and readers hold plus that spare.
// Thread-safe; the pool's lock is a leaf, held to take or give a buffer.
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <memory>
#include <vector>

#include "fs/base/mutex.h"

namespace glancefs::cache {

class Block {
 public:
  const char* data() const { return data_; }
  char* mutable_data() { return data_; }
  size_t size() const { return size_; }

  // A block viewing the n bytes at `data`, a piece of a mapping that `mapping` keeps (the
  // store's, data_files.cc); the mapping goes with the last of its blocks.
  static std::shared_ptr<const Block> Mapped(const char* data, size_t n,
                                             std::shared_ptr<const void> mapping) {
    return std::shared_ptr<const Block>(
        new Block(const_cast<char*>(data), n),
        [mapping = std::move(mapping)](Block* b) { delete b; });
  }

 private:
  friend class BlockPool;
  Block(char* data, size_t size) : data_(data), size_(size) {}
  char* const data_;
  const size_t size_;
};

using BlockData = std::shared_ptr<const Block>;

class BlockPool {
 public:
  BlockPool(size_t buffer_bytes, size_t max_idle)
      : state_(std::make_shared<State>(buffer_bytes, max_idle)) {}
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  // A block of n bytes (n <= buffer_bytes), uninitialized. Null only if memory is exhausted.
  std::shared_ptr<Block> Allocate(size_t n) {
    char* buf = state_->Take();
    if (!buf) return nullptr;
    // The deleter holds the pool's state, so blocks may outlive the pool object.
    return std::shared_ptr<Block>(new Block(buf, n), [state = state_](Block* b) {
      state->Give(b->mutable_data());
      delete b;
    });
  }
  size_t buffer_bytes() const { return state_->buffer_bytes; }

 private:
  struct State {
    State(size_t bytes, size_t idle) : buffer_bytes(bytes), max_idle(idle) {}
    ~State() {
      MutexLock lock(&mu);
      for (char* b : idle) ::munmap(b, mapped_bytes());
    }
    char* Take() EXCLUDES(mu) {
      {
        MutexLock lock(&mu);
        if (!idle.empty()) {
          char* b = idle.back();
          idle.pop_back();
          return b;
        }
      }
      // Page-aligned (blocks are read and written with pread/pwrite at block offsets) and
      // populated in one call: a fresh buffer touched page by page took a fault per page.
      void* b = ::mmap(nullptr, mapped_bytes(), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
      return b == MAP_FAILED ? nullptr : static_cast<char*>(b);
    }
    void Give(char* b) EXCLUDES(mu) {
      {
        MutexLock lock(&mu);
        if (idle.size() < max_idle) {
          idle.push_back(b);
          return;
        }
      }
      ::munmap(b, mapped_bytes());
    }
    size_t mapped_bytes() const { return (buffer_bytes + 4095) & ~size_t{4095}; }
    const size_t buffer_bytes;
    const size_t max_idle;
    Mutex mu;
    std::vector<char*> idle GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_;
};

}  // namespace glancefs::cache
