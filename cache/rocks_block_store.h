// RocksBlockStore: the BlockStore on RocksDB. The only file that includes rocksdb/* is
// rocks_block_store.cc (RocksDB's API moves between releases; docs/CACHE.md has the layout).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "cache/block_store.h"

namespace glancefs::cache {

struct RocksOptions {
  // Memtable size of the blocks family; block values live here until flushed to a blob file,
  // so it bounds both the RSS the store adds and what kill -9 can lose.
  uint64_t write_buffer_bytes = 32ULL << 20;
};

// Opens (creating if needed) the store in `dir`. A store that RocksDB finds damaged beyond
// opening is a cache, not data: it is destroyed and created empty, with a log line.
// Fails if another process holds it (RocksDB's LOCK file).
Result<std::unique_ptr<BlockStore>> OpenRocksBlockStore(const std::string& dir,
                                                        const RocksOptions& options = {});

// Deletes the store in `dir` (which must not be open).
Status DestroyRocksBlockStore(const std::string& dir);

}  // namespace glancefs::cache
