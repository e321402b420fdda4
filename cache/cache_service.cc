#include "cache/cache_service.h"

#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstdio>
#include <ctime>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <optional>

#include "cache/rocks_block_store.h"
#include "cache/stored_catalog.h"
#include "fs/base/log.h"
#include "fs/base/prometheus.h"
#include "fs/base/time_util.h"

namespace glancefs::cache {
namespace {

// The Catalog decorator: data through the cache; every good refresh reported to the cache and
// stored beside it (stored_catalog.h), so that a mount whose source cannot be reached serves the
// last good catalog instead of failing.
class CachingCatalog final : public Catalog {
 public:
  CachingCatalog(Catalog* upstream, BlockCache* cache, Prefetcher* prefetcher,
                 std::function<int64_t()> now)
      : upstream_(upstream), cache_(cache), prefetcher_(prefetcher), now_(std::move(now)) {}

  std::string Describe() const override { return upstream_->Describe(); }

  Result<std::shared_ptr<const CatalogSnapshot>> Refresh() override {
    auto snap = upstream_->Refresh();
    if (!snap.ok()) {
      if (last_ || tried_stored_) return snap;  // the file system keeps what it has
      tried_stored_ = true;
      auto stored = LoadStored();
      if (!stored) return snap;
      LOG_WARNING("%s: %s; serving the catalog stored at %s (%zu images) until it answers",
                  upstream_->Describe().c_str(), snap.status().message().c_str(),
                  FormatIso8601(stored->taken_at).c_str(), stored->snapshot->images.size());
      Observe(stored->snapshot);
      MutexLock lock(&mu_);
      stored_at_ = stored->taken_at;
      return stored->snapshot;
    }
    const int64_t now = now_();
    if (*snap != last_) {
      Observe(*snap);
      Status put = cache_->store()->PutMeta(kStoredCatalogKey, EncodeCatalog(**snap, now));
      if (!put.ok()) LOG_WARNING("cannot store the catalog: %s", put.ToString().c_str());
    }
    // The time of the last answer, cheap to keep current: the record above changes less often.
    (void)cache_->store()->PutMeta(kSeenKey, std::to_string(now));  // only makes the age exact
    MutexLock lock(&mu_);
    if (stored_at_) LOG_INFO("%s answers again: the stored catalog is replaced", Describe().c_str());
    stored_at_ = 0;
    return snap;
  }

  Result<std::shared_ptr<ByteSource>> OpenData(const ImageRecord& record) override {
    GLANCEFS_ASSIGN_OR_RETURN(auto source, upstream_->OpenData(record));
    if (!record.size || *record.size == 0) return source;
    return cache_->Wrap(record, std::move(source));
  }

  std::vector<std::pair<std::string, std::string>> ImageInfo(const ImageRecord& record) override {
    return upstream_->ImageInfo(record);
  }
  std::string Metrics() override {
    int64_t stored_at;
    {
      MutexLock lock(&mu_);
      stored_at = stored_at_;
    }
    return "# HELP glancefs_catalog_stored 1 while the mount serves the catalog stored with the "
           "cache (the source does not answer).\n# TYPE glancefs_catalog_stored gauge\n"
           "glancefs_catalog_stored " + std::string(stored_at ? "1" : "0") +
           "\n# HELP glancefs_catalog_stored_timestamp_seconds When the stored catalog being "
           "served was read from the source (0: live).\n"
           "# TYPE glancefs_catalog_stored_timestamp_seconds gauge\n"
           "glancefs_catalog_stored_timestamp_seconds " + std::to_string(stored_at) + "\n" +
           upstream_->Metrics();
  }

  std::vector<std::pair<std::string, std::string>> Info() override {
    auto info = upstream_->Info();
    MutexLock lock(&mu_);
    if (stored_at_) {
      info.emplace_back("catalog_state",
                        "stored (as of " + FormatIso8601(stored_at_) + ", " +
                            std::to_string(std::max<int64_t>(0, now_() - stored_at_)) +
                            " s old; the source does not answer)");
    } else {
      info.emplace_back("catalog_state", "live");
    }
    return info;
  }

