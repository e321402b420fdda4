#include "cache/prefetcher.h"

#include <algorithm>
#include <chrono>

#include "fs/base/log.h"
#include "fs/base/thread.h"

namespace glancefs::cache {

Prefetcher::Prefetcher(BlockCache* cache, BlockStore* store, Catalog* upstream,
                       PrefetchOptions options, std::function<int64_t()> now)
    : cache_(cache),
      store_(store),
      upstream_(upstream),
      retry_s_(options.retry_s),
      now_(std::move(now)),
      options_(options) {
  options_.workers = std::max(1, options_.workers);
}

Prefetcher::~Prefetcher() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [id, item] : queue_) item.cancel = true;
  }
  cv_.SignalAll();
  std::vector<std::thread> workers;
  {
    MutexLock lock(&mu_);
    workers.swap(workers_);
  }
  for (auto& t : workers) t.join();
}

Status Prefetcher::Start() {
  std::map<std::string, Item> stored;
  GLANCEFS_RETURN_IF_ERROR(store_->ScanMeta("q/", [&](std::string_view key, std::string_view v) {
    Item item;
    item.queued_at = std::strtoll(std::string(v).c_str(), nullptr, 10);
    stored[std::string(key.substr(2))] = item;
  }));
  MutexLock lock(&mu_);
  queue_.merge(stored);
  if (!queue_.empty()) LOG_INFO("pre-fetch queue: %zu images to resume", queue_.size());
  StartWorkersLocked();
  return Status::Ok();
}

void Prefetcher::StartWorkersLocked() {
  for (int i = static_cast<int>(workers_.size()); i < std::max(1, options_.workers); ++i) {
    workers_.push_back(NamedThread("gfs-prefetch", [this, i] { Work(i); }));
  }
}

void Prefetcher::SetOptions(const PrefetchOptions& options) {
  MutexLock lock(&mu_);
  options_.workers = std::max(1, options.workers);
  options_.bytes_per_s = options.bytes_per_s;
  options_.interval_s = options.interval_s;
  if (!stopping_ && !workers_.empty()) StartWorkersLocked();
  cv_.SignalAll();
}

Status Prefetcher::Queue(const ImageRecord& record) {
  if (!record.size || record.status != "active") {
    return Status::InvalidArgument("image " + record.id + " is " + record.status +
                                   " with no data to pre-fetch");
  }
  MutexLock lock(&mu_);
  if (queue_.count(record.id)) return Status::Ok();
  Item item;
  item.queued_at = now_();
  GLANCEFS_RETURN_IF_ERROR(store_->PutMeta("q/" + record.id, std::to_string(item.queued_at)));
  queue_[record.id] = item;
  cache_->Pin(record, true);
  LOG_INFO("pre-fetch queue: image %s queued", record.id.c_str());
  cv_.SignalAll();
  return Status::Ok();
}

void Prefetcher::Remove(const std::string& id) {
  if (Status s = store_->DeleteMeta("q/" + id); !s.ok()) {
    LOG_WARNING("pre-fetch queue: cannot remove %s: %s", id.c_str(), s.ToString().c_str());
  }
  queue_.erase(id);
}

Status Prefetcher::Dequeue(const std::string& id) {
  MutexLock lock(&mu_);
  auto it = queue_.find(id);
  if (it == queue_.end()) return Status::NotFound("image " + id + " is not queued");
  if (it->second.running) it->second.cancel = true;  // its worker stops at the next request
  Remove(id);
  cache_->Unpin(id);
  LOG_INFO("pre-fetch queue: image %s dequeued", id.c_str());
  return Status::Ok();
}

QueueItem Prefetcher::ItemOf(const std::string& id, const Item& item) {
  return {id, item.queued_at,
          item.running ? "fetching" : item.error.empty() ? "waiting" : "retrying", item.error};
}

std::vector<QueueItem> Prefetcher::List() {
  MutexLock lock(&mu_);
  std::vector<QueueItem> out;
  for (const auto& [id, item] : queue_) out.push_back(ItemOf(id, item));
  return out;
}

std::optional<QueueItem> Prefetcher::Find(const std::string& id) {
  MutexLock lock(&mu_);
  auto it = queue_.find(id);
  if (it == queue_.end()) return std::nullopt;
  return ItemOf(id, it->second);
}

size_t Prefetcher::size() {
  MutexLock lock(&mu_);
  return queue_.size();
}

