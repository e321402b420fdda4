// CacheService: the block cache and the pre-fetch queue behind one object, as the rest of
// glancefs sees them:
//  - WrapCatalog: a Catalog decorator whose OpenData reads through the cache, and whose Refresh
//    tells the cache and the queue what the catalog now holds;
//  - the CacheAdmin interface (fs/base/cache_admin.h) behind queue/, cache/ and the metrics.
// tools/glancefs builds it over the backend's Catalog and hands both to the file system.
#pragma once

#include <memory>
#include <string>

#include "cache/block_cache.h"
#include "cache/prefetcher.h"
#include "fs/base/cache_admin.h"
#include "fs/base/catalog.h"

namespace glancefs::cache {

struct ServiceOptions {
  std::string dir;  // the cache directory: RocksDB and data/ (created if missing)
  CacheOptions cache;
  PrefetchOptions prefetch;
  uint64_t write_buffer_bytes = 8ULL << 20;  // RocksOptions::write_buffer_bytes
};

class CacheService final : public CacheAdmin {
 public:
  // Opens the cache in options.dir (created with its parents) over `upstream` (which must
  // outlive the service).
  static Result<std::unique_ptr<CacheService>> Open(Catalog* upstream, ServiceOptions options);
  // Same, over a given store (tests).
  static Result<std::unique_ptr<CacheService>> OpenWithStore(Catalog* upstream,
                                                             std::unique_ptr<BlockStore> store,
                                                             ServiceOptions options);
  ~CacheService() override;

  // The catalog the file system should read: `upstream` through the cache.
  std::unique_ptr<Catalog> WrapCatalog();
  BlockCache& block_cache() { return *cache_; }
  // What a reload changes while the cache runs.
  void SetLimits(uint64_t max_bytes, uint64_t min_free_bytes);
  void SetPrefetch(const PrefetchOptions& options);

  std::vector<CacheEntry> Cached() override;
  std::vector<CacheEntry> Queued() override;
  std::optional<CacheEntry> Find(const std::string& id) override;
  Status Queue(const ImageRecord& image) override;
  Status Dequeue(const std::string& id) override;
  Status Evict(const std::string& id) override;
  Result<std::string> CheckSignature(const ImageRecord& image) override;
  Result<std::shared_ptr<ByteSource>> OpenCachedOnly(const ImageRecord& image) override;
  std::vector<std::pair<std::string, std::string>> Stats() override;
  std::string Prometheus() override;

 private:
  CacheService(Catalog* upstream, std::unique_ptr<BlockCache> cache, ServiceOptions options);
  CacheEntry EntryOf(const CachedImageInfo& info, const std::optional<QueueItem>& queued) const;

  Catalog* const upstream_;
  const ServiceOptions options_;
  std::unique_ptr<BlockCache> cache_;
  std::unique_ptr<Prefetcher> prefetcher_;  // destroyed first: it uses cache_
};

}  // namespace glancefs::cache