 private:
  static constexpr std::string_view kSeenKey = "catalog_seen";

  void Observe(const std::shared_ptr<const CatalogSnapshot>& snap) {
    last_ = snap;
    cache_->Observe(*snap);
    prefetcher_->Observe(snap);
  }

  // The stored catalog, or nothing (none, or damaged: logged).
  std::optional<StoredCatalog> LoadStored() {
    auto bytes = cache_->store()->GetMeta(kStoredCatalogKey);
    if (!bytes.ok() || !*bytes) return std::nullopt;
    auto stored = DecodeCatalog(**bytes);
    if (!stored.ok()) {
      LOG_ERROR("the stored catalog cannot be used: %s", stored.status().ToString().c_str());
      return std::nullopt;
    }
    auto seen = cache_->store()->GetMeta(kSeenKey);
    if (seen.ok() && *seen) {
      stored->taken_at = std::max<int64_t>(stored->taken_at, std::atoll((*seen)->c_str()));
    }
    return std::move(stored).value();
  }

  Catalog* const upstream_;
  BlockCache* const cache_;
  Prefetcher* const prefetcher_;
  const std::function<int64_t()> now_;
  // Only the refresher thread calls Refresh: these two are its own.
  std::shared_ptr<const CatalogSnapshot> last_;
  bool tried_stored_ = false;
  Mutex mu_;  // a leaf: held to read or set stored_at_ only
  int64_t stored_at_ GUARDED_BY(mu_) = 0;  // serving a stored catalog taken then; 0: live
};

std::string Num(uint64_t v) { return std::to_string(v); }

}  // namespace

CacheService::CacheService(Catalog* upstream, std::unique_ptr<BlockCache> cache,
                           ServiceOptions options)
    : upstream_(upstream), options_(std::move(options)), cache_(std::move(cache)) {}

CacheService::~CacheService() {
  prefetcher_.reset();
  cache_.reset();
}

Result<std::unique_ptr<CacheService>> CacheService::Open(Catalog* upstream,
                                                         ServiceOptions options) {
  // Parents (/var/cache/glancefs) as any directory; the cache itself private.
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(options.dir).parent_path(), ec);
  if (::mkdir(options.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno(errno, "cache directory " + options.dir);
  }
  if (!options.cache.free_bytes) {
    options.cache.free_bytes = [dir = options.dir]() -> uint64_t {
      struct statvfs st;
      if (::statvfs(dir.c_str(), &st) != 0) return UINT64_MAX;
      return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
    };
  }
  RocksOptions rocks;
  rocks.write_buffer_bytes = options.write_buffer_bytes;
  rocks.max_locked_bytes = options.cache.memory_bytes;
  for (int attempt = 0;; ++attempt) {
    auto store = OpenRocksBlockStore(options.dir, rocks);
    if (!store.ok()) {
      return store.status().WithContext("cannot open the cache (another glancefs may use it; "
                                        "give each mount its own -o cache_dir=)");
    }
    auto service = OpenWithStore(upstream, std::move(store).value(), options);
    if (service.ok() || attempt > 0 || !service.status().IsCorruption()) return service;
    // The store opened but its records cannot be read: it is a cache, start it again.
    LOG_ERROR("cache %s is damaged (%s): starting it again empty", options.dir.c_str(),
              service.status().ToString().c_str());
    GLANCEFS_RETURN_IF_ERROR(DestroyRocksBlockStore(options.dir));
  }
}

Result<std::unique_ptr<CacheService>> CacheService::OpenWithStore(
    Catalog* upstream, std::unique_ptr<BlockStore> store, ServiceOptions options) {
  if (!options.cache.now) options.cache.now = [] { return static_cast<int64_t>(::time(nullptr)); };
  GLANCEFS_ASSIGN_OR_RETURN(auto cache, BlockCache::Open(std::move(store), options.cache));
  std::unique_ptr<CacheService> service(
      new CacheService(upstream, std::move(cache), std::move(options)));
  service->prefetcher_ = std::make_unique<Prefetcher>(
      service->cache_.get(), service->cache_->store(), upstream, service->options_.prefetch,
      service->options_.cache.now);
  GLANCEFS_RETURN_IF_ERROR(service->prefetcher_->Start());
  return service;
}

std::unique_ptr<Catalog> CacheService::WrapCatalog() {
  return std::make_unique<CachingCatalog>(upstream_, cache_.get(), prefetcher_.get(),
                                          options_.cache.now);
}

CacheEntry CacheService::EntryOf(const CachedImageInfo& info,
                                 const std::optional<QueueItem>& queued) const {
  CacheEntry e;
  e.id = info.id;
  e.size = info.size;
  e.cached_bytes = info.cached_bytes;
  e.state = CacheStateName(info.state);
  e.signature = info.signature;
  e.last_access = info.last_access;
  e.xattrs.emplace_back("cached_bytes", Num(info.cached_bytes));
  e.xattrs.emplace_back("size", Num(info.size));
  e.xattrs.emplace_back("state", e.state);
  if (!info.reason.empty()) e.xattrs.emplace_back("error", info.reason);
  if (!info.signature.empty()) e.xattrs.emplace_back("signature", info.signature);
  e.xattrs.emplace_back("pinned", info.pinned ? "1" : "0");
  if (queued) {
    e.queued = true;
    e.queued_at = queued->queued_at;
    e.xattrs.emplace_back("queue_state", queued->state);
    if (!queued->error.empty()) e.xattrs.emplace_back("queue_error", queued->error);
  }
  for (const auto& [name, value] : info.counters) e.xattrs.emplace_back(name, Num(value));
  return e;
}

std::vector<CacheEntry> CacheService::Cached() {
  std::vector<CacheEntry> out;
  for (const auto& info : cache_->List()) out.push_back(EntryOf(info, prefetcher_->Find(info.id)));
  return out;
}

std::vector<CacheEntry> CacheService::Queued() {
  std::vector<CacheEntry> out;
  for (const auto& item : prefetcher_->List()) {
    auto info = cache_->Find(item.id);
    CachedImageInfo none;
    none.id = item.id;
    out.push_back(EntryOf(info ? *info : none, item));
  }
  return out;
}

std::optional<CacheEntry> CacheService::Find(const std::string& id) {
  auto info = cache_->Find(id);
  auto queued = prefetcher_->Find(id);
  if (!info && !queued) return std::nullopt;
  CachedImageInfo none;
  none.id = id;
  return EntryOf(info ? *info : none, queued);
}

Status CacheService::Queue(const ImageRecord& image) { return prefetcher_->Queue(image); }
Status CacheService::Dequeue(const std::string& id) { return prefetcher_->Dequeue(id); }
Status CacheService::Evict(const std::string& id) {
  auto info = cache_->Find(id);
  if (!info || (info->cached_bytes == 0 && info->state != CacheState::kCorrupt)) {
    return Status::NotFound("image " + id + " has no cached data");
  }
  return cache_->Evict(id);
}

Result<std::string> CacheService::CheckSignature(const ImageRecord& image) {
  return cache_->CheckSignature(image, [&] { return upstream_->OpenData(image); });
}

namespace {

// Stands in for the source under reads that must come from the cache alone.
class CachedOnlySource final : public ByteSource {
 public:
  CachedOnlySource(uint64_t size, std::string id) : size_(size), id_(std::move(id)) {}
  uint64_t size() const override { return size_; }
  Status ReadAt(uint64_t, size_t, char*) override {
    return Status::PermissionDenied("image " + id_ +
                                    " lost cached bytes since its signature was checked: open it "
                                    "again to check it again");
  }

