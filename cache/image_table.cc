#include "cache/image_table.h"

#include <algorithm>
#include <cctype>

#include "cache/cache_metrics.h"
#include "fs/base/log.h"

namespace glancefs::cache {
namespace {

CacheState StateOfName(const std::string& name) {
  return name == "verified"   ? CacheState::kVerified
         : name == "complete" ? CacheState::kComplete
         : name == "corrupt"  ? CacheState::kCorrupt
                              : CacheState::kPartial;
}

// The image a record describes (its blocks not counted yet).
ImagePtr ImageOfRecord(const std::string& id, const ImageRecordFields& f, uint32_t block_size) {
  auto image = std::make_shared<Image>(id, f.version, f.size, block_size);
  image->hash_algo = f.hash_algo;
  image->hash_value = f.hash_value;
  image->no = f.no;
  image->last_access = f.last_access;
  MutexLock lock(&image->mu);
  image->reason = f.reason;
  image->signature_fp = f.signature_fp;
  image->signature = f.signature;
  image->pinned = f.pinned;
  image->SetState(StateOfName(f.state));
  image->meta_written = true;
  return image;
}

}  // namespace

Image::Image(std::string id_, std::string version_, uint64_t size_, uint32_t block_size_)
    : id(std::move(id_)),
      version(std::move(version_)),
      size(size_),
      block_size(block_size_),
      nblocks((size_ + block_size_ - 1) / block_size_) {
  present.assign(nblocks, false);
}

ImageRecordFields Image::RecordLocked() const {
  return {version,   size,         no.load(),          CacheStateName(state_),
          hash_algo, hash_value,   last_access.load(), pinned,
          reason,    signature_fp, signature};
}

CachedImageInfo Image::InfoLocked() const {
  return {id,     version,   size,   cached_bytes,       state_,
          reason, signature, pinned, last_access.load(), CounterValues(counters)};
}

ImageTable::ImageTable(BlockStore* store, uint32_t block_size, std::function<int64_t()> now,
                       std::string policy_fp, CacheMetrics* metrics)
    : store_(store),
      block_size_(block_size),
      now_(std::move(now)),
      policy_fp_(std::move(policy_fp)),
      metrics_(metrics),
      records_(store) {}

Status ImageTable::Load() {
  std::unordered_map<std::string, ImagePtr> loaded;
  std::unordered_map<uint64_t, Image*> by_no;
  uint64_t next_no = 1;
  GLANCEFS_RETURN_IF_ERROR(store_->ScanMeta("img/", [&](std::string_view key, std::string_view v) {
    auto fields = DecodeImageRecord(v);
    if (!fields || by_no.count(fields->no)) return;  // damaged record: ignore it
    ImagePtr image = ImageOfRecord(std::string(key.substr(4)), *fields, block_size_);
    by_no[fields->no] = image.get();
    next_no = std::max(next_no, fields->no + 1);
    loaded[image->id] = std::move(image);
  }));
  GLANCEFS_RETURN_IF_ERROR(LoadBlocks(by_no, &next_no));
  next_no_ = next_no;
  for (auto& [id, image] : loaded) ResetIncomplete(image);
  size_t count = loaded.size();
  {
    MutexLock lock(&mu_);
    images_ = std::move(loaded);
  }
  LOG_INFO("cache %s: %zu images, %llu bytes", store_->Describe().c_str(), count,
           static_cast<unsigned long long>(cached_bytes_.load()));
  return Status::Ok();
}

Status ImageTable::LoadBlocks(const std::unordered_map<uint64_t, Image*>& by_no,
                              uint64_t* next_no) {
  std::vector<uint64_t> orphans;
  GLANCEFS_RETURN_IF_ERROR(store_->ScanBlocks([&](BlockKey key) {
    *next_no = std::max(*next_no, key.image_no + 1);
    auto it = by_no.find(key.image_no);
    if (it == by_no.end() || key.index >= it->second->nblocks) {
      if (orphans.empty() || orphans.back() != key.image_no) orphans.push_back(key.image_no);
      return;
    }
    MutexLock lock(&it->second->mu);
    AddBlockLocked(*it->second, key.index);
  }));
  for (uint64_t no : orphans) {
    // Blocks whose record is gone (an eviction or a crash between record and blocks).
    GLANCEFS_RETURN_IF_ERROR(store_->DeleteImage(no));
  }
  return Status::Ok();
}

void ImageTable::ResetIncomplete(const ImagePtr& image) {
  PendingRecord record;
  {
    MutexLock lock(&image->mu);
    if (image->complete() || image->state() == CacheState::kCorrupt ||
        image->state() == CacheState::kPartial) {
      return;
    }
    LOG_WARNING("cache: image %s lost blocks since it was verified; fetching them again",
                image->id.c_str());
    image->SetState(CacheState::kPartial);
    image->signature.clear();
    record = RecordLocked(*image);
  }
  Commit(*image, record);
}

ImagePtr ImageTable::MakeImage(const ImageRecord& record) {
  auto image = std::make_shared<Image>(record.id, record.data_version, *record.size, block_size_);
  auto prop = [&](const char* name) {
    auto it = record.properties.find(name);
    return it == record.properties.end() ? std::string() : it->second;
  };
  std::string algo = prop("os_hash_algo"), value = prop("os_hash_value");
  if (!algo.empty() && !value.empty()) {
    image->hash_algo = algo;
    image->hash_value = value;
  } else if (!prop("checksum").empty()) {
    image->hash_algo = "md5";
    image->hash_value = prop("checksum");
  }
  std::transform(image->hash_value.begin(), image->hash_value.end(), image->hash_value.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  image->no = next_no_++;
  image->last_access = now_();
  auto spec = SignatureSpecOf(record);
  MutexLock lock(&image->mu);
  image->signature_spec = spec;
  image->signature_fp = SignatureFp(spec);
  if (image->nblocks == 0) image->SetState(CacheState::kComplete);
  return image;
}

ImagePtr ImageTable::ImageFor(const ImageRecord& record) {
  auto spec = SignatureSpecOf(record);
  const std::string fp = SignatureFp(spec);
  ImagePtr image;
  std::optional<Evicted> replaced;
  {
    MutexLock lock(&mu_);
    ImagePtr& slot = images_[record.id];
    if (!slot || slot->version != record.data_version || slot->size != *record.size) {
      if (slot) {
        LOG_INFO("cache: image %s has new data; dropping the cached version", record.id.c_str());
        replaced = EvictAndForgetLocked(slot, /*retire=*/true);
      }
      slot = MakeImage(record);
      image = slot;
    } else {
      image = slot;
    }
  }
  if (replaced) {
    Finish(*replaced);
    return image;
  }
  PendingRecord changed;
  {
    MutexLock lock(&image->mu);
    if (image->signature_fp != fp) {
      NewSignatureLocked(*image, spec, &changed);
    } else if (!image->signature_spec) {
      image->signature_spec = spec;  // a record loaded from the store
    }
  }
  if (changed.stamp != 0) {
    Commit(*image, changed);
    if (on_new_signature_) on_new_signature_(image);
  }
  return image;
}

bool ImageTable::NewSignatureLocked(Image& image, const std::optional<SignatureSpec>& spec,
                                    PendingRecord* record) {
  // Glance lets the properties change after upload and never checks them again: the bytes
  // stay, the verdict goes, and a complete image is checked again.
  LOG_INFO("cache: image %s has new signature properties; checking them", image.id.c_str());
  image.signature_spec = spec;
  image.signature_fp = SignatureFp(spec);
  image.signature.clear();
  if (image.state() == CacheState::kVerified || image.state() == CacheState::kComplete) {
    image.SetState(CacheState::kPartial);
  }
  *record = RecordLocked(image);
  return true;
}

ImagePtr ImageTable::Find(const std::string& id) {
  MutexLock lock(&mu_);
  auto it = images_.find(id);
  return it == images_.end() ? nullptr : it->second;
}

std::vector<ImagePtr> ImageTable::All() {
  MutexLock lock(&mu_);
  std::vector<ImagePtr> out;
  out.reserve(images_.size());
  for (const auto& [id, image] : images_) out.push_back(image);
  return out;
}

void ImageTable::Observe(const CatalogSnapshot& snapshot) {
  std::vector<Evicted> dropped;
  std::vector<std::pair<ImagePtr, PendingRecord>> resigned;
  {
    MutexLock lock(&mu_);
    for (auto it = images_.begin(); it != images_.end();) {
      auto record = snapshot.Find(it->first);
      if (record && record->data_version == it->second->version) {
        auto spec = SignatureSpecOf(*record);
        MutexLock image_lock(&it->second->mu);
        PendingRecord changed;
        if (it->second->signature_fp != SignatureFp(spec) &&
            NewSignatureLocked(*it->second, spec, &changed)) {
          resigned.emplace_back(it->second, changed);
        }
        ++it;
        continue;
      }
      LOG_INFO("cache: image %s %s; dropping its cached data", it->first.c_str(),
               record ? "has new data" : "is gone from the catalog");
      dropped.push_back(EvictAndForgetLocked(it->second, /*retire=*/true));
      it = images_.erase(it);
    }
  }
  for (const Evicted& e : dropped) Finish(e);
  for (const auto& [image, record] : resigned) {
    Commit(*image, record);
    if (on_new_signature_) on_new_signature_(image);
  }
}

Status ImageTable::Evict(const std::string& id) {
  Evicted evicted;
  {
    MutexLock lock(&mu_);
    auto it = images_.find(id);
    if (it == images_.end()) return Status::NotFound("image " + id + " is not cached");
    evicted = EvictAndForgetLocked(it->second, /*retire=*/false);
    Image& image = *it->second;
    MutexLock image_lock(&image.mu);
    image.SetState(image.nblocks == 0 ? CacheState::kComplete : CacheState::kPartial);
    image.reason.clear();
    image.pinned = false;
  }
  Finish(evicted);
  return Status::Ok();
}

void ImageTable::EnforceLimits(uint64_t max_bytes, uint64_t need_free, const Image* fetching) {
  if (need_free == 0 && (max_bytes == 0 || cached_bytes_.load() <= max_bytes)) return;
  std::vector<EvictionCandidate> candidates;
  {
    MutexLock lock(&mu_);
    for (const auto& [id, image] : images_) {
      if (image.get() == fetching) continue;
      MutexLock image_lock(&image->mu);
      candidates.push_back({id, image->cached_bytes, image->pinned, image->last_access.load()});
    }
  }
  for (const std::string& id :
       ChooseVictims(std::move(candidates), cached_bytes_.load(), max_bytes, need_free)) {
    std::optional<Evicted> evicted;
    {
      MutexLock lock(&mu_);
      auto it = images_.find(id);
      if (it == images_.end()) continue;
      {
        MutexLock image_lock(&it->second->mu);
        if (it->second->cached_bytes == 0) continue;  // evicted meanwhile
        LOG_INFO("cache: evicting image %s (%llu bytes, last read %lld)", id.c_str(),
                 static_cast<unsigned long long>(it->second->cached_bytes),
                 static_cast<long long>(it->second->last_access.load()));
      }
      evicted = EvictAndForgetLocked(it->second, /*retire=*/false);
    }
    Finish(*evicted);
  }
}

ImageTable::Evicted ImageTable::EvictAndForgetLocked(const ImagePtr& image, bool retire) {
  MutexLock lock(&image->mu);
  Evicted e;
  e.image = image;
  e.old_no = EvictLocked(*image);
  e.record = DeleteRecordLocked(*image);
  if (retire) image->retired = true;
  return e;
}

void ImageTable::Finish(const Evicted& evicted) {
  DropBlocks(evicted.old_no);
  Commit(*evicted.image, evicted.record);
}

uint64_t ImageTable::EvictLocked(Image& image) {
  const uint64_t old_no = image.no.load();
  if (image.cached_bytes > 0) {
    metrics_->evictions.fetch_add(1, std::memory_order_relaxed);
    metrics_->evicted_bytes.fetch_add(image.cached_bytes, std::memory_order_relaxed);
  }
  cached_bytes_ -= image.cached_bytes;
  image.cached_bytes = 0;
  image.signature.clear();  // the next bytes fetched are checked again
  image.present_blocks = 0;
  image.present.assign(image.nblocks, false);
  image.no = next_no_++;  // in-flight fetches of the old number land nowhere
  if (image.state() != CacheState::kCorrupt) {
    image.SetState(image.nblocks == 0 ? CacheState::kComplete : CacheState::kPartial);
  }
  image.meta_written = false;
  return old_no;
}

void ImageTable::DropBlocks(uint64_t old_no) {
  if (Status s = store_->DeleteImage(old_no); !s.ok()) {
    LOG_WARNING("cache: deleting the blocks of image number %llu: %s",
                static_cast<unsigned long long>(old_no), s.ToString().c_str());
  }
}

bool ImageTable::AddBlockLocked(Image& image, uint64_t index) {
  if (image.present[index]) return false;
  image.present[index] = true;
  ++image.present_blocks;
  const uint64_t len = image.BlockLen(index);
  image.cached_bytes += len;
  cached_bytes_ += len;
  return true;
}

PendingRecord ImageTable::DropBlockLocked(Image& image, uint64_t index) {
  if (!image.present[index]) return {};
  image.present[index] = false;
  --image.present_blocks;
  const uint64_t len = image.BlockLen(index);
  image.cached_bytes -= len;
  cached_bytes_ -= len;
  image.signature.clear();  // a verdict holds for the bytes checked, all of them in the cache
  if (image.state() != CacheState::kVerified && image.state() != CacheState::kComplete) return {};
  image.SetState(CacheState::kPartial);
  return RecordLocked(image);
}

PendingRecord ImageTable::RecordLocked(Image& image) {
  if (image.retired) return {};  // its id has a newer version (or none): not its record
  PendingRecord r;
  r.id = image.id;
  r.no = image.no;
  r.text = EncodeImageRecord(image.RecordLocked());
  r.stamp = records_.Stamp(image.id);
  return r;
}

PendingRecord ImageTable::DeleteRecordLocked(Image& image) {
  PendingRecord r;
  r.id = image.id;
  r.stamp = records_.Stamp(image.id);
  return r;
}

void ImageTable::Commit(Image& image, const PendingRecord& record) {
  if (record.stamp == 0) return;
  if (Status s = records_.Write(record); !s.ok()) {
    LOG_WARNING("cache: cannot record image %s: %s", image.id.c_str(), s.ToString().c_str());
    return;
  }
  if (!record.text) return;
  MutexLock lock(&image.mu);
  if (image.no == record.no) image.meta_written = true;
}

void ImageTable::EnsureRecord(Image& image) {
  PendingRecord record;
  {
    MutexLock lock(&image.mu);
    if (image.meta_written) return;
    record = RecordLocked(image);
  }
  Commit(image, record);
}

std::string ImageTable::SignatureFp(const std::optional<SignatureSpec>& spec) const {
  return spec ? spec->Fingerprint() + "/" + policy_fp_ : "";
}

}  // namespace glancefs::cache
