// BlockCache: image bytes as the backend serves them, in fixed-size blocks, kept in a BlockStore
// (RocksDB) with a MemoryTier of hot blocks in front, fetched from the backend on a miss.
//
// Keys. An image version (id + ImageRecord::data_version) gets an image number, never reused;
// its blocks are stored under (number, index). A changed image gets a new number and its old
// blocks are deleted, so a changed image can never be served stale.
//
// Values. Each block is stored with a check value (XXH3 of the data seeded with its key),
// checked on every read from the store: a block that fails is dropped, counted and fetched
// again, never served. Block writes are not synced (a crash may lose the last ones, which are
// then misses); the per-image record (meta) is durable and written before its first block.
//
// Fetching (cached_source.h, block_fetcher.h). A miss fetches the run of missing blocks the read
// needs in one Range request, received straight into pooled block buffers (block.h) taken as
// the bytes arrive and stored in runs by the store threads while the rest streams in.
// Concurrent misses on one block make one fetch (single flight). Sequential readers get
// read-ahead: a window that starts at readahead_initial, doubles on each sequential read up to
// readahead_max and resets on a random one, fetched in requests as large as the window up to
// request_bytes, at most readahead_requests per image in flight on a pool of fetch threads.
//
// Whole-only sources. A source that refuses to read part of an image (a Glance store that
// refuses Range answers NotSupported, byte_source.h) is read whole, in one request on a fetch
// thread, every block stored as it passes: readers wait for their blocks' flights, which the
// stream completes; it runs again while readers wait for blocks it passed before they asked.
//
// Completion. When every block of an image is stored, the blocks are made durable (Sync) and
// the whole image is hashed against the record's os_hash_value (os_hash_algo) or checksum (MD5).
// A match marks it verified; a mismatch deletes the data and marks the version corrupt: reads
// of it then fail with EIO until it is evicted (rm cache/<id>) or Glance serves a new version.
// A pre-fetch of an image nothing of which is stored reads it in one request and hashes it as
// it arrives instead, so nothing is read back.
//
// Limits. max_bytes (soft, like Glance's image_cache_max_size) and min_free_bytes (a floor of
// free disk) are enforced after each fetch by evicting whole images, least recently used first,
// pinned (queued) images last, never the image being fetched. SetLimits changes both while
// the cache runs (a reload) and evicts at once what the new ones ask.
//
// Parts (each header opens with its contract; docs/CACHE.md has the map): this facade;
// cached_source (the ByteSource decorator and the path of one block); readahead_window (a pure
// state machine); flight_table (single flight); block_fetcher and store_writer (a request from
// the network to the store, with backpressure); whole_streamer (the one whole-image reader);
// image_table with image_record and record_writer (the images, their numbers and records);
// image_judge and verifier (completion, hash and signature: verifier.cc is the part that
// includes OpenSSL); eviction (a pure choice of victims); image_prefetch and rate_limiter;
// stored_blocks (checked reads from the store); cache_metrics.
//
// Thread-safe. Lock order, checked by clang (scripts/thread_safety.sh): ImageTable::mu_ and
// CachedSource::mu_ → Image::mu → FlightTable::mu_ → Flight::mu; Image::mu → RecordWriter::mu_;
// Prefetcher::mu_ → ImageTable::mu_; MemoryTier, BlockPool, WorkPool, StoreWriter and metrics
// locks are leaves. No lock is held
// across a network read, and none that readers of other images wait on across a store call:
// records are written and blocks deleted after the image's lock is let go (record_writer.h).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/block_store.h"
#include "cache/memory_tier.h"
#include "cache/signature.h"
#include "cache/work_pool.h"
#include "fs/base/byte_source.h"
#include "fs/base/catalog.h"
#include "fs/base/certificates.h"

