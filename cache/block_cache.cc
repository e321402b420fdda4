#include "cache/block_cache.h"

#include <openssl/evp.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <sstream>
#include <thread>

#include "cache/certificate_check.h"
#include "cache/signature.h"
#include "fs/base/hash.h"
#include "fs/base/log.h"

namespace glancefs::cache {

// A digest (OpenSSL) of bytes given in order, as lowercase hex: how images are verified.
class Digest {
 public:
  // Not ok() for an algorithm OpenSSL does not know.
  explicit Digest(const std::string& algo)
      : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free), md_(EVP_get_digestbyname(algo.c_str())) {
    ok_ = md_ && ctx_ && EVP_DigestInit_ex(ctx_.get(), md_, nullptr) == 1;
  }
  bool ok() const { return ok_; }
  void Update(const char* data, size_t n) { EVP_DigestUpdate(ctx_.get(), data, n); }
  std::string Hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &len);
    return HexOf(digest, len);
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
  const EVP_MD* md_;
  bool ok_ = false;
};

// One pass's checks over an image's bytes, given in order: the record's hash (os_hash_value, or
// the MD5 checksum) and the signature (signature.h), whose certificate it fetches (and, with
// trusted certificates, validates: certificate_check.h) when built.
class ImageCheck {
 public:
  // `signature_fp`: the image's fingerprint of `spec` and the policy when the pass began.
  ImageCheck(const std::string& hash_algo, const std::optional<SignatureSpec>& spec,
             std::string signature_fp, const CacheOptions& options, int64_t now)
      : digest_(hash_algo.empty() ? "-" : hash_algo), signature_fp_(std::move(signature_fp)) {
    hashing_ = !hash_algo.empty() && digest_.ok();
    if (!spec) {
      verdict_ = kSignatureUnsigned;
      return;
    }
    if (!options.certificates) {
      verdict_ = SignatureUnverifiable("no certificate source (-o cert_dir=)");
      return;
    }
    auto certificate = options.certificates->Get(spec->certificate_uuid);
    if (!certificate.ok()) {
      // A uuid no store could hold is the record's fault; anything else may pass.
      verdict_ = certificate.status().code() == Status::Code::kInvalidArgument
                     ? SignatureInvalid(certificate.status().message())
                     : SignatureUnverifiable(certificate.status().message());
      return;
    }
    if (!options.trusted_certificates.empty() &&
        !Validate(*spec, *certificate, *options.certificates, options.trusted_certificates, now)) {
      return;
    }
    auto check = SignatureCheck::Start(*spec, *certificate);
    if (check.ok()) {
      signature_ = std::move(check).value();
    } else if (check.status().code() == Status::Code::kInvalidArgument) {
      verdict_ = SignatureInvalid(check.status().message());
    } else {
      verdict_ = SignatureUnverifiable(check.status().message());
    }
  }
  bool hashing() const { return hashing_; }
  const std::string& signature_fp() const { return signature_fp_; }
  // Whether the bytes are needed at all.
  bool any() const { return hashing_ || signature_ != nullptr; }
  void Update(const char* data, size_t n) {
    if (hashing_) digest_.Update(data, n);
    if (signature_) signature_->Update(data, n);
  }
  std::string HashHex() { return hashing_ ? digest_.Hex() : ""; }
  // After every byte: the signature's verdict.
  std::string SignatureVerdict() {
    if (signature_) {
      Status s = signature_->Finish();
      verdict_ = s.ok() ? kSignatureVerified : SignatureInvalid(s.message());
      signature_.reset();
    }
    return verdict_;
  }

 private:
  // The signing certificate against the trusted ones; false with the verdict set when it fails.
  bool Validate(const SignatureSpec& spec, const std::string& certificate,
                CertificateStore& store, const std::vector<std::string>& trusted_ids,
                int64_t now) {
    std::vector<std::pair<std::string, std::string>> trusted;
    for (const std::string& id : trusted_ids) {
      auto cert = store.Get(id);
      if (cert.ok()) {
        trusted.emplace_back(id, std::move(cert).value());
      } else if (cert.status().code() == Status::Code::kUnavailable) {
        verdict_ = SignatureUnverifiable("trusted certificate " + id + ": " + cert.status().message());
        return false;
      } else {
        LOG_WARNING("trusted certificate %s: %s; skipped", id.c_str(),
                    cert.status().message().c_str());
      }
    }
    Status valid = ValidateCertificate(certificate, trusted, now);
    if (!valid.ok()) {
      verdict_ = SignatureInvalid("certificate " + spec.certificate_uuid + ": " + valid.message());
    }
    return valid.ok();
  }

  Digest digest_;
  const std::string signature_fp_;
  bool hashing_ = false;
  std::unique_ptr<SignatureCheck> signature_;
  std::string verdict_;
};

namespace {

// What a signature verdict depends on besides the image: where certificates come from and which
// are trusted. A verdict reached under another policy is not reused.
std::string PolicyFingerprint(const CacheOptions& options) {
  std::string policy = options.certificates ? options.certificates->Describe() : "none";
  for (const std::string& id : options.trusted_certificates) policy += "\n" + id;
  return SignatureSpec{policy, "", "", ""}.Fingerprint().substr(0, 16);
}

constexpr double kLatencyBounds[] = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5};

// The check value stored with each block: XXH3 of its bytes seeded with its key, so bytes
// stored under another key (a misplaced write) fail as surely as damaged ones.
uint64_t BlockHash(BlockKey key, const char* data, size_t n) {
  return XXH3_64bits_withSeed(data, n, key.image_no * 0x9E3779B97F4A7C15ULL + key.index);
}

// Under a rate cap of bytes_per_s (0: none), waits until `bytes` counted from `start` fit the
// budget, or stop() turns true (asked at least every 100 ms).
void PaceUntil(std::chrono::steady_clock::time_point start, uint64_t bytes, uint64_t bytes_per_s,
               const std::function<bool()>& stop) {
  if (bytes_per_s == 0) return;
  auto until = start + std::chrono::microseconds(bytes * 1000000 / bytes_per_s);
  while (!stop() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_until(
        std::min(until, std::chrono::steady_clock::now() + std::chrono::milliseconds(100)));
  }
}

// Bytes of spare block buffers kept for reuse (block.h).
constexpr size_t kIdleBufferBytes = 16 << 20;
// Arrived blocks are stored in runs of about this many bytes (at least one block) while a
// request streams on, with at most kStoreRunsPending runs of one request waiting for the store
// threads.
constexpr uint64_t kStoreRunBytes = 2 << 20;
constexpr int kStoreRunsPending = 2;
constexpr int kStoreThreads = 2;
// A sequential reader's stored blocks are read in runs of up to this many bytes.
constexpr uint64_t kStoreLoadRunBytes = 1 << 20;
// How far out of order, either way, a sequential reader's requests may arrive (the kernel's
// read-ahead and several FUSE threads reorder them).
constexpr uint64_t kReorderBytes = 8 << 20;

// Meta records: "img/<id>" → key=value lines.
std::string Field(const std::string& text, const std::string& name) {
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, name.size() + 1, name + "=") == 0) return line.substr(name.size() + 1);
  }
  return "";
}

std::string OneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

uint64_t ToU64(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 10); }

std::vector<std::pair<std::string, uint64_t>> CounterValues(const CacheCounters& c) {
  return {{"hits_memory", c.hits_memory},         {"hits_disk", c.hits_disk},
          {"misses", c.misses},                   {"readahead_blocks", c.readahead_blocks},
          {"prefetch_blocks", c.prefetch_blocks}, {"fetch_requests", c.fetch_requests},
          {"fetch_errors", c.fetch_errors},       {"bytes_fetched", c.bytes_fetched},
          {"fetch_us", c.fetch_us},               {"corrupt_blocks", c.corrupt_blocks},
          {"store_errors", c.store_errors}};
}

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

