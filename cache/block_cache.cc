// BlockCache, the facade: builds the parts (cached_source, block_fetcher, whole_streamer,
// image_table, image_judge, image_prefetch, ...) in dependency order, wires their hooks, and
// answers the public API by delegating. It keeps no state of its own beyond the limits.
#include "cache/block_cache.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include "cache/block_fetcher.h"
#include "cache/cache_metrics.h"
#include "cache/cached_source.h"
#include "cache/flight_table.h"
#include "cache/image_judge.h"
#include "cache/image_prefetch.h"
#include "cache/image_table.h"
#include "cache/stored_blocks.h"
#include "cache/verifier.h"
#include "cache/whole_streamer.h"
#include "fs/base/log.h"

namespace glancefs::cache {
namespace {

// Bytes of spare block buffers kept for reuse (block.h).
constexpr size_t kIdleBufferBytes = 16 << 20;
constexpr int kStoreThreads = 2;

}  // namespace

const char* CacheStateName(CacheState state) {
  switch (state) {
    case CacheState::kPartial:
      return "partial";
    case CacheState::kComplete:
      return "complete";
    case CacheState::kVerified:
      return "verified";
    case CacheState::kCorrupt:
      return "corrupt";
  }
  return "partial";
}

// Declared in dependency order: each part is made after (and destroyed before) what it uses.
// The pools come first so parts can hold them, but are shut down first by ~BlockCache: their
// threads run tasks that use every part.
struct BlockCache::Parts {
  Parts(BlockCache* cache, BlockStore* store, const CacheOptions& o, uint32_t block_size)
      : policy{o.certificates, o.trusted_certificates},
        memory(o.memory_bytes),
        buffers(block_size, std::max<size_t>(1, kIdleBufferBytes / block_size)),
        store_pool(kStoreThreads, "gfs-store"),
        pool(std::max(1, o.fetch_threads), "gfs-fetch"),
        images(
            store, block_size, [cache] { return cache->Now(); }, PolicyFingerprint(policy),
            &metrics),
        stored(store, &buffers, &memory),
        fetcher({store, &buffers, &memory, &flights, &images, &metrics, &store_pool,
                 &cache->closing_, block_size, o.request_bytes},
                {[this](const ImagePtr& image, const SourcePtr& upstream, FetchWhy why) {
                   streamer.Start(image, upstream, why);
                 },
                 [cache](const ImagePtr& image, FetchWhy why, bool added) {
                   cache->Fetched(image, why == FetchWhy::kPrefetch, added);
                 }}),
        streamer(&fetcher, &flights, &pool, &cache->closing_),
        judge(
            {&cache->closing_, store, &stored, &images, &metrics, &pool, &policy,
             [cache] { return cache->Now(); }}),
        prefetch({store, &flights, &fetcher, &streamer, &judge, &pool, block_size, o.request_bytes,
                  o.readahead_requests}),
        reader({&flights, &memory, &buffers, &stored, &images, &fetcher, &streamer, &metrics, &pool,
                &cache->options_, [cache] { return cache->Now(); }}) {
    images.SetSignatureHook([this](const ImagePtr& image) { judge.MaybeSchedule(image); });
  }

