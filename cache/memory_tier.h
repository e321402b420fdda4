// MemoryTier: the hot blocks in memory, evicted least-recently-used first under a byte budget.
//
// Sharded (a mutex per shard, as LevelDB's ShardedLRUCache) so concurrent readers of different
// blocks rarely meet. Each shard is an intrusive LRU list (Boost.Intrusive, safe-link hooks)
// plus a hash index. Values are shared: a block handed to a reader stays valid after eviction
// until the reader lets go, so the budget bounds what the tier holds, not what readers hold.
// Keys are never reused (an evicted or replaced image gets a new image number), so the tier
// needs no invalidation: stale entries simply age out. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cache/block.h"
#include "cache/block_store.h"

namespace glancefs::cache {

class MemoryTier {
 public:
  explicit MemoryTier(uint64_t budget_bytes);
  ~MemoryTier();
  MemoryTier(const MemoryTier&) = delete;
  MemoryTier& operator=(const MemoryTier&) = delete;

  // The block, made most recently used; nullptr if absent.
  BlockData Lookup(BlockKey key);
  // Adds or replaces a block, evicting the least recently used until under budget.
  void Insert(BlockKey key, BlockData data);
  uint64_t bytes() const;
  uint64_t budget() const { return budget_; }

 private:
  struct Shard;
  Shard& ShardOf(BlockKey key);

  const uint64_t budget_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace glancefs::cache