struct BlockCache::Image {
  // Constant after creation.
  std::string id;
  std::string version;
  uint64_t size = 0;
  uint64_t nblocks = 0;
  std::string hash_algo;   // OpenSSL digest name ("sha512", "md5"); empty: cannot verify
  std::string hash_value;  // lowercase hex
  std::optional<SignatureSpec> signature_spec;  // GUARDED_BY(mu_) (set once); none: unsigned
  std::string signature_fp;                     // its Fingerprint(); "" when unsigned

  // GUARDED_BY(BlockCache::mu_)
  std::atomic<uint64_t> no{0};  // written under mu_, read anywhere
  std::vector<bool> present;    // stored in the store
  uint64_t present_blocks = 0;
  uint64_t cached_bytes = 0;
  CacheState state = CacheState::kPartial;
  std::string reason;
  std::string signature;  // the last verdict (signature.h's words); "": none yet
  bool pinned = false;
  bool meta_written = false;
  bool verifying = false;
  bool recheck = false;  // the pass that ran saw its signature change: run another
  int readahead_tasks = 0;
  bool whole_only = false;  // its source reads only whole (a store that refuses Range)
  bool streaming = false;   // StreamWhole runs
  std::atomic<bool> retired{false};  // replaced by a newer version: read around the cache
  std::atomic<bool> state_corrupt{false};  // state == kCorrupt, readable without mu_

  void SetState(CacheState s) {
    state = s;
    state_corrupt.store(s == CacheState::kCorrupt, std::memory_order_release);
  }

  std::atomic<int64_t> last_access{0};
  CacheCounters counters;

  uint64_t BlockLen(uint64_t index, uint32_t bs) const {
    return std::min<uint64_t>(bs, size - index * bs);
  }
};

// One block being fetched. Its readers wait on its own condition variable, so a block's
// arrival wakes only them. All fields GUARDED_BY(BlockCache::mu_).
struct BlockCache::Flight {
  bool done = false;
  Status status;
  BlockData data;
  int waiters = 0;
  std::condition_variable cv;

  void Complete(Status s, BlockData d) {
    done = true;
    status = std::move(s);
    data = std::move(d);
    if (waiters > 0) cv.notify_all();
  }
};

// The decorator handed to the file system: reads through the cache, reads ahead for
// sequential readers.
class BlockCache::Source final : public ByteSource {
 public:
  Source(BlockCache* cache, std::shared_ptr<Image> image, std::shared_ptr<ByteSource> upstream)
      : cache_(cache), image_(std::move(image)), upstream_(std::move(upstream)) {}

  uint64_t size() const override { return image_->size; }
  uint64_t allocated_bytes() const override { return upstream_->allocated_bytes(); }
  Result<Extent> MapExtent(uint64_t off) override { return upstream_->MapExtent(off); }

  Status ReadAt(uint64_t off, size_t n, char* dst) override {
    if (image_->retired) return upstream_->ReadAt(off, n, dst);
    return ForEachBlock(off, n, [&](const BlockData&, const char* data, size_t len) {
      std::memcpy(dst, data, len);
      dst += len;
    });
  }

  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override {
    if (image_->retired) return ByteSource::ReadPinned(off, n, out);
    size_t had = out->size();
    Status s = ForEachBlock(off, n, [&](const BlockData& block, const char* data, size_t len) {
      out->push_back({data, len, block});
    });
    if (!s.ok()) out->resize(had);
    return s;
  }

 private:
  // Calls piece(block, data, len) for the bytes [off, off + n) in order, block by block.
  template <typename Piece>
  Status ForEachBlock(uint64_t off, size_t n, const Piece& piece) {
    if (off > image_->size || n > image_->size - off) {
      return Status::OutOfRange("image " + image_->id + ": read past the end");
    }
    if (n == 0) return Status::Ok();
    const uint64_t bs = cache_->block_size_;
    const uint64_t first = off / bs;
    const uint64_t last = (off + n - 1) / bs;
    // A sequential reader's stored blocks are read from the store in runs (one request each),
    // a random reader's one by one: it would not use the rest.
    const bool sequential = Readahead(off, n);
    const uint64_t disk_last =
        std::min(image_->nblocks - 1, sequential ? last + kStoreLoadRunBytes / bs : last);
    image_->last_access.store(cache_->Now(), std::memory_order_relaxed);
    // Blocks of a request arrive in order: waiting for this read's last one first makes one
    // wake-up of the reader where waiting block by block at the head of a stream made one per
    // block.
    if (last > first) cache_->AwaitFlight(*image_, last);
    size_t done = 0;
    for (uint64_t index = first; index <= last; ++index) {
      GLANCEFS_ASSIGN_OR_RETURN(BlockData block,
                                cache_->GetBlock(image_, index, last, disk_last, upstream_));
      uint64_t from = off + done - index * bs;
      size_t len = static_cast<size_t>(std::min<uint64_t>(n - done, block->size() - from));
      piece(block, block->data() + from, len);
      done += len;
    }
    return Status::Ok();
  }

  // Window growth as mountpoint-s3's prefetcher: sequential reads double it, others reset it.
  // Returns whether the read continues a sequential stream.
  bool Readahead(uint64_t off, size_t n) {
    const CacheOptions& o = cache_->options_;
    const uint64_t bs = cache_->block_size_;
    std::lock_guard<std::mutex> lock(mu_);
    // The kernel's own read-ahead and several FUSE threads deliver a sequential reader's
    // requests out of order, a request or two either way: tolerate kReorderBytes on either
    // side. (Tolerating only a block or two ahead reset a streaming reader's window about 20
    // times per GiB: each reset split the stream into small requests.)
    bool sequential = off + kReorderBytes >= next_ && off <= next_ + kReorderBytes;
    if (!sequential) {
      window_ = o.readahead_initial;
      ahead_ = 0;
      next_ = off + n;
      return false;
    }
    if (o.readahead_max == 0) {
      next_ = std::max<uint64_t>(next_, off + n);
      return true;
    }
    window_ = next_ == 0 ? o.readahead_initial : std::min(window_ * 2, o.readahead_max);
    next_ = std::max<uint64_t>(next_, off + n);
    // Top up only when less than half the window is still ahead, and in whole requests: a
    // few large requests, not one small request per read.
    if (ahead_ > next_ && ahead_ - next_ >= window_ / 2) return true;
    uint64_t start = std::max(ahead_, next_) / bs * bs;
    if (start >= image_->size) return true;
    // Requests grow with the window: small while a reader may stop soon (a header read), up
    // to request_bytes once it streams, where Glance's per-request cost vanishes.
    uint64_t request = std::clamp<uint64_t>(window_ / bs * bs, bs, o.request_bytes);
    uint64_t want = next_ + window_ - start;
    uint64_t target =
        std::min(image_->size, start + (want + request - 1) / request * request);
    uint64_t end_block = cache_->ScheduleReadahead(image_, upstream_, start / bs,
                                                   (target - 1) / bs, request / bs);
    ahead_ = std::max(ahead_, std::min(image_->size, end_block * bs));
    return true;
  }

  BlockCache* const cache_;
  const std::shared_ptr<Image> image_;
  const std::shared_ptr<ByteSource> upstream_;

  std::mutex mu_;
  uint64_t next_ = 0;    // GUARDED_BY(mu_): where a sequential reader reads next
  uint64_t window_ = 0;  // GUARDED_BY(mu_)
  uint64_t ahead_ = 0;   // GUARDED_BY(mu_): read-ahead is scheduled up to here
};

BlockCache::BlockCache(std::unique_ptr<BlockStore> store, CacheOptions options,
                       uint32_t block_size)
    : store_(std::move(store)),
      options_(std::move(options)),
      block_size_(block_size),
      max_bytes_(options_.max_bytes),
      min_free_bytes_(options_.min_free_bytes),
      policy_fp_(PolicyFingerprint(options_)),
      memory_(options_.memory_bytes),
      buffers_(block_size, std::max<size_t>(1, kIdleBufferBytes / block_size)),
      latency_counts_(std::size(kLatencyBounds) + 1, 0) {}