  const SignaturePolicy policy;
  MemoryTier memory;
  BlockPool buffers;
  CacheMetrics metrics;
  FlightTable flights;
  WorkPool store_pool;
  WorkPool pool;
  ImageTable images;
  StoredBlocks stored;
  BlockFetcher fetcher;
  WholeImageStreamer streamer;
  ImageJudge judge;
  ImagePrefetch prefetch;
  BlockReader reader;
};

BlockCache::BlockCache(std::unique_ptr<BlockStore> store, CacheOptions options, uint32_t block_size)
    : store_(std::move(store)),
      options_(std::move(options)),
      block_size_(block_size),
      max_bytes_(options_.max_bytes),
      min_free_bytes_(options_.min_free_bytes),
      parts_(std::make_unique<Parts>(this, store_.get(), options_, block_size)) {}

BlockCache::~BlockCache() {
  closing_ = true;          // a fetch under way (a whole image's stream) stops at its next block
  parts_->pool.Shutdown();  // joins the fetch threads; no task runs after this
  parts_->store_pool.Shutdown();  // after: fetches wait for their stores
  // Read-ahead claimed by tasks the pool dropped: fail them, so no waiter is left behind.
  parts_->flights.FailAll(Status::Unavailable("the cache is shutting down"));
  if (Status s = store_->Sync(); !s.ok())
    LOG_WARNING("cache: final flush: %s", s.ToString().c_str());
}

Result<std::unique_ptr<BlockCache>> BlockCache::Open(std::unique_ptr<BlockStore> store,
                                                     CacheOptions options) {
  if (options.block_size < 4096 || (options.block_size & (options.block_size - 1)) ||
      options.block_size > (16u << 20)) {
    return Status::InvalidArgument("cache block size must be a power of two, 4 KiB to 16 MiB");
  }
  if (options.request_bytes < options.block_size) options.request_bytes = options.block_size;
  uint32_t block_size = options.block_size;
  GLANCEFS_ASSIGN_OR_RETURN(auto stored, store->GetMeta("cfg/block_size"));
  if (stored) {
    block_size = static_cast<uint32_t>(std::strtoull(stored->c_str(), nullptr, 10));
    if (block_size != options.block_size) {
      LOG_WARNING("cache %s keeps its block size of %u bytes", store->Describe().c_str(),
                  block_size);
    }
  } else {
    GLANCEFS_RETURN_IF_ERROR(store->PutMeta("cfg/block_size", std::to_string(block_size)));
  }
  store->SetBlockSize(block_size);
  std::unique_ptr<BlockCache> cache(new BlockCache(std::move(store), options, block_size));
  GLANCEFS_RETURN_IF_ERROR(cache->parts_->images.Load());
  return cache;
}

int64_t BlockCache::Now() const { return options_.now ? options_.now() : ::time(nullptr); }

std::shared_ptr<ByteSource> BlockCache::Wrap(const ImageRecord& record,
                                             std::shared_ptr<ByteSource> upstream) {
  ImagePtr image = parts_->images.ImageFor(record);
  // Complete but not verified: its check was cut short (an unmount, a failed sync). It runs now,
  // on a fetch thread, instead of when a pre-fetch or a signature check next asks.
  parts_->judge.MaybeSchedule(image);
  return std::make_shared<CachedSource>(&parts_->reader, std::move(image), std::move(upstream));
}

void BlockCache::Fetched(const std::shared_ptr<Image>& image, bool prefetch, bool added) {
  if (!prefetch) parts_->judge.MaybeSchedule(image);
  if (added) EnforceLimits(image.get());
}

void BlockCache::SetLimits(uint64_t max_bytes, uint64_t min_free_bytes) {
  max_bytes_ = max_bytes;
  min_free_bytes_ = min_free_bytes;
  EnforceLimits(nullptr);
}

void BlockCache::EnforceLimits(const Image* fetching) {
  const uint64_t min_free_bytes = min_free_bytes_.load();
  uint64_t need_free = 0;
  if (min_free_bytes > 0 && options_.free_bytes) {
    uint64_t free = options_.free_bytes();
    if (free < min_free_bytes) need_free = min_free_bytes - free;
  }
  parts_->images.EnforceLimits(max_bytes_.load(), need_free, fetching);
}

Status BlockCache::FetchAll(const ImageRecord& record, const std::shared_ptr<ByteSource>& upstream,
                            const std::function<bool()>& stop, uint64_t bytes_per_s) {
  return parts_->prefetch.FetchAll(parts_->images.ImageFor(record), upstream, stop, bytes_per_s);
}

std::string BlockCache::SignatureOfEmpty(const std::shared_ptr<Image>& image) {
  std::unique_ptr<ImageCheck> check = parts_->judge.NewCheck(*image);
  std::string verdict = check->SignatureVerdict();
  MutexLock lock(&image->mu);
  if (image->signature_fp == check->signature_fp())
    parts_->judge.JudgeSignatureLocked(*image, verdict);
  return verdict;
}

BlockCache::Step BlockCache::StoredVerdict(const std::shared_ptr<Image>& image, int attempt,
                                           Result<std::string>* verdict, Status* last) {
  {
    MutexLock lock(&image->mu);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(600);
    while (image->verifying && image->changed.WaitUntil(&image->mu, deadline)) {
    }
    if (image->retired) {
      *verdict = Status::Unavailable("image " + image->id + " was replaced");
      return Step::kVerdict;
    }
    const bool complete = image->complete();
    const std::string signature = image->signature;
    const bool unverifiable = signature.rfind("unverifiable", 0) == 0;
    // A verdict speaks for the bytes in the cache (all of them), or for a version whose bytes
    // failed their hash and were dropped (corrupt until evicted).
    if (!signature.empty() && (complete || image->state() == CacheState::kCorrupt) &&
        (!unverifiable || attempt > 0)) {
      *verdict = signature;
      return Step::kVerdict;
    }
    if (!complete) return Step::kFetch;
    image->verifying = true;  // Verify's to clear
  }
  *last = parts_->judge.Verify(image);
  return Step::kChecked;
}

Result<std::string> BlockCache::CheckSignature(
    const ImageRecord& record,
    const std::function<Result<std::shared_ptr<ByteSource>>()>& open_upstream) {
  std::shared_ptr<Image> image = parts_->images.ImageFor(record);
  if (image->nblocks == 0) return SignatureOfEmpty(image);  // the signature over no bytes
  Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    Result<std::string> verdict = std::string();
    Step step = StoredVerdict(image, attempt, &verdict, &last);
    if (step == Step::kVerdict) return verdict;
    if (step == Step::kChecked) continue;
    GLANCEFS_ASSIGN_OR_RETURN(auto upstream, open_upstream());
    last = parts_->prefetch.FetchAll(
        image, upstream, [] { return false; }, 0);
    if (!last.ok() && !last.IsCorruption()) return last;
  }
  MutexLock lock(&image->mu);
  if (!image->signature.empty()) return image->signature;
  return last.ok() ? Status::Unavailable("image " + record.id + ": its signature was not checked")
                   : last;
}

