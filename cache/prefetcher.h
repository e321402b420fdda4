// Prefetcher: the pre-fetch queue (queue/ in the mount) and the workers that download queued
// images whole into the BlockCache, as glance-cache-prefetcher does on a Glance API node.
//
// The queue is persisted in the cache's meta records ("q/<id>"), so it survives restarts and
// kill -9; a restarted worker skips the blocks already stored. An image leaves the queue when it
// is complete and verified (or fails verification: it is then marked corrupt), when it is
// dequeued, or when the catalog no longer has it. A failed download (Glance down) is retried
// every retry_s seconds, so queued work resumes when Glance comes back. Queued images are pinned:
// evicted last. SetOptions changes workers, rate and interval while it runs (a reload): a rate
// applies from the next image, fewer workers leave the extra ones idle after their image.
// Thread-safe. mu_ guards the queue. It is taken before BlockCache's locks (Queue pins the
// image with it held), so the cache never calls stop() with an image's lock held; and it is
// held across the queue records' store writes: only the queue's users (queue/ and the
// metrics in the mount, the workers) wait on it, never a reader of an image's bytes.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "cache/block_cache.h"
#include "cache/block_store.h"
#include "fs/base/catalog.h"
#include "fs/base/mutex.h"

namespace glancefs::cache {

struct PrefetchOptions {
  int workers = 2;           // images downloaded at once
  uint64_t bytes_per_s = 0;  // per worker; 0: no cap
  // Like Glance's cache_prefetcher_interval: queued images start at the next tick. 0: at once.
  int interval_s = 0;
  int retry_s = 10;  // after a failed download
};

struct QueueItem {
  std::string id;
  int64_t queued_at = 0;
  std::string state;  // "waiting", "fetching" or "retrying"
  std::string error;  // the last failure
};

class Prefetcher {
 public:
  // `cache` and `store` (the cache's store, for the queue records) and `upstream` (where image
  // bytes come from) must outlive the Prefetcher.
  Prefetcher(BlockCache* cache, BlockStore* store, Catalog* upstream, PrefetchOptions options,
             std::function<int64_t()> now);
  ~Prefetcher();  // stops the workers; the queue stays persisted

  // Reads the persisted queue and starts the workers.
  Status Start();
  Status Queue(const ImageRecord& record);
  Status Dequeue(const std::string& id);
  std::vector<QueueItem> List();
  std::optional<QueueItem> Find(const std::string& id);
  size_t size();  // images queued
  uint64_t BytesLeft();  // bytes of the queued images not cached yet (known sizes only)
  // workers, bytes_per_s and interval_s from now on (retry_s stays).
  void SetOptions(const PrefetchOptions& options);
  // The catalog as it is now: records for queued ids, and ids that are gone.
  void Observe(std::shared_ptr<const CatalogSnapshot> snapshot);

 private:
  struct Item {
    int64_t queued_at = 0;
    int64_t next_try = 0;
    bool running = false;
    bool cancel = false;
    std::string error;
  };
  static QueueItem ItemOf(const std::string& id, const Item& item);
  void Work(int index) EXCLUDES(mu_);
  // The oldest queued image that is due and known to the catalog ("" if none), and when to
  // look again (*wake) if none. *next_tick: the worker's interval clock.
  std::string PickLocked(int64_t now, int64_t* next_tick, int64_t* wake) REQUIRES(mu_);
  // Downloads `id` whole into the cache.
  Status Fetch(const std::string& id, const std::shared_ptr<const ImageRecord>& record,
               uint64_t bytes_per_s) EXCLUDES(mu_);
  // What a finished download does to the queue.
  void SettleLocked(const std::string& id, const Status& s) REQUIRES(mu_);
  void StartWorkersLocked() REQUIRES(mu_);
  void Remove(const std::string& id) REQUIRES(mu_);

  BlockCache* const cache_;
  BlockStore* const store_;
  Catalog* const upstream_;
  const int retry_s_;  // options_.retry_s, which never changes
  const std::function<int64_t()> now_;

  Mutex mu_;
  CondVar cv_;
  PrefetchOptions options_ GUARDED_BY(mu_);
  std::map<std::string, Item> queue_ GUARDED_BY(mu_);
  std::shared_ptr<const CatalogSnapshot> snapshot_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> workers_ GUARDED_BY(mu_);  // grows, never shrinks
};

}  // namespace glancefs::cache
