// CacheAdmin: what the file system needs of the block cache to show queue/, cache/ and the
// cache's metrics. The cache (cache/cache_service.h) implements it; the file system sees only
// this interface, so fs/ never includes cache/. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fs/base/byte_source.h"
#include "fs/base/catalog.h"
#include "fs/base/status.h"

namespace glancefs {

// One image as the cache and the pre-fetch queue see it.
struct CacheEntry {
  std::string id;
  uint64_t size = 0;          // bytes of image data
  uint64_t cached_bytes = 0;  // of them, in the cache
  std::string state;          // "partial", "complete", "verified" or "corrupt"
  // The signature's verdict from the last pass over all the bytes ("verified", "unsigned",
  // "invalid: ...", "unverifiable: ..."); empty until one ran.
  std::string signature;
  bool queued = false;
  int64_t queued_at = 0;  // seconds since the epoch (queued only)
  int64_t last_access = 0;
  // Shown as user.glancefs.<name> xattrs on queue/<id> and cache/<id>: cached_bytes, state,
  // queue_state, error, and per-image counters.
  std::vector<std::pair<std::string, std::string>> xattrs;
};

class CacheAdmin {
 public:
  virtual ~CacheAdmin() = default;

  // Images with cached data (or marked corrupt), sorted by id.
  virtual std::vector<CacheEntry> Cached() = 0;
  // Images in the pre-fetch queue, sorted by id.
  virtual std::vector<CacheEntry> Queued() = 0;
  virtual std::optional<CacheEntry> Find(const std::string& id) = 0;

  // Queues an image for pre-fetch (again: a no-op). InvalidArgument for an image without data.
  virtual Status Queue(const ImageRecord& image) = 0;
  // NotFound if not queued.
  virtual Status Dequeue(const std::string& id) = 0;
  // Drops the image's cached data. NotFound if none.
  virtual Status Evict(const std::string& id) = 0;

  // The image's signature verdict (CacheEntry::signature's words). One it does not have yet, or
  // an "unverifiable" one (asked again: the certificate may be there now), it gets first: the
  // image is fetched whole and verified, and the caller waits, as a pre-fetch would. An error
  // when no verdict could be reached (the source is down).
  virtual Result<std::string> CheckSignature(const ImageRecord& image) = 0;
  // The image's bytes as the cache holds them and nothing else: a block it does not hold (evicted
  // since it was checked) fails the read with PermissionDenied instead of being fetched, so
  // bytes that were not checked are never served (require_signature).
  virtual Result<std::shared_ptr<ByteSource>> OpenCachedOnly(const ImageRecord& image) = 0;

  // Totals, shown as user.glancefs.cache.<name> xattrs on the mount root.
  virtual std::vector<std::pair<std::string, std::string>> Stats() = 0;
  // Every metric in the Prometheus text exposition format.
  virtual std::string Prometheus() = 0;
};

}  // namespace glancefs