BlockCache::~BlockCache() {
  closing_ = true;  // a fetch under way (a whole image's stream) stops at its next block
  if (pool_) pool_->Shutdown();  // joins the fetch threads; no task runs after this
  if (store_pool_) store_pool_->Shutdown();  // after: fetches wait for their stores
  {
    // Read-ahead claimed by tasks the pool dropped: fail them, so no waiter is left behind.
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [key, flight] : flights_) {
      if (!flight->done) flight->Complete(Status::Unavailable("the cache is shutting down"), {});
    }
    flights_.clear();
  }
  flight_cv_.notify_all();
  if (Status s = store_->Sync(); !s.ok()) LOG_WARNING("cache: final flush: %s", s.ToString().c_str());
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
    block_size = static_cast<uint32_t>(ToU64(*stored));
    if (block_size != options.block_size) {
      LOG_WARNING("cache %s keeps its block size of %u bytes", store->Describe().c_str(),
                  block_size);
    }
  } else {
    GLANCEFS_RETURN_IF_ERROR(store->PutMeta("cfg/block_size", std::to_string(block_size)));
  }
  store->SetBlockSize(block_size);
  std::unique_ptr<BlockCache> cache(new BlockCache(std::move(store), options, block_size));
  GLANCEFS_RETURN_IF_ERROR(cache->Load());
  cache->store_pool_ = std::make_unique<WorkPool>(kStoreThreads, "gfs-store");
  cache->pool_ = std::make_unique<WorkPool>(std::max(1, options.fetch_threads), "gfs-fetch");
  return cache;
}

int64_t BlockCache::Now() const { return options_.now ? options_.now() : ::time(nullptr); }

Status BlockCache::Load() {
  std::lock_guard<std::mutex> lock(mu_);
  std::unordered_map<uint64_t, Image*> by_no;
  Status parse = Status::Ok();
  GLANCEFS_RETURN_IF_ERROR(store_->ScanMeta("img/", [&](std::string_view key, std::string_view v) {
    std::string text(v);
    auto image = std::make_shared<Image>();
    image->id = std::string(key.substr(4));
    image->version = Field(text, "version");
    image->size = ToU64(Field(text, "size"));
    image->no = ToU64(Field(text, "no"));
    image->hash_algo = Field(text, "hash_algo");
    image->hash_value = Field(text, "hash_value");
    image->reason = Field(text, "reason");
    image->signature_fp = Field(text, "signature_fp");
    image->signature = Field(text, "signature");
    image->pinned = Field(text, "pinned") == "1";
    image->last_access = static_cast<int64_t>(ToU64(Field(text, "last_access")));
    std::string state = Field(text, "state");
    image->SetState(state == "verified"   ? CacheState::kVerified
                   : state == "complete" ? CacheState::kComplete
                   : state == "corrupt"  ? CacheState::kCorrupt
                                         : CacheState::kPartial);
    if (image->no == 0 || by_no.count(image->no)) return;  // damaged record: ignore it
    image->nblocks = (image->size + block_size_ - 1) / block_size_;
    image->present.assign(image->nblocks, false);
    image->meta_written = true;
    by_no[image->no] = image.get();
    next_no_ = std::max(next_no_, image->no.load() + 1);
    images_[image->id] = std::move(image);
  }));
  std::vector<uint64_t> orphans;
  GLANCEFS_RETURN_IF_ERROR(store_->ScanBlocks([&](BlockKey key) {
    next_no_ = std::max(next_no_, key.image_no + 1);
    auto it = by_no.find(key.image_no);
    if (it == by_no.end() || key.index >= it->second->nblocks) {
      if (orphans.empty() || orphans.back() != key.image_no) orphans.push_back(key.image_no);
      return;
    }
    Image& image = *it->second;
    if (image.present[key.index]) return;
    image.present[key.index] = true;
    ++image.present_blocks;
    image.cached_bytes += image.BlockLen(key.index, block_size_);
  }));
  for (uint64_t no : orphans) {
    // Blocks whose record is gone (an eviction or a crash between record and blocks).
    if (Status s = store_->DeleteImage(no); !s.ok()) return s;
  }
  for (auto& [id, image] : images_) {
    cached_bytes_ += image->cached_bytes;
    if (image->present_blocks < image->nblocks && image->state != CacheState::kCorrupt &&
        image->state != CacheState::kPartial) {
      LOG_WARNING("cache: image %s lost blocks since it was verified; fetching them again",
                  id.c_str());
      image->SetState(CacheState::kPartial);
      image->signature.clear();
      PersistLocked(*image);
    }
  }
  LOG_INFO("cache %s: %zu images, %llu bytes", store_->Describe().c_str(), images_.size(),
           static_cast<unsigned long long>(cached_bytes_));
  return Status::Ok();
}

void BlockCache::PersistLocked(Image& image) {
  std::string text = "version=" + OneLine(image.version) + "\nsize=" + std::to_string(image.size) +
                     "\nno=" + std::to_string(image.no.load()) + "\nstate=" +
                     CacheStateName(image.state) + "\nhash_algo=" + image.hash_algo +
                     "\nhash_value=" + image.hash_value + "\nlast_access=" +
                     std::to_string(image.last_access.load()) + "\npinned=" +
                     (image.pinned ? "1" : "0") + "\nreason=" + OneLine(image.reason) +
                     "\nsignature_fp=" + image.signature_fp +
                     "\nsignature=" + OneLine(image.signature) + "\n";
  if (Status s = store_->PutMeta("img/" + image.id, text); !s.ok()) {
    LOG_WARNING("cache: cannot record image %s: %s", image.id.c_str(), s.ToString().c_str());
    return;
  }
  image.meta_written = true;
}

void BlockCache::EnsureMetaLocked(Image& image) {
  if (!image.meta_written) PersistLocked(image);
}

std::shared_ptr<BlockCache::Image> BlockCache::ImageFor(const ImageRecord& record) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& slot = images_[record.id];
  auto spec = SignatureSpecOf(record);
  const std::string fp = SignatureFp(spec);
  if (slot && slot->version == record.data_version && slot->size == *record.size) {
    if (slot->signature_fp != fp) {
      NewSignatureLocked(slot, spec);
    } else if (!slot->signature_spec) {
      slot->signature_spec = spec;  // a record loaded from the store
    }
    return slot;
  }
  if (slot) {
    LOG_INFO("cache: image %s has new data; dropping the cached version", record.id.c_str());
    EvictLocked(*slot);
    slot->retired = true;
    store_->DeleteMeta("img/" + record.id);
  }
  auto image = std::make_shared<Image>();
  image->id = record.id;
  image->version = record.data_version;
  image->size = *record.size;
  image->nblocks = (image->size + block_size_ - 1) / block_size_;
  image->present.assign(image->nblocks, false);
  image->no = next_no_++;
  image->last_access = Now();
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
  image->signature_spec = spec;
  image->signature_fp = fp;
  std::transform(image->hash_value.begin(), image->hash_value.end(), image->hash_value.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (image->nblocks == 0) image->SetState(CacheState::kComplete);
  slot = image;
  return image;
}

std::shared_ptr<ByteSource> BlockCache::Wrap(const ImageRecord& record,
                                             std::shared_ptr<ByteSource> upstream) {
  return std::make_shared<Source>(this, ImageFor(record), std::move(upstream));
}

Result<BlockData> BlockCache::LoadBlock(Image& image, BlockKey key) {
  const size_t len = image.BlockLen(key.index, block_size_);
  std::shared_ptr<Block> block = buffers_.Allocate(len);
  if (!block) return Status::IOError("out of memory for a cache block");
  uint64_t check = 0;
  GLANCEFS_RETURN_IF_ERROR(store_->GetBlock(key, block->mutable_data(), len, &check));
  if (check != BlockHash(key, block->data(), len)) return Status::Corruption("checksum mismatch");
  return BlockData(std::move(block));
}

