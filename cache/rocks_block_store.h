// RocksBlockStore: the BlockStore on RocksDB and plain files. Block bytes go to one sparse file
// per image number (DIR/data/<no>.blk, the block at index x block size: data_files.h): one copy
// into the page cache, eviction is an unlink. RocksDB holds the index (length and check of each
// stored block) and the meta records, both through its WAL. The only file that includes rocksdb/* is
// rocks_block_store.cc (RocksDB's API moves between releases; docs/CACHE.md has the layout).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "cache/block_store.h"

namespace glancefs::cache {

struct RocksOptions {
  // Memtable size of the index family (about 40 bytes per stored block).
  uint64_t write_buffer_bytes = 8ULL << 20;
  // Bytes of blocks mapped and locked in memory at once (BlockStore::MapBlocks); past it, runs
  // are read with copies. The cache sets its memory tier's budget.
  uint64_t max_locked_bytes = 256ULL << 20;
};

// Opens (creating if needed) the store in `dir`. A store that RocksDB finds damaged beyond
// opening is a cache, not data: it is destroyed and created empty, with a log line.
// Fails if another process holds it (RocksDB's LOCK file).
Result<std::unique_ptr<BlockStore>> OpenRocksBlockStore(const std::string& dir,
                                                        const RocksOptions& options = {});

// Deletes the store in `dir` (which must not be open).
Status DestroyRocksBlockStore(const std::string& dir);

}  // namespace glancefs::cache