Status BlockCache::Evict(const std::string& id) { return parts_->images.Evict(id); }

void BlockCache::Pin(const ImageRecord& record, bool pinned) {
  ImagePtr image = parts_->images.ImageFor(record);
  PendingRecord pending;
  {
    MutexLock lock(&image->mu);
    image->pinned = pinned;
    pending = parts_->images.RecordLocked(*image);
  }
  parts_->images.Commit(*image, pending);
}

void BlockCache::Unpin(const std::string& id) {
  ImagePtr image = parts_->images.Find(id);
  if (!image) return;
  PendingRecord pending;
  {
    MutexLock lock(&image->mu);
    if (!image->pinned) return;
    image->pinned = false;
    if (image->meta_written) pending = parts_->images.RecordLocked(*image);
  }
  parts_->images.Commit(*image, pending);
}

void BlockCache::Observe(const CatalogSnapshot& snapshot) { parts_->images.Observe(snapshot); }

std::vector<CachedImageInfo> BlockCache::List() {
  std::vector<CachedImageInfo> out;
  for (const ImagePtr& image : parts_->images.All()) {
    MutexLock lock(&image->mu);
    if (image->cached_bytes > 0 || image->state() == CacheState::kCorrupt) {
      out.push_back(image->InfoLocked());
    }
  }
  std::sort(out.begin(), out.end(),
            [](const CachedImageInfo& a, const CachedImageInfo& b) { return a.id < b.id; });
  return out;
}

std::optional<CachedImageInfo> BlockCache::Find(const std::string& id) {
  ImagePtr image = parts_->images.Find(id);
  if (!image) return std::nullopt;
  MutexLock lock(&image->mu);
  return image->InfoLocked();
}

CacheTotals BlockCache::Totals() {
  CacheTotals t;
  parts_->metrics.Fill(t);
  t.cached_bytes = parts_->images.cached_bytes();
  for (const ImagePtr& image : parts_->images.All()) {
    MutexLock lock(&image->mu);
    t.images += image->cached_bytes > 0;
  }
  t.memory_bytes = parts_->memory.bytes();
  t.disk_bytes = store_->DiskBytes();
  return t;
}

}  // namespace glancefs::cache