namespace glancefs::cache {

struct Image;  // image_table.h: what the cache knows of one image version

struct CacheOptions {
  // Fixed for the life of a cache directory: a store made with another size keeps its own.
  uint32_t block_size = 64 << 10;
  uint64_t max_bytes = 0;       // soft limit on cached image bytes; 0: none
  uint64_t min_free_bytes = 0;  // free bytes to keep on the cache's disk; 0: none
  // The disk seam: free bytes on the cache's file system (statvfs). Null: unknown.
  std::function<uint64_t()> free_bytes;
  // The clock seam: seconds since the epoch, for last-access times.
  std::function<int64_t()> now;
  uint64_t memory_bytes = 256ULL << 20;  // budget of the MemoryTier
  // The largest Range request. Glance spends ~10 ms per request whatever its size, so requests
  // of several MiB are needed to approach streaming speed.
  uint32_t request_bytes = 64 << 20;
  uint64_t readahead_initial = 4 << 20;  // first window of a sequential reader
  uint64_t readahead_max = 64 << 20;     // the window doubles up to this
  int readahead_requests = 4;            // per image in flight
  int fetch_threads = 8;
  // Where signing certificates come from (cache/signature.h); null: signed images are
  // "unverifiable: no certificate source".
  std::shared_ptr<CertificateStore> certificates;
  // Uuids of the certificates a signing certificate must chain to (certificate_check.h); empty:
  // certificates are not validated (Glance's behaviour; Nova's without trusted ids).
  std::vector<std::string> trusted_certificates;
};

enum class CacheState { kPartial, kComplete, kVerified, kCorrupt };
const char* CacheStateName(CacheState state);

// Counters, per image and in total. Monotonic; read without locks.
struct CacheCounters {
  std::atomic<uint64_t> hits_memory{0};      // blocks served from the MemoryTier
  std::atomic<uint64_t> hits_disk{0};        // blocks served from the store
  std::atomic<uint64_t> misses{0};           // blocks a reader had to wait for the backend for
  std::atomic<uint64_t> readahead_blocks{0};  // blocks fetched ahead of readers
  std::atomic<uint64_t> prefetch_blocks{0};  // blocks fetched by the pre-fetch queue
  std::atomic<uint64_t> fetch_requests{0};
  std::atomic<uint64_t> fetch_errors{0};
  std::atomic<uint64_t> bytes_fetched{0};
  std::atomic<uint64_t> fetch_us{0};         // total time of fetch requests
  std::atomic<uint64_t> corrupt_blocks{0};   // store blocks that failed their check
  std::atomic<uint64_t> store_errors{0};     // failed block writes (a full disk)
};

// What the cache knows of one image.
struct CachedImageInfo {
  std::string id;
  std::string version;
  uint64_t size = 0;
  uint64_t cached_bytes = 0;
  CacheState state = CacheState::kPartial;
  std::string reason;  // why kCorrupt
  // The signature's verdict (signature.h's words) from the last pass over all its bytes; empty
  // until one ran.
  std::string signature;
  bool pinned = false;
  int64_t last_access = 0;
  // Counter values of this image, by name.
  std::vector<std::pair<std::string, uint64_t>> counters;
};

struct CacheTotals {
  std::vector<std::pair<std::string, uint64_t>> counters;  // CacheCounters of every image
  uint64_t images = 0;
  uint64_t cached_bytes = 0;
  uint64_t memory_bytes = 0;
  uint64_t disk_bytes = 0;
  uint64_t evictions = 0;
  uint64_t evicted_bytes = 0;
  uint64_t verified = 0;
  uint64_t verify_failures = 0;
  // Signature verdicts given, by kind.
  uint64_t signatures_verified = 0, signatures_invalid = 0, signatures_unverifiable = 0;
  // Fetch latency histogram: counts of requests at or under each bound (seconds), cumulative.
  std::vector<std::pair<double, uint64_t>> latency_buckets;
  uint64_t latency_count = 0;
  double latency_sum_s = 0;
};

class BlockCache {
 public:
  // Reads what `store` holds (deleting blocks no record owns) and starts the fetch threads.
  static Result<std::unique_ptr<BlockCache>> Open(std::unique_ptr<BlockStore> store,
                                                  CacheOptions options);
  ~BlockCache();
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;

  // A source reading `record`'s bytes through the cache, fetching misses from `upstream`
  // (which must read exactly those bytes). An image complete but not verified (its check cut
  // short by an unmount) is checked again now, on a fetch thread. REQUIRES: record.size.
  std::shared_ptr<ByteSource> Wrap(const ImageRecord& record, std::shared_ptr<ByteSource> upstream);

  // Fetches every block of `record` not yet stored into the store (not the memory tier), at
  // most bytes_per_s (0: no cap), then verifies the image: nothing stored yet, in one request,
  // hashed as it arrives; else up to readahead_requests ranged requests in flight. Returns early with Unavailable when stop() turns true; what was
  // fetched stays. Corruption if the image fails verification.
  Status FetchAll(const ImageRecord& record, const std::shared_ptr<ByteSource>& upstream,
                  const std::function<bool()>& stop, uint64_t bytes_per_s);

  // Drops every cached block of image `id` and its corrupt mark. NotFound if nothing is cached.
  Status Evict(const std::string& id);
  // Pinned images (queued for, or done by, pre-fetch) are evicted last. Persisted.
  void Pin(const ImageRecord& record, bool pinned);
  void Unpin(const std::string& id);
  // Drops the cached data of image versions the catalog no longer has.
  void Observe(const CatalogSnapshot& snapshot);

  std::vector<CachedImageInfo> List();
  std::optional<CachedImageInfo> Find(const std::string& id);
  CacheTotals Totals();
  // The image's signature verdict, reached first if it has none or an unverifiable one: by
  // checking the stored image again if it is complete, else by fetching the rest from
  // `open_upstream`'s source and verifying it (FetchAll). Blocks until then.
  Result<std::string> CheckSignature(
      const ImageRecord& record,
      const std::function<Result<std::shared_ptr<ByteSource>>()>& open_upstream);
  uint32_t block_size() const { return block_size_; }
  void SetLimits(uint64_t max_bytes, uint64_t min_free_bytes);
  uint64_t max_bytes() const { return max_bytes_.load(); }
  std::string Describe() const { return store_->Describe(); }
  BlockStore* store() const { return store_.get(); }

 private:
  struct Parts;  // block_cache.cc: the parts below, wired together

  BlockCache(std::unique_ptr<BlockStore> store, CacheOptions options, uint32_t block_size);
  int64_t Now() const;
  // After each fetch request: check a complete image, enforce the limits if blocks were added.
  void Fetched(const std::shared_ptr<Image>& image, bool prefetch, bool added);
  void EnforceLimits(const Image* fetching);
  // CheckSignature of an image with no bytes: the signature over nothing.
  std::string SignatureOfEmpty(const std::shared_ptr<Image>& image);
  // CheckSignature's step on the stored image: a verdict that stands (in *verdict), or the
  // stored image checked again (*last: how it went; ask again), or the rest must be fetched.
  enum class Step { kVerdict, kChecked, kFetch };
  Step StoredVerdict(const std::shared_ptr<Image>& image, int attempt,
                     Result<std::string>* verdict, Status* last);

  const std::unique_ptr<BlockStore> store_;
  const CacheOptions options_;
  const uint32_t block_size_;
  std::atomic<uint64_t> max_bytes_;       // options_.max_bytes until SetLimits
  std::atomic<uint64_t> min_free_bytes_;  // options_.min_free_bytes until SetLimits
  std::atomic<bool> closing_{false};  // the destructor runs: fetches stop at their next block
  std::unique_ptr<Parts> parts_;
};

}  // namespace glancefs::cache