void BlockCache::AwaitFlight(const Image& image, uint64_t index) {
  const uint64_t no = image.no.load();
  // A block in the memory tier has arrived: no need for mu_ on a read served from memory.
  if (memory_.Lookup({no, index})) return;
  std::unique_lock<std::mutex> lock(mu_);
  auto it = flights_.find({no, index});
  if (it == flights_.end() || it->second->done) return;
  std::shared_ptr<Flight> flight = it->second;
  ++flight->waiters;
  flight->cv.wait(lock, [&] { return flight->done; });
  --flight->waiters;
}

Result<BlockData> BlockCache::LoadRun(Image& image, BlockKey key, uint64_t count) {
  std::vector<std::shared_ptr<Block>> blocks(count);
  std::vector<IoSlice> dsts(count);
  for (uint64_t i = 0; i < count; ++i) {
    blocks[i] = buffers_.Allocate(image.BlockLen(key.index + i, block_size_));
    if (!blocks[i]) return LoadBlock(image, key);
    dsts[i] = {blocks[i]->mutable_data(), blocks[i]->size()};
  }
  std::vector<uint64_t> checks;
  if (!store_->GetBlocks(key, dsts, &checks).ok()) return LoadBlock(image, key);  // one by one
  for (uint64_t i = 0; i < count; ++i) {
    BlockKey k{key.image_no, key.index + i};
    if (checks[i] != BlockHash(k, blocks[i]->data(), blocks[i]->size())) {
      // Damaged: the block is judged (dropped, counted, fetched again) when it is read alone.
      if (i == 0) return LoadBlock(image, key);
      break;
    }
    // The ones after the first go to the memory tier, where the reader's next lookups find
    // them (and count them as memory hits).
    if (i > 0) memory_.Insert(k, BlockData(std::move(blocks[i])));
  }
  return BlockData(std::move(blocks[0]));
}

Result<BlockData> BlockCache::GetBlock(const std::shared_ptr<Image>& image, uint64_t index,
                                       uint64_t want_last, uint64_t disk_last,
                                       const std::shared_ptr<ByteSource>& upstream) {
  if (image->state_corrupt.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(mu_);
    return Status::Corruption("image " + image->id + " failed verification: " + image->reason);
  }
  BlockKey key{image->no.load(), index};
  if (BlockData b = memory_.Lookup(key)) {
    image->counters.hits_memory.fetch_add(1, std::memory_order_relaxed);
    totals_.hits_memory.fetch_add(1, std::memory_order_relaxed);
    return b;
  }
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    if (image->state == CacheState::kCorrupt) {
      return Status::Corruption("image " + image->id + " failed verification: " + image->reason);
    }
    key.image_no = image->no;  // an eviction renumbers the image
    if (auto it = flights_.find({key.image_no, index}); it != flights_.end()) {
      std::shared_ptr<Flight> flight = it->second;
      ++flight->waiters;
      flight->cv.wait(lock, [&] { return flight->done; });
      --flight->waiters;
      if (!flight->status.ok()) return flight->status;
      image->counters.hits_memory.fetch_add(1, std::memory_order_relaxed);
      totals_.hits_memory.fetch_add(1, std::memory_order_relaxed);
      return flight->data;
    }
    if (image->present[index]) {
      // With it, the stored blocks after it up to disk_last that are neither in memory nor in
      // flight: one request to the store.
      uint64_t last = index;
      while (last < disk_last && last + 1 < image->nblocks && image->present[last + 1] &&
             !flights_.count({key.image_no, last + 1}) &&
             !memory_.Lookup({key.image_no, last + 1})) {
        ++last;
      }
      lock.unlock();
      auto block = last > index ? LoadRun(*image, key, last - index + 1) : LoadBlock(*image, key);
      if (block.ok()) {
        memory_.Insert(key, *block);
        image->counters.hits_disk.fetch_add(1, std::memory_order_relaxed);
        totals_.hits_disk.fetch_add(1, std::memory_order_relaxed);
        return block;
      }
      lock.lock();
      if (image->no == key.image_no && image->present[index]) {
        if (!block.status().IsNotFound()) {
          image->counters.corrupt_blocks.fetch_add(1, std::memory_order_relaxed);
          totals_.corrupt_blocks.fetch_add(1, std::memory_order_relaxed);
          LOG_WARNING("cache: image %s block %llu is damaged (%s): fetching it again",
                      image->id.c_str(), static_cast<unsigned long long>(index),
                      block.status().message().c_str());
        }
        DropBlockLocked(*image, index);
      }
      continue;
    }
    if (image->whole_only) {
      if (image->retired) {  // replaced since the read began: read around the cache
        lock.unlock();
        std::shared_ptr<Block> block = buffers_.Allocate(image->BlockLen(index, block_size_));
        if (!block) return Status::IOError("out of memory for a cache block");
        GLANCEFS_RETURN_IF_ERROR(
            upstream->ReadAt(index * block_size_, block->size(), block->mutable_data()));
        return BlockData(std::move(block));
      }
      // Only a stream of the whole image brings it: wait for it to pass.
      ClaimLocked(*image, index, index);
      StartStreamLocked(image, upstream, Why::kReadahead);
      continue;
    }
    uint64_t last = std::min(want_last, index + options_.request_bytes / block_size_ - 1);
    auto runs = ClaimLocked(*image, index, last);
    lock.unlock();
    // The first run starts at `index` (neither stored nor in flight); the others are the rest
    // of this read, claimed so they must be fetched.
    Status status;
    BlockData wanted;
    for (const auto& [first, count] : runs) {
      Status s = FetchClaimed(image, key.image_no, first, count, upstream, Why::kDemand,
                              first == index ? &wanted : nullptr);
      if (first == index) status = s;
    }
    if (status.IsNotSupported()) {  // whole-only: the flights wait for the stream
      lock.lock();
      continue;
    }
    if (!status.ok()) return status;
    return wanted;
  }
}

std::vector<std::pair<uint64_t, uint64_t>> BlockCache::ClaimLocked(Image& image, uint64_t first,
                                                                   uint64_t last) {
  std::vector<std::pair<uint64_t, uint64_t>> runs;
  if (image.state == CacheState::kCorrupt) return runs;  // never fetched again until evicted
  const uint64_t per_request = std::max<uint64_t>(1, options_.request_bytes / block_size_);
  const uint64_t no = image.no;
  for (uint64_t i = first; i <= last && i < image.nblocks; ++i) {
    if (image.present[i] || flights_.count({no, i})) continue;
    flights_[{no, i}] = std::make_shared<Flight>();
    if (!runs.empty() && runs.back().first + runs.back().second == i &&
        runs.back().second < per_request) {
      ++runs.back().second;
    } else {
      runs.emplace_back(i, 1);
    }
  }
  return runs;
}

