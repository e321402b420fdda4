// Block: the bytes of one cache block, shared read-only once filled (BlockData).
//
// Buffers come from a BlockPool and return to it when the last reference drops. A streaming
// reader passes thousands of blocks per GiB through the memory tier; without the pool each
// would be fresh memory, faulted and zeroed page by page, then given back -- measured (with
// 256 KiB blocks) as more CPU than the copies themselves. The pool keeps at most `max_idle`
// spare buffers, so RSS stays bounded by what the tier and readers hold plus that spare.
// Thread-safe; the pool's lock is a leaf, held to take or give a buffer.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <vector>

#include "fs/base/mutex.h"

namespace glancefs::cache {

class Block {
 public:
  const char* data() const { return data_; }
  char* mutable_data() { return data_; }
  size_t size() const { return size_; }

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
      for (char* b : idle) std::free(b);
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
      // Page-aligned: blocks are read and written with pread/pwrite at block offsets.
      return static_cast<char*>(std::aligned_alloc(4096, (buffer_bytes + 4095) & ~size_t{4095}));
    }
    void Give(char* b) EXCLUDES(mu) {
      {
        MutexLock lock(&mu);
        if (idle.size() < max_idle) {
          idle.push_back(b);
          return;
        }
      }
      std::free(b);
    }
    const size_t buffer_bytes;
    const size_t max_idle;
    Mutex mu;
    std::vector<char*> idle GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_;
};

}  // namespace glancefs::cache
