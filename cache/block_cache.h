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
// Fetching (CachedByteSource, block_cache.cc). A miss fetches the run of missing blocks the read
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
// Thread-safe. Lock order: mu_ is taken before a MemoryTier shard lock and never held while
// reading the backend. Store calls are made with mu_ held only for meta records and deletions.
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

class ImageCheck;  // block_cache.cc: an image's hash and signature checks, in one pass

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
  // (which must read exactly those bytes). REQUIRES: record.size.
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
  struct Image;
  struct Flight;
  class Source;
  friend class Source;

  BlockCache(std::unique_ptr<BlockStore> store, CacheOptions options, uint32_t block_size);
  Status Load();
  int64_t Now() const;

  std::shared_ptr<Image> ImageFor(const ImageRecord& record);
  // The block `index` of `image`, from memory, the store or the backend. A miss fetches the
  // missing blocks up to `want_last` (at most one request) with it; a block read from the store
  // brings the stored blocks up to `disk_last` into memory with it (one store request).
  Result<BlockData> GetBlock(const std::shared_ptr<Image>& image, uint64_t index,
                             uint64_t want_last, uint64_t disk_last,
                             const std::shared_ptr<ByteSource>& upstream);
  Result<BlockData> LoadBlock(Image& image, BlockKey key);
  // Waits until block `index` is no longer being fetched (if it is), whatever the outcome.
  void AwaitFlight(const Image& image, uint64_t index);
  // Reads `count` stored blocks from `key` in one store request; the first is returned, the
  // others that pass their check go to the memory tier. Falls back to LoadBlock(key).
  Result<BlockData> LoadRun(Image& image, BlockKey key, uint64_t count);
  // Claims (creates flights for) the blocks in [first, last] that are neither stored nor in
  // flight, as runs of at most one request. REQUIRES: mu_ held.
  std::vector<std::pair<uint64_t, uint64_t>> ClaimLocked(Image& image, uint64_t first,
                                                         uint64_t last);
  // Fetches claimed blocks [first, first + count) and completes their flights; the first
  // block goes to *first_block (if given). NotSupported if the source reads only whole: the
  // image is then whole-only, a stream of it is started, and the flights are left to it.
  // `each` (if given) sees every block as it arrives, in order; false ends the request.
  enum class Why { kDemand, kReadahead, kPrefetch };
  using EachBlock = std::function<bool(const Block&)>;
  Status FetchClaimed(const std::shared_ptr<Image>& image, uint64_t no, uint64_t first,
                      uint64_t count, const std::shared_ptr<ByteSource>& upstream, Why why,
                      BlockData* first_block, const EachBlock& each = nullptr);
  // FetchAll of an image nothing of which is stored: one request for all of it (the cheapest
  // for Glance), hashed as it arrives, so verifying it needs no second read of the store.
  // NotSupported (nothing done) when that does not apply.
  Status FetchWholeHashed(const std::shared_ptr<Image>& image,
                          const std::shared_ptr<ByteSource>& upstream,
                          const std::function<bool()>& stop, uint64_t bytes_per_s);
  // Whether a reader waits for a block of image number `no`. REQUIRES: mu_ held.
  bool WaitingLocked(uint64_t no) const;
  // Starts StreamWhole on the pool unless one runs or nothing is missing. REQUIRES: mu_ held.
  void StartStreamLocked(const std::shared_ptr<Image>& image,
                         const std::shared_ptr<ByteSource>& upstream, Why why);
  // Reads a whole-only image whole, storing it, until no reader waits for a block of it.
  void StreamWhole(const std::shared_ptr<Image>& image, const std::shared_ptr<ByteSource>& upstream,
                   Why why);
  // Schedules read-ahead of blocks [first, last] in requests of per_request blocks; returns one
  // past the last block scheduled.
  uint64_t ScheduleReadahead(const std::shared_ptr<Image>& image,
                             const std::shared_ptr<ByteSource>& upstream, uint64_t first,
                             uint64_t last, uint64_t per_request);
  void EnsureMetaLocked(Image& image);
  void PersistLocked(Image& image);
  void DropBlockLocked(Image& image, uint64_t index);
  void EvictLocked(Image& image);
  void EnforceLimits(const Image* fetching);
  // Hashes a complete image against its record and checks its signature; updates its state.
  Status Verify(const std::shared_ptr<Image>& image);
  // Feeds the stored blocks of image number `no`, read back from the store, to `check`.
  Status DigestStored(Image& image, uint64_t no, ImageCheck& check);
  // Gives image number `no`, all of it stored and synced, the verdicts of `check`, which saw
  // all its bytes: verified if its hash is the record's (complete if it has none), else corrupt
  // (its data dropped); and its signature's verdict.
  Status Judge(Image& image, uint64_t no, ImageCheck& check);
  void JudgeSignatureLocked(Image& image, const std::string& verdict);  // REQUIRES: mu_ held
  std::pair<std::optional<SignatureSpec>, std::string> SignatureSpecOfImage(const Image& image);
  // The image's fingerprint of `spec` under this cache's policy; "" when unsigned.
  std::string SignatureFp(const std::optional<SignatureSpec>& spec) const;
  // REQUIRES: mu_ held.
  void NewSignatureLocked(const std::shared_ptr<Image>& image,
                          const std::optional<SignatureSpec>& spec);
  void MaybeScheduleVerify(const std::shared_ptr<Image>& image);  // REQUIRES: mu_ held
  CachedImageInfo InfoLocked(const Image& image) const;
  void RecordLatency(uint64_t us);

  const std::unique_ptr<BlockStore> store_;
  const CacheOptions options_;
  const uint32_t block_size_;
  std::atomic<uint64_t> max_bytes_;       // options_.max_bytes until SetLimits
  std::atomic<uint64_t> min_free_bytes_;  // options_.min_free_bytes until SetLimits
  const std::string policy_fp_;           // PolicyFingerprint(options_)
  MemoryTier memory_;
  BlockPool buffers_;

  std::mutex mu_;
  std::condition_variable flight_cv_;  // flights left the map, or a verification ended
  std::unordered_map<std::string, std::shared_ptr<Image>> images_;  // GUARDED_BY(mu_), by id
  std::map<std::pair<uint64_t, uint64_t>, std::shared_ptr<Flight>> flights_;  // GUARDED_BY(mu_)
  uint64_t next_no_ = 1;                                        // GUARDED_BY(mu_)
  uint64_t cached_bytes_ = 0;                                   // GUARDED_BY(mu_)

  std::atomic<bool> closing_{false};  // the destructor runs: fetches stop at their next block
  CacheCounters totals_;
  std::atomic<uint64_t> evictions_{0}, evicted_bytes_{0}, verified_{0}, verify_failures_{0};
  std::atomic<uint64_t> signatures_verified_{0}, signatures_invalid_{0},
      signatures_unverifiable_{0};
  std::mutex latency_mu_;
  std::vector<uint64_t> latency_counts_;  // GUARDED_BY(latency_mu_), one per bucket + overflow
  uint64_t latency_total_us_ = 0;         // GUARDED_BY(latency_mu_)

  // Last: their threads run tasks that use everything above. Fetches (pool_) wait for the
  // block writes they hand to store_pool_, so pool_ is shut down first.
  std::unique_ptr<WorkPool> store_pool_;
  std::unique_ptr<WorkPool> pool_;
};

}  // namespace glancefs::cache
