// TableCache: a decoder's second-level tables (qcow2 L2 tables, VMDK grain tables), loaded on
// first use and kept by their file offset, at most `capacity` of them, the least recently used
// evicted first.
//
// Thread-safe: Get may run concurrently. A table is loaded outside the lock, so two threads may
// load one table at once, which is harmless: the first to finish is kept and both get it.
// Tables are immutable once loaded and shared: an evicted table stays valid for whoever holds
// it.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <unordered_map>
#include <utility>
#include <vector>

#include "fs/base/mutex.h"
#include "fs/base/status.h"

namespace glancefs::format {

template <typename Entry>
class TableCache {
 public:
  using Table = std::vector<Entry>;

  // REQUIRES: capacity >= 1. Set once, before the first Get.
  void set_capacity(uint64_t capacity) { capacity_ = capacity; }

  // The table at file offset `key`: the cached one (now the most recent), or load() -- a
  // Result<std::shared_ptr<Table>> -- cached. load's error is returned and nothing is cached.
  template <typename Load>
  Result<std::shared_ptr<const Table>> Get(uint64_t key, Load&& load) {
    {
      MutexLock lock(&mu_);
      auto it = tables_.find(key);
      if (it != tables_.end()) {
        lru_.splice(lru_.begin(), lru_, it->second.lru);
        return it->second.table;
      }
    }
    GLANCEFS_ASSIGN_OR_RETURN(std::shared_ptr<Table> table, load());
    MutexLock lock(&mu_);
    auto it = tables_.find(key);
    if (it != tables_.end()) return it->second.table;
    lru_.push_front(key);
    tables_.emplace(key, Cached{table, lru_.begin()});
    while (tables_.size() > capacity_) {
      tables_.erase(lru_.back());
      lru_.pop_back();
    }
    return std::shared_ptr<const Table>(std::move(table));
  }

 private:
  struct Cached {
    std::shared_ptr<const Table> table;
    std::list<uint64_t>::iterator lru;
  };

  uint64_t capacity_ = 1;                        // constant once reads begin
  Mutex mu_;                                // guards the two below
  std::list<uint64_t> lru_ GUARDED_BY(mu_);                      // keys, most recent first
  std::unordered_map<uint64_t, Cached> tables_ GUARDED_BY(mu_);
};

}  // namespace glancefs::format
