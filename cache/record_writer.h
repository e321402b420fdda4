// RecordWriter: writes the per-image records (image_record.h) to the store with no cache lock
// held, newest state last.
//
// The state a record is made from lives under the image's lock; the write (a RocksDB put or
// delete) must not be made under it. So a writer first Stamps the record while it still holds
// the image's lock -- stamps of one id grow in the order the states were taken -- and writes it
// after letting go: Write skips a record whose id already has a later stamp written, so a slow
// writer never puts back an older state, and a record deleted by an eviction stays deleted once
// a newer version's record is written (one id, any number of Image objects).
//
// Thread-safe. Locks: mu_ (the stamp table, held for a map lookup only, taken under an image's
// lock: Image::mu is ACQUIRED_BEFORE it) and, per id, IoSlot::io_mu, held over the store call and
// taken with no other cache lock held: only writers of the same id wait on it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>

#include "cache/block_store.h"
#include "fs/base/mutex.h"

namespace glancefs::cache {

// A record to write: `text` put under "img/<id>", or, without text, the record deleted.
struct PendingRecord {
  std::string id;
  uint64_t stamp = 0;  // 0: nothing to write
  uint64_t no = 0;     // the image number the record names (0 for a delete)
  std::optional<std::string> text;
};

class RecordWriter {
 public:
  explicit RecordWriter(BlockStore* store) : store_(store) {}
  RecordWriter(const RecordWriter&) = delete;
  RecordWriter& operator=(const RecordWriter&) = delete;

  // The next stamp of `id`'s record. Call it with the lock of the state it describes held.
  uint64_t Stamp(const std::string& id) EXCLUDES(mu_);
  // Writes `record` unless a later stamp of its id was written already (then Ok: the store
  // holds a newer state). REQUIRES: no cache lock held (it waits for the store).
  Status Write(const PendingRecord& record) EXCLUDES(mu_);

 private:
  friend struct Image;  // names mu_ in its lock order
  struct IoSlot {
    Mutex io_mu;
    uint64_t written GUARDED_BY(io_mu) = 0;  // the last stamp written
  };
  struct Slot {
    uint64_t issued = 0;  // the last stamp handed out
    std::shared_ptr<IoSlot> io = std::make_shared<IoSlot>();
  };

  BlockStore* const store_;
  Mutex mu_;
  // One slot per id ever written by this cache (a catalog's worth); never shrinks, so a stamp
  // is never compared with one of a slot made again.
  std::unordered_map<std::string, Slot> slots_ GUARDED_BY(mu_);
};

}  // namespace glancefs::cache