Status BlockCache::FetchClaimed(const std::shared_ptr<Image>& image, uint64_t no, uint64_t first,
                                uint64_t count, const std::shared_ptr<ByteSource>& upstream,
                                Why why, BlockData* first_block, const EachBlock& each) {
  const uint64_t bs = block_size_;
  const uint64_t off = first * bs;
  const uint64_t len = std::min(image->size, (first + count) * bs) - off;
  {
    std::lock_guard<std::mutex> lock(mu_);
    EnsureMetaLocked(*image);
  }
  // Buffers are taken as the bytes arrive and let go once stored, so a large request holds
  // only the few blocks between the head of the stream and the store.
  std::vector<BlockData> blocks(count);
  bool ended = false;  // `each` said no more
  auto slice_for = [&](size_t k) -> IoSlice {
    if (ended || closing_.load(std::memory_order_relaxed)) return {nullptr, 0};  // ends it
    std::shared_ptr<Block> block = buffers_.Allocate(image->BlockLen(first + k, bs));
    if (!block) return {nullptr, 0};
    IoSlice slice{block->mutable_data(), block->size()};
    blocks[k] = std::move(block);
    return slice;
  };
  Status status;
  // Blocks [stored, arrived) have arrived but are not stored yet. They are stored in runs on
  // the store threads while the rest of the request streams in, so the disk write of one run
  // overlaps the arrival of the next; at most kStoreRunsPending runs wait per request, which
  // holds the stream back when the disk is the slower.
  uint64_t arrived = 0, stored = 0;
  std::atomic<bool> added{false};
  auto store_blocks = [&](uint64_t a, uint64_t b) {
    Status put = Status::Unavailable("evicted");
    if (image->no.load() == no) {
      std::vector<BlockPut> run;
      run.reserve(b - a);
      for (uint64_t k = a; k < b; ++k) {
        const Block& block = *blocks[k];
        run.push_back({std::string_view(block.data(), block.size()),
                       BlockHash({no, first + k}, block.data(), block.size())});
      }
      put = store_->PutBlocks({no, first + a}, run);
      if (!put.ok()) {
        image->counters.store_errors.fetch_add(b - a, std::memory_order_relaxed);
        uint64_t before = totals_.store_errors.fetch_add(b - a, std::memory_order_relaxed);
        if (before == 0 || before / 1000 != (before + b - a) / 1000) {  // now and then
          LOG_ERROR("cache: cannot store blocks (%s); serving them uncached",
                    put.ToString().c_str());
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (uint64_t k = a; k < b; ++k) {
        auto it = flights_.find({no, first + k});
        if (it != flights_.end()) {
          // One made after its block arrived (a reader of a whole-only image) is served now.
          if (!it->second->done) it->second->Complete(Status::Ok(), blocks[k]);
          flights_.erase(it);
        }
        if (put.ok() && image->no == no && !image->present[first + k]) {
          image->present[first + k] = true;
          ++image->present_blocks;
          uint64_t blen = image->BlockLen(first + k, bs);
          image->cached_bytes += blen;
          cached_bytes_ += blen;
          added = true;
        }
      }
    }
    flight_cv_.notify_all();
    for (uint64_t k = a; k < b; ++k) {
      if (k > 0 || !first_block) blocks[k].reset();  // readers have theirs
    }
  };
  std::mutex store_mu;
  std::condition_variable store_cv;
  int pending = 0;  // GUARDED_BY(store_mu): runs queued or being stored
  auto store_run = [&] {
    if (stored == arrived) return;
    const uint64_t a = stored, b = arrived;
    stored = arrived;
    {
      std::unique_lock<std::mutex> lock(store_mu);
      store_cv.wait(lock, [&] { return pending < kStoreRunsPending; });
      ++pending;
    }
    auto task = [&, a, b] {
      store_blocks(a, b);
      std::lock_guard<std::mutex> lock(store_mu);
      --pending;
      store_cv.notify_all();
    };
    if (!store_pool_->Submit(task)) task();  // shutting down: store it here
  };
  // Readers first: each block's flight completes as soon as its bytes are in, so a reader
  // follows the head of the stream instead of waiting for the whole request. A flight stays in
  // the map (done) until its block is stored, so a reader arriving meanwhile takes its data
  // instead of fetching it again.
  auto on_block = [&](size_t k) {
    arrived = k + 1;  // slices complete in order
    if (each && !each(*blocks[k])) ended = true;
    if (why != Why::kPrefetch) memory_.Insert({no, first + k}, blocks[k]);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (auto it = flights_.find({no, first + k}); it != flights_.end() && !it->second->done) {
        it->second->Complete(Status::Ok(), blocks[k]);
      }
    }
    if ((arrived - stored) * bs >= kStoreRunBytes) store_run();
  };
  auto t0 = std::chrono::steady_clock::now();
  status = upstream->ReadScattered(off, len, slice_for, on_block);
  uint64_t us = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::steady_clock::now() - t0)
                    .count();
  store_run();  // what arrived last (or before a failure)
  {
    std::unique_lock<std::mutex> lock(store_mu);
    store_cv.wait(lock, [&] { return pending == 0; });
  }
  if (status.IsNotSupported() && arrived == 0) {
    // The source reads only whole: a stream of the image completes these flights.
    std::lock_guard<std::mutex> lock(mu_);
    image->whole_only = true;
    StartStreamLocked(image, upstream, why == Why::kPrefetch ? why : Why::kReadahead);
    return status;
  }
  CacheCounters* counters[] = {&image->counters, &totals_};
  for (CacheCounters* c : counters) {
    c->fetch_requests.fetch_add(1, std::memory_order_relaxed);
    c->fetch_us.fetch_add(us, std::memory_order_relaxed);
    if (!status.ok()) {
      c->fetch_errors.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    c->bytes_fetched.fetch_add(len, std::memory_order_relaxed);
    auto& kind = why == Why::kDemand      ? c->misses
                 : why == Why::kReadahead ? c->readahead_blocks
                                          : c->prefetch_blocks;
    kind.fetch_add(count, std::memory_order_relaxed);
  }
  RecordLatency(us);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!status.ok()) {
      LOG_DEBUG("cache: fetch of image %s blocks %llu+%llu failed: %s", image->id.c_str(),
                static_cast<unsigned long long>(first), static_cast<unsigned long long>(count),
                status.ToString().c_str());
      // The blocks that never arrived fail their waiters; those that did stay good.
      for (uint64_t k = arrived; k < count; ++k) {
        auto it = flights_.find({no, first + k});
        if (it == flights_.end()) continue;
        it->second->Complete(status, {});
        flights_.erase(it);
      }
    }
    if (why != Why::kPrefetch) MaybeScheduleVerify(image);
  }
  flight_cv_.notify_all();
  if (added) EnforceLimits(image.get());
  if (first_block && status.ok()) *first_block = std::move(blocks.front());
  return status;
}

uint64_t BlockCache::ScheduleReadahead(const std::shared_ptr<Image>& image,
                                       const std::shared_ptr<ByteSource>& upstream,
                                       uint64_t first, uint64_t last, uint64_t per_request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (image->retired || image->whole_only) return last + 1;  // a stream reads ahead of those
  uint64_t next = first;
  while (next <= last && next < image->nblocks) {
    if (image->readahead_tasks >= options_.readahead_requests) break;
    uint64_t end = std::min(last, next + per_request - 1);
    // Claimed here, not in the task: a reader arriving before the task runs waits for these
    // flights instead of fetching the same blocks in small demand requests.
    auto runs = ClaimLocked(*image, next, end);
    next = end + 1;
    if (runs.empty()) continue;
    ++image->readahead_tasks;
    pool_->Submit([this, image, upstream, no = image->no.load(), runs = std::move(runs)] {
      for (const auto& [a, count] : runs) {
        FetchClaimed(image, no, a, count, upstream, Why::kReadahead, nullptr);
      }
      std::lock_guard<std::mutex> lock(mu_);
      --image->readahead_tasks;
    });
  }
  return next;
}

bool BlockCache::WaitingLocked(uint64_t no) const {
  for (auto it = flights_.lower_bound({no, 0}); it != flights_.end() && it->first.first == no;
       ++it) {
    if (!it->second->done) return true;
  }
  return false;
}

void BlockCache::StartStreamLocked(const std::shared_ptr<Image>& image,
                                   const std::shared_ptr<ByteSource>& upstream, Why why) {
  if (image->streaming || image->retired) return;
  if (image->present_blocks == image->nblocks && !WaitingLocked(image->no)) return;  // all here
  image->streaming = true;
  LOG_INFO("cache: image %s can only be read whole; streaming all %llu bytes into the cache",
           image->id.c_str(), static_cast<unsigned long long>(image->size));
  // Refused only while the cache closes, whose destructor fails every flight left.
  if (!pool_->Submit([this, image, upstream, why] { StreamWhole(image, upstream, why); })) {
    image->streaming = false;
  }
}

