// ImageTable: the images the cache knows, by id, each an Image with its own lock; their
// numbering; and the records that make them survive a restart (image_record.h, written by a
// RecordWriter with no lock held).
//
// An image version (id + ImageRecord::data_version + size) gets an image number that is never
// reused; its blocks are stored under (number, index). A changed image gets a new Image (the
// old one is retired: its open sources read around the cache) and the old number's blocks are
// deleted. Eviction renumbers an Image in place, so fetches still landing for the old number
// land nowhere.
//
// Locks. ImageTable::mu_ guards the id map only. Each Image::mu guards that image's state
// (which blocks are stored, state, verdicts, flags); readers of other images never wait on it.
// Order: ImageTable::mu_, then Image::mu, then FlightTable::mu_ / RecordWriter::mu_ /
// MemoryTier's shard locks. No store call is made with any of them held: the functions that
// change state under a lock return what to write or delete (PendingRecord, an old number), and
// the caller does it after letting go (Commit, DropBlocks).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/block_cache.h"
#include "cache/block_store.h"
#include "cache/eviction.h"
#include "cache/flight_table.h"
#include "cache/image_record.h"
#include "cache/record_writer.h"
#include "cache/signature.h"
#include "fs/base/catalog.h"
#include "fs/base/mutex.h"

namespace glancefs::cache {

class CacheMetrics;

struct Image {
  Image(std::string id, std::string version, uint64_t size, uint32_t block_size);

  // Constant after creation. hash_algo and hash_value are set before the image is shared.
  const std::string id;
  const std::string version;
  const uint64_t size;
  const uint32_t block_size;
  const uint64_t nblocks;
  std::string hash_algo;   // OpenSSL digest name ("sha512", "md5"); empty: cannot verify
  std::string hash_value;  // lowercase hex

  Mutex mu ACQUIRED_BEFORE(FlightTable::mu_, RecordWriter::mu_);
  CondVar changed;  // with mu: flights of it landed or failed, a stream or verification ended

  std::optional<SignatureSpec> signature_spec GUARDED_BY(mu);  // none: unsigned
  std::string signature_fp GUARDED_BY(mu);   // its Fingerprint() under the policy; "": unsigned
  std::vector<bool> present GUARDED_BY(mu);  // stored in the store
  uint64_t present_blocks GUARDED_BY(mu) = 0;
  uint64_t cached_bytes GUARDED_BY(mu) = 0;
  std::string reason GUARDED_BY(mu);     // why corrupt
  std::string signature GUARDED_BY(mu);  // the last verdict (signature.h's words); "": none
  bool pinned GUARDED_BY(mu) = false;
  bool meta_written GUARDED_BY(mu) = false;  // its record names its current number
  bool verifying GUARDED_BY(mu) = false;
  bool recheck GUARDED_BY(mu) = false;  // the pass that ran saw its signature change: again
  int readahead_tasks GUARDED_BY(mu) = 0;
  bool whole_only GUARDED_BY(mu) = false;  // its source reads only whole (refuses Range)
  bool streaming GUARDED_BY(mu) = false;   // a whole-image stream or pass runs

  std::atomic<uint64_t> no{0};       // written under mu, read anywhere
  std::atomic<bool> retired{false};  // replaced by a newer version: read around the cache
  std::atomic<int64_t> last_access{0};
  CacheCounters counters;

  CacheState state() const REQUIRES(mu) { return state_; }
  void SetState(CacheState s) REQUIRES(mu) {
    state_ = s;
    corrupt_.store(s == CacheState::kCorrupt, std::memory_order_release);
  }
  bool corrupt() const { return corrupt_.load(std::memory_order_acquire); }  // no lock
  bool complete() const REQUIRES(mu) { return present_blocks == nblocks; }
  uint64_t BlockLen(uint64_t index) const {
    return std::min<uint64_t>(block_size, size - index * block_size);
  }
  ImageRecordFields RecordLocked() const REQUIRES(mu);
  CachedImageInfo InfoLocked() const REQUIRES(mu);

 private:
  CacheState state_ GUARDED_BY(mu) = CacheState::kPartial;
  std::atomic<bool> corrupt_{false};  // state_ == kCorrupt, readable without mu
};

using ImagePtr = std::shared_ptr<Image>;

class ImageTable {
 public:
  // `policy_fp`: PolicyFingerprint of the cache's signature policy (verifier.h).
  // `on_new_signature`: told (no lock held) of an image whose signature properties changed,
  // after its verdict was dropped: the judge checks a complete one again.
  ImageTable(BlockStore* store, uint32_t block_size, std::function<int64_t()> now,
             std::string policy_fp, CacheMetrics* metrics);
  ImageTable(const ImageTable&) = delete;
  ImageTable& operator=(const ImageTable&) = delete;
  void SetSignatureHook(std::function<void(const ImagePtr&)> on_new_signature) {
    on_new_signature_ = std::move(on_new_signature);
  }