 private:
  const uint64_t size_;
  const std::string id_;
};

}  // namespace

Result<std::shared_ptr<ByteSource>> CacheService::OpenCachedOnly(const ImageRecord& image) {
  if (!image.size) return Status::NotFound("image " + image.id + " has no data");
  return cache_->Wrap(image, std::make_shared<CachedOnlySource>(*image.size, image.id));
}

void CacheService::SetLimits(uint64_t max_bytes, uint64_t min_free_bytes) {
  cache_->SetLimits(max_bytes, min_free_bytes);
}

void CacheService::SetPrefetch(const PrefetchOptions& options) {
  prefetcher_->SetOptions(options);
}

std::vector<std::pair<std::string, std::string>> CacheService::Stats() {
  CacheTotals t = cache_->Totals();
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back("dir", cache_->Describe());
  out.emplace_back("images", Num(t.images));
  out.emplace_back("cached_bytes", Num(t.cached_bytes));
  out.emplace_back("disk_bytes", Num(t.disk_bytes));
  out.emplace_back("memory_bytes", Num(t.memory_bytes));
  out.emplace_back("max_bytes", Num(cache_->max_bytes()));
  out.emplace_back("evictions", Num(t.evictions));
  out.emplace_back("evicted_bytes", Num(t.evicted_bytes));
  out.emplace_back("verified", Num(t.verified));
  out.emplace_back("verify_failures", Num(t.verify_failures));
  out.emplace_back("queued", Num(prefetcher_->size()));
  for (const auto& [name, value] : t.counters) out.emplace_back(name, Num(value));
  return out;
}

namespace {

void AppendMetric(std::string* out, const char* name, const char* type, const char* help,
                  const std::string& v) {
  *out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
          name + " " + v + "\n";
}

// The block counters and the fetch latency histogram.
void AppendFetchMetrics(std::string* out, const CacheTotals& t) {
  auto metric = [&](const char* name, const char* type, const char* help, const std::string& v) {
    AppendMetric(out, name, type, help, v);
  };
  auto counter = [&](const std::string& key) {
    for (const auto& [name, value] : t.counters) {
      if (name == key) return Num(value);
    }
    return std::string("0");
  };
  *out += "# HELP glancefs_cache_hits_total Blocks served from the cache, by tier.\n"
          "# TYPE glancefs_cache_hits_total counter\n";
  *out += "glancefs_cache_hits_total{tier=\"memory\"} " + counter("hits_memory") + "\n";
  *out += "glancefs_cache_hits_total{tier=\"disk\"} " + counter("hits_disk") + "\n";
  metric("glancefs_cache_misses_total", "counter",
         "Blocks readers waited for the backend for.", counter("misses"));
  metric("glancefs_cache_readahead_blocks_total", "counter", "Blocks fetched by read-ahead.",
         counter("readahead_blocks"));
  metric("glancefs_cache_prefetch_blocks_total", "counter",
         "Blocks fetched by the pre-fetch queue.", counter("prefetch_blocks"));
  metric("glancefs_fetch_bytes_total", "counter", "Bytes fetched from the backend.",
         counter("bytes_fetched"));
  metric("glancefs_fetch_errors_total", "counter", "Failed backend requests.",
         counter("fetch_errors"));
  metric("glancefs_cache_corrupt_blocks_total", "counter",
         "Stored blocks that failed their checksum (refetched, never served).",
         counter("corrupt_blocks"));
  metric("glancefs_cache_store_errors_total", "counter", "Block writes the store refused.",
         counter("store_errors"));
  *out += "# HELP glancefs_fetch_seconds Backend request latency.\n"
          "# TYPE glancefs_fetch_seconds histogram\n";
  for (const auto& [bound, count] : t.latency_buckets) {
    char le[32];
    std::snprintf(le, sizeof le, "%g", bound);
    *out += std::string("glancefs_fetch_seconds_bucket{le=\"") + le + "\"} " + Num(count) + "\n";
  }
  *out += "glancefs_fetch_seconds_bucket{le=\"+Inf\"} " + Num(t.latency_count) + "\n";
  char sum[32];
  std::snprintf(sum, sizeof sum, "%.6f", t.latency_sum_s);
  *out += std::string("glancefs_fetch_seconds_sum ") + sum + "\n";
  *out += "glancefs_fetch_seconds_count " + Num(t.latency_count) + "\n";
}

// Per image: cached bytes and some counters.
void AppendImageMetrics(std::string* out, const std::vector<CachedImageInfo>& infos) {
  *out += "# HELP glancefs_image_cached_bytes Bytes of the image in the cache.\n"
          "# TYPE glancefs_image_cached_bytes gauge\n";
  for (const auto& i : infos) {
    *out += "glancefs_image_cached_bytes{image=\"" + PrometheusLabel(i.id) + "\"} " +
            Num(i.cached_bytes) + "\n";
  }
  for (const char* name : {"hits_memory", "hits_disk", "misses", "bytes_fetched"}) {
    std::string metric_name = std::string("glancefs_image_") + name + "_total";
    *out += "# HELP " + metric_name + " Per image: " + name + ".\n# TYPE " + metric_name +
            " counter\n";
    for (const auto& i : infos) {
      for (const auto& [k, v] : i.counters) {
        if (k == name) {
          *out += metric_name + "{image=\"" + PrometheusLabel(i.id) + "\"} " + Num(v) + "\n";
        }
      }
    }
  }
}

}  // namespace

std::string CacheService::Prometheus() {
  CacheTotals t = cache_->Totals();
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, const std::string& v) {
    AppendMetric(&out, name, type, help, v);
  };
  AppendFetchMetrics(&out, t);
  metric("glancefs_cache_bytes", "gauge", "Image bytes in the cache.", Num(t.cached_bytes));
  metric("glancefs_cache_max_bytes", "gauge", "The cache's soft size limit (cache_size; 0: none).",
         Num(cache_->max_bytes()));
  metric("glancefs_cache_disk_bytes", "gauge", "Bytes the cache's store occupies on disk.",
         Num(t.disk_bytes));
  metric("glancefs_cache_memory_bytes", "gauge", "Bytes in the in-memory tier.",
         Num(t.memory_bytes));
  metric("glancefs_cache_images", "gauge", "Images with cached data.", Num(t.images));
  metric("glancefs_cache_evictions_total", "counter", "Images evicted.", Num(t.evictions));
  metric("glancefs_cache_evicted_bytes_total", "counter", "Bytes evicted.", Num(t.evicted_bytes));
  metric("glancefs_cache_verified_total", "counter", "Images verified against their hash.",
         Num(t.verified));
  metric("glancefs_cache_verify_failures_total", "counter",
         "Images whose data did not match their hash.", Num(t.verify_failures));
  out += "# HELP glancefs_signature_checks_total Image signatures checked, by verdict.\n"
         "# TYPE glancefs_signature_checks_total counter\n";
  out += "glancefs_signature_checks_total{verdict=\"verified\"} " + Num(t.signatures_verified) +
         "\nglancefs_signature_checks_total{verdict=\"invalid\"} " + Num(t.signatures_invalid) +
         "\nglancefs_signature_checks_total{verdict=\"unverifiable\"} " +
         Num(t.signatures_unverifiable) + "\n";
  metric("glancefs_queue_images", "gauge", "Images in the pre-fetch queue.",
         Num(prefetcher_->size()));
  metric("glancefs_queue_bytes_left", "gauge",
         "Bytes of the queued images not cached yet.", Num(prefetcher_->BytesLeft()));
  AppendImageMetrics(&out, cache_->List());
  return out;
}

}  // namespace glancefs::cache