void BlockCache::StreamWhole(const std::shared_ptr<Image>& image,
                             const std::shared_ptr<ByteSource>& upstream, Why why) {
  for (;;) {
    Status status = FetchClaimed(image, image->no.load(), 0, image->nblocks, upstream, why, nullptr);
    if (!status.ok()) {
      LOG_WARNING("cache: reading image %s whole: %s", image->id.c_str(),
                  status.ToString().c_str());
    }
    std::lock_guard<std::mutex> lock(mu_);
    // A failed pass has failed the flights it had not reached. Flights still waiting were made
    // for blocks the pass had gone by (their store failed), after it failed, or for the image
    // renumbered (evicted) meanwhile: another pass serves them.
    const uint64_t no = image->no.load();
    if (WaitingLocked(no) && !closing_ && !image->retired) continue;
    if (status.ok()) status = Status::Unavailable("image " + image->id + " changed as it was read");
    for (auto it = flights_.lower_bound({no, 0}); it != flights_.end() && it->first.first == no;) {
      if (it->second->done) {
        ++it;
        continue;
      }
      it->second->Complete(status, {});
      it = flights_.erase(it);
    }
    image->streaming = false;
    break;
  }
  flight_cv_.notify_all();
}

void BlockCache::DropBlockLocked(Image& image, uint64_t index) {
  if (!image.present[index]) return;
  image.present[index] = false;
  --image.present_blocks;
  uint64_t blen = image.BlockLen(index, block_size_);
  image.cached_bytes -= blen;
  cached_bytes_ -= blen;
  image.signature.clear();  // a verdict holds for the bytes checked, all of them in the cache
  if (image.state == CacheState::kVerified || image.state == CacheState::kComplete) {
    image.SetState(CacheState::kPartial);
    PersistLocked(image);
  }
}

void BlockCache::EvictLocked(Image& image) {
  if (Status s = store_->DeleteImage(image.no); !s.ok()) {
    LOG_WARNING("cache: evicting image %s: %s", image.id.c_str(), s.ToString().c_str());
  }
  if (image.cached_bytes > 0) {
    evictions_.fetch_add(1, std::memory_order_relaxed);
    evicted_bytes_.fetch_add(image.cached_bytes, std::memory_order_relaxed);
  }
  cached_bytes_ -= image.cached_bytes;
  image.cached_bytes = 0;
  image.signature.clear();  // the next bytes fetched are checked again
  image.present_blocks = 0;
  image.present.assign(image.nblocks, false);
  image.no = next_no_++;  // in-flight fetches of the old number land nowhere
  if (image.state != CacheState::kCorrupt) {
    image.SetState(image.nblocks == 0 ? CacheState::kComplete : CacheState::kPartial);
  }
  image.meta_written = false;
}

void BlockCache::SetLimits(uint64_t max_bytes, uint64_t min_free_bytes) {
  max_bytes_ = max_bytes;
  min_free_bytes_ = min_free_bytes;
  EnforceLimits(nullptr);
}

void BlockCache::EnforceLimits(const Image* fetching) {
  const uint64_t max_bytes = max_bytes_.load();
  const uint64_t min_free_bytes = min_free_bytes_.load();
  bool over_size = max_bytes > 0;
  uint64_t need_free = 0;
  if (min_free_bytes > 0 && options_.free_bytes) {
    uint64_t free = options_.free_bytes();
    if (free < min_free_bytes) need_free = min_free_bytes - free;
  }
  std::lock_guard<std::mutex> lock(mu_);
  over_size = over_size && cached_bytes_ > max_bytes;
  if (!over_size && need_free == 0) return;
  std::vector<Image*> victims;
  for (auto& [id, image] : images_) {
    if (image.get() != fetching && image->cached_bytes > 0) victims.push_back(image.get());
  }
  std::sort(victims.begin(), victims.end(), [](const Image* a, const Image* b) {
    if (a->pinned != b->pinned) return !a->pinned;
    return a->last_access < b->last_access;
  });
  uint64_t freed = 0;
  for (Image* v : victims) {
    bool still_over = (max_bytes > 0 && cached_bytes_ > max_bytes) ||
                      freed < need_free;
    if (!still_over) break;
    LOG_INFO("cache: evicting image %s (%llu bytes, last read %lld)", v->id.c_str(),
             static_cast<unsigned long long>(v->cached_bytes),
             static_cast<long long>(v->last_access.load()));
    freed += v->cached_bytes;
    EvictLocked(*v);
    store_->DeleteMeta("img/" + v->id);
  }
}

void BlockCache::MaybeScheduleVerify(const std::shared_ptr<Image>& image) {
  if (image->present_blocks != image->nblocks || image->nblocks == 0 || image->verifying ||
      image->state != CacheState::kPartial) {
    return;
  }
  image->verifying = true;
  pool_->Submit([this, image] { Verify(image); });
}

Status BlockCache::Verify(const std::shared_ptr<Image>& image) {
  struct Done {
    BlockCache* cache;
    const std::shared_ptr<Image>& image;
    ~Done() {
      {
        std::lock_guard<std::mutex> lock(cache->mu_);
        image->verifying = false;
        if (image->recheck) {  // its signature changed meanwhile: again
          image->recheck = false;
          cache->MaybeScheduleVerify(image);
        }
      }
      cache->flight_cv_.notify_all();
    }
  } done{this, image};
  // Durable first: a verified mark must never outlive its blocks.
  GLANCEFS_RETURN_IF_ERROR(store_->Sync());
  uint64_t no = image->no;
  auto [spec, fp] = SignatureSpecOfImage(*image);
  ImageCheck check(image->hash_algo, spec, fp, options_, Now());
  if (!image->hash_algo.empty() && !check.hashing()) {
    LOG_WARNING("cache: image %s: unknown hash algorithm '%s'; not verified", image->id.c_str(),
                image->hash_algo.c_str());
  }
  if (check.any()) GLANCEFS_RETURN_IF_ERROR(DigestStored(*image, no, check));
  return Judge(*image, no, check);
}

Status BlockCache::DigestStored(Image& image, uint64_t no, ImageCheck& check) {
  // Read in runs (one store request each, as a sequential reader's); a run that fails is
  // read again block by block to find the block at fault.
  const uint64_t per_run = std::max<uint64_t>(1, kStoreLoadRunBytes / block_size_);
  std::vector<std::shared_ptr<Block>> run;
  std::vector<IoSlice> dsts;
  std::vector<uint64_t> checks;
  for (uint64_t i = 0; i < image.nblocks; i += per_run) {
    const uint64_t count = std::min(per_run, image.nblocks - i);
    run.resize(count);
    dsts.resize(count);
    bool whole = true;
    for (uint64_t k = 0; k < count && whole; ++k) {
      const size_t len = image.BlockLen(i + k, block_size_);
      if (!run[k] || run[k]->size() != len) run[k] = buffers_.Allocate(len);
      whole = run[k] != nullptr;
      if (whole) dsts[k] = {run[k]->mutable_data(), len};
    }
    whole = whole && store_->GetBlocks({no, i}, dsts, &checks).ok();
    for (uint64_t k = 0; k < count && whole; ++k) {
      whole = checks[k] == BlockHash({no, i + k}, run[k]->data(), run[k]->size());
    }
    for (uint64_t k = 0; k < count; ++k) {
      if (whole) {
        check.Update(run[k]->data(), run[k]->size());
        continue;
      }
      auto block = LoadBlock(image, {no, i + k});
      if (!block.ok()) {
        // Lost or damaged since it was stored: fetch it again; verify once it is back.
        std::lock_guard<std::mutex> lock(mu_);
        if (image.no == no) DropBlockLocked(image, i + k);
        return Status::Unavailable("image " + image.id + ": block " + std::to_string(i + k) +
                                   " must be fetched again before verification");
      }
      check.Update((*block)->data(), (*block)->size());
    }
  }
  return Status::Ok();
}

void BlockCache::NewSignatureLocked(const std::shared_ptr<Image>& image,
                                    const std::optional<SignatureSpec>& spec) {
  // Glance lets the properties change after upload and never checks them again: the bytes
  // stay, the verdict goes, and a complete image is checked again.
  LOG_INFO("cache: image %s has new signature properties; checking them", image->id.c_str());
  image->signature_spec = spec;
  image->signature_fp = SignatureFp(spec);
  image->signature.clear();
  if (image->state == CacheState::kVerified || image->state == CacheState::kComplete) {
    image->SetState(CacheState::kPartial);
  }
  PersistLocked(*image);
  MaybeScheduleVerify(image);
}

