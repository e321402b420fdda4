// StoredBlocks: reading blocks back from the store, every one checked. Each block is stored
// with a check value (BlockCheck: XXH3 of its bytes seeded with its key, so bytes stored under
// another key fail as surely as damaged ones); a block whose check fails is never returned.
//
// Load reads one block; LoadRun reads a sequential reader's run of blocks in one store request
// and puts the ones after the first into the memory tier, where the reader's next lookups find
// them; LoadAll reads a run for read-ahead; ForEachStored feeds a whole image to a consumer in
// runs (verification). Holds no lock of its own and takes none of the cache's: callers call it
// with no image lock held.
// Thread-safe as the store and the memory tier are.
#pragma once

#include <cstdint>
#include <functional>

#include "cache/block.h"
#include "cache/block_store.h"
#include "cache/memory_tier.h"
#include "fs/base/status.h"

namespace glancefs::cache {

// The check value stored with block `key`.
uint64_t BlockCheck(BlockKey key, const char* data, size_t n);

class StoredBlocks {
 public:
  StoredBlocks(BlockStore* store, BlockPool* buffers, MemoryTier* memory)
      : store_(store), buffers_(buffers), memory_(memory) {}

  // Block `key`, `len` bytes. NotFound if absent, Corruption if its check fails.
  Result<BlockData> Load(BlockKey key, size_t len);
  // Blocks key.index .. key.index + lens.size() - 1 (lens[i]: the length of each) in one store
  // request: the first is returned, those after it that pass their check go to the memory
  // tier. A run the store cannot read whole falls back to Load(key).
  Result<BlockData> LoadRun(BlockKey key, const std::vector<size_t>& lens);
  // The same run, every block returned: entry i is null when block i failed its check, all of
  // them when the store cannot read the run whole (the caller reads those one by one, with
  // Load, to learn why). Read-ahead from the store (cached_source.h).
  std::vector<BlockData> LoadAll(BlockKey key, const std::vector<size_t>& lens);
  // Calls fn(data, len) for blocks 0 .. lens.size() - 1 of image number `no`, in order, read
  // in runs of run_blocks. A block absent or damaged ends it: Corruption with *bad set to its
  // index. fn returning false ends it too: Unavailable.
  Status ForEachStored(uint64_t no, const std::vector<size_t>& lens, uint64_t run_blocks,
                       const std::function<bool(const char*, size_t)>& fn, uint64_t* bad);

 private:
  // Reads a run of blocks, mapped where the store can (BlockStore::MapBlocks), else into pooled
  // buffers, with their stored checks (not yet compared); false if any is absent or unreadable.
  bool ReadRun(BlockKey first, const std::vector<size_t>& lens, std::vector<BlockData>* blocks,
               std::vector<uint64_t>* checks);

  BlockStore* const store_;
  BlockPool* const buffers_;
  MemoryTier* const memory_;
};

}  // namespace glancefs::cache