  // Reads the records and the stored blocks (deleting blocks no record owns). Before use.
  Status Load() EXCLUDES(mu_);
  // The image of `record`'s version: the known one, or a new one replacing another version.
  // REQUIRES: record.size.
  ImagePtr ImageFor(const ImageRecord& record) EXCLUDES(mu_);
  ImagePtr Find(const std::string& id) EXCLUDES(mu_);
  std::vector<ImagePtr> All() EXCLUDES(mu_);
  // Drops the images the catalog no longer has (or has another version of).
  void Observe(const CatalogSnapshot& snapshot) EXCLUDES(mu_);
  // Drops every block of image `id`, its corrupt mark and pin. NotFound if unknown.
  Status Evict(const std::string& id) EXCLUDES(mu_);
  // Evicts images, least recently read first, until the limits hold (eviction.h); never
  // `fetching`. Deletes outside every lock.
  void EnforceLimits(uint64_t max_bytes, uint64_t need_free, const Image* fetching) EXCLUDES(mu_);

  // Evicts `image` in memory: forgets its blocks and renumbers it. Returns the old number,
  // whose blocks the caller deletes (DropBlocks) after letting go of the lock.
  uint64_t EvictLocked(Image& image) REQUIRES(image.mu);
  void DropBlocks(uint64_t old_no);
  // Marks block `index` stored (true if it was not).
  bool AddBlockLocked(Image& image, uint64_t index) REQUIRES(image.mu);
  // Marks block `index` not stored; a verified or complete image goes back to partial and
  // its verdict is dropped (the returned record says so; Commit it).
  PendingRecord DropBlockLocked(Image& image, uint64_t index) REQUIRES(image.mu);

  // The image's record as it is now, or its deletion, stamped in order (record_writer.h).
  PendingRecord RecordLocked(Image& image) REQUIRES(image.mu);
  PendingRecord DeleteRecordLocked(Image& image) REQUIRES(image.mu);
  // Writes a record made above; a write of the image's current number marks it written.
  void Commit(Image& image, const PendingRecord& record) EXCLUDES(image.mu, mu_);
  // Writes the image's record unless it names its current number already: before its first
  // block is stored, so no block is ever stored that no record owns.
  void EnsureRecord(Image& image) EXCLUDES(image.mu);

  // The image's fingerprint of `spec` under the policy; "" when unsigned.
  std::string SignatureFp(const std::optional<SignatureSpec>& spec) const;
  uint64_t cached_bytes() const { return cached_bytes_.load(); }

 private:
  ImagePtr MakeImage(const ImageRecord& record) REQUIRES(mu_);
  // What an eviction leaves to do once every lock is let go.
  struct Evicted {
    ImagePtr image;
    uint64_t old_no = 0;
    PendingRecord record;
  };
  // Evicts the image and deletes its record (retire: and marks it retired). REQUIRES: it is
  // the image of its id in the map, so no later record of the id is stamped before this one.
  Evicted EvictAndForgetLocked(const ImagePtr& image, bool retire) REQUIRES(mu_);
  void Finish(const Evicted& evicted) EXCLUDES(mu_);
  bool NewSignatureLocked(Image& image, const std::optional<SignatureSpec>& spec,
                          PendingRecord* record) REQUIRES(image.mu);
  // Load's steps, on images not shared yet.
  Status LoadBlocks(const std::unordered_map<uint64_t, Image*>& by_no, uint64_t* next_no);
  void ResetIncomplete(const ImagePtr& image);

  BlockStore* const store_;
  const uint32_t block_size_;
  const std::function<int64_t()> now_;
  const std::string policy_fp_;
  CacheMetrics* const metrics_;
  std::function<void(const ImagePtr&)> on_new_signature_;
  RecordWriter records_;
  std::atomic<uint64_t> next_no_{1};
  std::atomic<uint64_t> cached_bytes_{0};  // of every image; changed under the image's lock

  Mutex mu_ ACQUIRED_BEFORE(Image::mu);
  std::unordered_map<std::string, ImagePtr> images_ GUARDED_BY(mu_);  // by id
};

}  // namespace glancefs::cache