std::pair<std::optional<SignatureSpec>, std::string> BlockCache::SignatureSpecOfImage(
    const Image& image) {
  std::lock_guard<std::mutex> lock(mu_);  // ImageFor and Observe change them
  return {image.signature_spec, image.signature_fp};
}

std::string BlockCache::SignatureFp(const std::optional<SignatureSpec>& spec) const {
  return spec ? spec->Fingerprint() + "/" + policy_fp_ : "";
}

void BlockCache::JudgeSignatureLocked(Image& image, const std::string& verdict) {
  image.signature = verdict;
  if (verdict == kSignatureUnsigned) return;
  if (verdict == kSignatureVerified) {
    signatures_verified_.fetch_add(1, std::memory_order_relaxed);
    LOG_INFO("cache: image %s: signature verified", image.id.c_str());
  } else if (verdict.rfind("invalid", 0) == 0) {
    signatures_invalid_.fetch_add(1, std::memory_order_relaxed);
    LOG_ERROR("cache: image %s: signature %s", image.id.c_str(), verdict.c_str());
  } else {
    signatures_unverifiable_.fetch_add(1, std::memory_order_relaxed);
    LOG_WARNING("cache: image %s: signature %s", image.id.c_str(), verdict.c_str());
  }
}

Status BlockCache::Judge(Image& image, uint64_t no, ImageCheck& check) {
  const std::string got = check.HashHex();
  const std::string signature = check.SignatureVerdict();
  std::lock_guard<std::mutex> lock(mu_);
  if (image.no != no || image.present_blocks != image.nblocks) {
    return Status::Unavailable("image " + image.id + " changed while it was verified");
  }
  if (image.signature_fp != check.signature_fp()) {
    // New signature properties (or policy) arrived during the pass: its verdict is about the
    // old ones. Nothing is recorded; the image stays partial and is checked again.
    image.recheck = true;
    return Status::Unavailable("image " + image.id + ": its signature changed while it was checked");
  }
  if (!check.hashing()) {
    JudgeSignatureLocked(image, signature);
    image.SetState(CacheState::kComplete);
    PersistLocked(image);
    return Status::Ok();
  }
  if (got == image.hash_value) {
    JudgeSignatureLocked(image, signature);
    image.SetState(CacheState::kVerified);
    PersistLocked(image);
    verified_.fetch_add(1, std::memory_order_relaxed);
    LOG_INFO("cache: image %s complete and verified (%s)", image.id.c_str(),
             image.hash_algo.c_str());
    return Status::Ok();
  }
  verify_failures_.fetch_add(1, std::memory_order_relaxed);
  std::string reason = image.hash_algo + " of the data is " + got + ", the record says " +
                       image.hash_value;
  LOG_ERROR("cache: image %s failed verification: %s; its data is dropped and not served",
            image.id.c_str(), reason.c_str());
  EvictLocked(image);
  image.SetState(CacheState::kCorrupt);
  image.reason = reason;
  // The bytes that failed the hash are the ones the signature was checked over: its verdict
  // stands for this version until it is evicted (rm cache/<id>) or replaced.
  JudgeSignatureLocked(image, signature);
  PersistLocked(image);
  return Status::Corruption("image " + image.id + " failed verification: " + reason);
}

Status BlockCache::FetchWholeHashed(const std::shared_ptr<Image>& image,
                                   const std::shared_ptr<ByteSource>& upstream,
                                   const std::function<bool()>& stop, uint64_t bytes_per_s) {
  auto [spec, fp] = SignatureSpecOfImage(*image);
  ImageCheck check(image->hash_algo, spec, fp, options_, Now());
  uint64_t no;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!check.any() || image->nblocks == 0 || image->present_blocks > 0 || image->verifying ||
        image->streaming || image->retired || image->state != CacheState::kPartial) {
      return Status::NotSupported("not a whole, hashed fetch");
    }
    no = image->no;
    // Readers of a whole-only image wait for this stream; no verification runs beside it.
    image->streaming = image->verifying = true;
  }
  // However it ends: readers of a whole-only image it passed before they asked get a stream of
  // their own, and an image readers completed meanwhile is verified.
  struct Done {
    BlockCache* cache;
    const std::shared_ptr<Image>& image;
    const std::shared_ptr<ByteSource>& upstream;
    ~Done() {
      {
        std::lock_guard<std::mutex> lock(cache->mu_);
        image->streaming = image->verifying = false;
        image->recheck = false;  // MaybeScheduleVerify below runs the pass again if needed
        if (image->whole_only && cache->WaitingLocked(image->no)) {
          cache->StartStreamLocked(image, upstream, Why::kReadahead);
        }
        cache->MaybeScheduleVerify(image);
      }
      cache->flight_cv_.notify_all();
    }
  } done{this, image, upstream};
  // Each block is hashed as it arrives (in order, while it is in the CPU's cache); a rate cap
  // paces the one request by holding its receiver back.
  uint64_t received = 0;
  bool stopped = false;
  const auto start = std::chrono::steady_clock::now();
  Status status = FetchClaimed(
      image, no, 0, image->nblocks, upstream, Why::kPrefetch, nullptr, [&](const Block& block) {
        check.Update(block.data(), block.size());
        received += block.size();
        PaceUntil(start, received, bytes_per_s, stop);
        stopped = stop();
        return !stopped;
      });
  if (stopped) return Status::Unavailable("pre-fetch of image " + image->id + " stopped");
  GLANCEFS_RETURN_IF_ERROR(status);
  if (received != image->size) {
    return Status::Unavailable("image " + image->id + ": some blocks could not be fetched");
  }
  // Durable first: a verified mark must never outlive its blocks.
  GLANCEFS_RETURN_IF_ERROR(store_->Sync());
  return Judge(*image, no, check);
}