uint64_t Prefetcher::BytesLeft() {
  std::vector<std::pair<std::string, uint64_t>> sizes;
  {
    MutexLock lock(&mu_);
    for (const auto& [id, item] : queue_) {
      auto record = snapshot_ ? snapshot_->Find(id) : nullptr;
      if (record && record->size) sizes.emplace_back(id, *record->size);
    }
  }
  uint64_t left = 0;
  for (const auto& [id, size] : sizes) {
    auto info = cache_->Find(id);
    uint64_t cached = info ? std::min(info->cached_bytes, size) : 0;
    left += size - cached;
  }
  return left;
}

void Prefetcher::Observe(std::shared_ptr<const CatalogSnapshot> snapshot) {
  MutexLock lock(&mu_);
  snapshot_ = std::move(snapshot);
  for (auto it = queue_.begin(); it != queue_.end();) {
    auto record = snapshot_->Find(it->first);
    if (record && record->status == "active" && record->size) {
      ++it;
      continue;
    }
    LOG_WARNING("pre-fetch queue: image %s is %s; dequeued", it->first.c_str(),
                record ? record->status.c_str() : "gone from the catalog");
    it->second.cancel = true;
    std::string id = it->first;
    ++it;
    Remove(id);
  }
  cv_.SignalAll();
}

void Prefetcher::Work(int index) {
  MutexLock lock(&mu_);
  int64_t next_tick = 0;
  while (!stopping_) {
    if (index >= options_.workers) {  // idle after SetOptions asked for fewer
      cv_.Wait(&mu_);
      continue;
    }
    const int64_t now = now_();
    int64_t wake = now + 3600;
    std::string pick = PickLocked(now, &next_tick, &wake);
    if (pick.empty()) {
      cv_.WaitFor(&mu_, std::chrono::seconds(std::max<int64_t>(1, wake - now)));
      continue;
    }
    auto record = snapshot_->Find(pick);
    Item& item = queue_[pick];
    item.running = true;
    item.cancel = false;
    const uint64_t bytes_per_s = options_.bytes_per_s;
    lock.Unlock();
    Status s = Fetch(pick, record, bytes_per_s);
    lock.Lock();
    SettleLocked(pick, s);
  }
}

std::string Prefetcher::PickLocked(int64_t now, int64_t* next_tick, int64_t* wake) {
  if (options_.interval_s > 0 && now < *next_tick) {
    *wake = *next_tick;
    return "";
  }
  std::string pick;
  int64_t oldest = 0;
  for (auto& [id, item] : queue_) {
    if (item.running || !snapshot_ || !snapshot_->Find(id)) continue;
    if (item.next_try > now) {
      *wake = std::min(*wake, item.next_try);
      continue;
    }
    if (pick.empty() || item.queued_at < oldest) {
      pick = id;
      oldest = item.queued_at;
    }
  }
  if (pick.empty() && options_.interval_s > 0) {
    *next_tick = now + options_.interval_s;
    *wake = std::min(*wake, *next_tick);
  }
  return pick;
}

Status Prefetcher::Fetch(const std::string& id, const std::shared_ptr<const ImageRecord>& record,
                         uint64_t bytes_per_s) {
  auto source = upstream_->OpenData(*record);
  if (!source.ok()) return source.status();
  LOG_INFO("pre-fetch: image %s (%llu bytes)", id.c_str(),
           static_cast<unsigned long long>(*record->size));
  return cache_->FetchAll(
      *record, *source,
      [&] {
        MutexLock lock(&mu_);
        auto it = queue_.find(id);
        return stopping_ || it == queue_.end() || it->second.cancel;
      },
      bytes_per_s);
}

void Prefetcher::SettleLocked(const std::string& id, const Status& s) {
  auto it = queue_.find(id);
  if (it == queue_.end() || it->second.cancel) {
    if (it != queue_.end()) it->second.running = false;
    return;  // dequeued or stopping meanwhile
  }
  it->second.running = false;
  if (s.ok()) {
    LOG_INFO("pre-fetch: image %s cached", id.c_str());
    Remove(id);
  } else if (s.IsCorruption() || s.IsNotFound()) {
    LOG_ERROR("pre-fetch: image %s: %s; dequeued", id.c_str(), s.ToString().c_str());
    Remove(id);
  } else {
    if (it->second.error.empty()) {
      LOG_WARNING("pre-fetch: image %s: %s; retrying every %d s", id.c_str(),
                  s.ToString().c_str(), retry_s_);
    }
    it->second.error = s.message();
    it->second.next_try = now_() + retry_s_;
  }
}

}  // namespace glancefs::cache