Result<std::string> BlockCache::CheckSignature(
    const ImageRecord& record,
    const std::function<Result<std::shared_ptr<ByteSource>>()>& open_upstream) {
  std::shared_ptr<Image> image = ImageFor(record);
  if (image->nblocks == 0) {  // nothing to read: the signature over no bytes
    auto [spec, fp] = SignatureSpecOfImage(*image);
    ImageCheck check("", spec, fp, options_, Now());
    std::string verdict = check.SignatureVerdict();
    std::lock_guard<std::mutex> lock(mu_);
    if (image->signature_fp == fp) JudgeSignatureLocked(*image, verdict);
    return verdict;
  }
  Status last;
  for (int attempt = 0; attempt < 3; ++attempt) {
    bool complete;
    {
      std::unique_lock<std::mutex> lock(mu_);
      flight_cv_.wait_for(lock, std::chrono::seconds(600), [&] { return !image->verifying; });
      if (image->retired) return Status::Unavailable("image " + record.id + " was replaced");
      complete = image->present_blocks == image->nblocks;
      const std::string& verdict = image->signature;
      const bool unverifiable = verdict.rfind("unverifiable", 0) == 0;
      // A verdict speaks for the bytes in the cache (all of them), or for a version whose bytes
      // failed their hash and were dropped (corrupt until evicted).
      if (!verdict.empty() && (complete || image->state == CacheState::kCorrupt) &&
          (!unverifiable || attempt > 0)) {
        return verdict;
      }
      if (complete) image->verifying = true;  // Verify's to clear
    }
    if (complete) {
      last = Verify(image);
      continue;
    }
    GLANCEFS_ASSIGN_OR_RETURN(auto upstream, open_upstream());
    last = FetchAll(record, upstream, [] { return false; }, 0);
    if (!last.ok() && !last.IsCorruption()) return last;
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (!image->signature.empty()) return image->signature;
  return last.ok() ? Status::Unavailable("image " + record.id + ": its signature was not checked")
                   : last;
}

Status BlockCache::FetchAll(const ImageRecord& record, const std::shared_ptr<ByteSource>& upstream,
                            const std::function<bool()>& stop, uint64_t bytes_per_s) {
  std::shared_ptr<Image> image = ImageFor(record);
  if (Status s = FetchWholeHashed(image, upstream, stop, bytes_per_s); !s.IsNotSupported()) {
    return s;
  }
  // Under a rate cap, requests of about a second's budget keep the pace smooth.
  uint64_t request_bytes = options_.request_bytes;
  if (bytes_per_s > 0) request_bytes = std::min<uint64_t>(request_bytes, bytes_per_s);
  const uint64_t per_request = std::max<uint64_t>(1, request_bytes / block_size_);
  std::mutex mu;  // guards the state shared by the fetch tasks below
  std::condition_variable cv;
  int running = 0;
  Status first_error;
  // The rate cap paces requests as they are made: the next one starts once the bytes already
  // requested fit the budget (counting completed ones instead let the first requests of an
  // image, up to readahead_requests x request_bytes, go out uncapped).
  uint64_t requested = 0;
  auto start = std::chrono::steady_clock::now();
  uint64_t cursor = 0;
  for (;;) {
    if (bytes_per_s > 0) {
      PaceUntil(start, requested, bytes_per_s, stop);
      if (stop()) break;
    }
    std::vector<std::pair<uint64_t, uint64_t>> runs;
    uint64_t no;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (image->state == CacheState::kCorrupt) {
        return Status::Corruption("image " + image->id + " failed verification: " + image->reason);
      }
      no = image->no;
      if (image->whole_only) {  // one stream reads it all: no runs to claim
        StartStreamLocked(image, upstream, Why::kPrefetch);
        break;
      }
      while (cursor < image->nblocks && runs.empty()) {
        uint64_t last = std::min(image->nblocks, cursor + per_request) - 1;
        runs = ClaimLocked(*image, cursor, last);
        cursor = last + 1;
      }
    }
    if (runs.empty()) break;
    for (const auto& [a, count] : runs) {
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return running < std::max(1, options_.readahead_requests); });
      ++running;
      lock.unlock();
      requested += count * block_size_;
      auto task = [&, a = a, count = count, no] {
        Status s = FetchClaimed(image, no, a, count, upstream, Why::kPrefetch, nullptr);
        std::lock_guard<std::mutex> l(mu);
        // NotSupported: whole-only, the stream it started lands these blocks.
        if (!s.ok() && !s.IsNotSupported() && first_error.ok()) first_error = s;
        --running;
        cv.notify_all();
      };
      if (!pool_->Submit(task)) task();  // the cache is closing: the claim must be settled
    }
    std::lock_guard<std::mutex> lock(mu);
    if (!first_error.ok() || stop()) break;
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return running == 0; });
    if (!first_error.ok()) return first_error;
  }
  if (stop()) return Status::Unavailable("pre-fetch of image " + record.id + " stopped");
  // Blocks claimed by readers when we passed them: wait for their flights to land. A stream
  // of the whole image takes as long as it takes (stop() is honoured).
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto landed = [&] {
      auto from = flights_.lower_bound({image->no, 0});
      return !image->streaming && (from == flights_.end() || from->first.first != image->no);
    };
    if (image->whole_only) {
      while (!landed() && !stop()) flight_cv_.wait_for(lock, std::chrono::seconds(1), landed);
      if (!landed()) return Status::Unavailable("pre-fetch of image " + record.id + " stopped");
    } else {
      flight_cv_.wait_for(lock, std::chrono::seconds(60), landed);
    }
    if (image->state == CacheState::kVerified || image->state == CacheState::kComplete) {
      return Status::Ok();
    }
    if (image->present_blocks != image->nblocks) {
      return Status::Unavailable("image " + record.id + ": some blocks could not be fetched");
    }
    if (image->verifying) {
      // A reader completed it first; its verification is running on the pool.
      flight_cv_.wait_for(lock, std::chrono::seconds(600), [&] { return !image->verifying; });
      return image->state == CacheState::kCorrupt
                 ? Status::Corruption("image " + record.id + " failed verification")
                 : Status::Ok();
    }
    image->verifying = true;
  }
  return Verify(image);
}

Status BlockCache::Evict(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = images_.find(id);
  if (it == images_.end()) return Status::NotFound("image " + id + " is not cached");
  Image& image = *it->second;
  EvictLocked(image);
  image.SetState(image.nblocks == 0 ? CacheState::kComplete : CacheState::kPartial);
  image.reason.clear();
  image.pinned = false;
  store_->DeleteMeta("img/" + id);
  return Status::Ok();
}

void BlockCache::Pin(const ImageRecord& record, bool pinned) {
  auto image = ImageFor(record);
  std::lock_guard<std::mutex> lock(mu_);
  image->pinned = pinned;
  PersistLocked(*image);
}

void BlockCache::Unpin(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = images_.find(id);
  if (it == images_.end() || !it->second->pinned) return;
  it->second->pinned = false;
  if (it->second->meta_written) PersistLocked(*it->second);
}

void BlockCache::Observe(const CatalogSnapshot& snapshot) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = images_.begin(); it != images_.end();) {
    auto record = snapshot.Find(it->first);
    if (record && record->data_version == it->second->version) {
      auto spec = SignatureSpecOf(*record);
      if (it->second->signature_fp != SignatureFp(spec)) {
        NewSignatureLocked(it->second, spec);
      }
      ++it;
      continue;
    }
    LOG_INFO("cache: image %s %s; dropping its cached data", it->first.c_str(),
             record ? "has new data" : "is gone from the catalog");
    EvictLocked(*it->second);
    it->second->retired = true;
    store_->DeleteMeta("img/" + it->first);
    it = images_.erase(it);
  }
}

CachedImageInfo BlockCache::InfoLocked(const Image& image) const {
  CachedImageInfo info;
  info.id = image.id;
  info.version = image.version;
  info.size = image.size;
  info.cached_bytes = image.cached_bytes;
  info.state = image.state;
  info.reason = image.reason;
  info.signature = image.signature;
  info.pinned = image.pinned;
  info.last_access = image.last_access;
  info.counters = CounterValues(image.counters);
  return info;
}

std::vector<CachedImageInfo> BlockCache::List() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<CachedImageInfo> out;
  for (const auto& [id, image] : images_) {
    if (image->cached_bytes > 0 || image->state == CacheState::kCorrupt) {
      out.push_back(InfoLocked(*image));
    }
  }
  std::sort(out.begin(), out.end(),
            [](const CachedImageInfo& a, const CachedImageInfo& b) { return a.id < b.id; });
  return out;
}

std::optional<CachedImageInfo> BlockCache::Find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = images_.find(id);
  if (it == images_.end()) return std::nullopt;
  return InfoLocked(*it->second);
}

void BlockCache::RecordLatency(uint64_t us) {
  std::lock_guard<std::mutex> lock(latency_mu_);
  size_t i = 0;
  while (i < std::size(kLatencyBounds) && us > kLatencyBounds[i] * 1e6) ++i;
  ++latency_counts_[i];
  latency_total_us_ += us;
}

CacheTotals BlockCache::Totals() {
  CacheTotals t;
  t.counters = CounterValues(totals_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    t.cached_bytes = cached_bytes_;
    for (const auto& [id, image] : images_) t.images += image->cached_bytes > 0;
  }
  t.memory_bytes = memory_.bytes();
  t.disk_bytes = store_->DiskBytes();
  t.evictions = evictions_;
  t.evicted_bytes = evicted_bytes_;
  t.verified = verified_;
  t.verify_failures = verify_failures_;
  t.signatures_verified = signatures_verified_;
  t.signatures_invalid = signatures_invalid_;
  t.signatures_unverifiable = signatures_unverifiable_;
  std::lock_guard<std::mutex> lock(latency_mu_);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < std::size(kLatencyBounds); ++i) {
    cumulative += latency_counts_[i];
    t.latency_buckets.emplace_back(kLatencyBounds[i], cumulative);
  }
  t.latency_count = cumulative + latency_counts_.back();
  t.latency_sum_s = static_cast<double>(latency_total_us_) / 1e6;
  return t;
}

}  // namespace glancefs::cache
