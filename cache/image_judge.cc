#include "cache/image_judge.h"

#include "cache/cache_metrics.h"
#include "fs/base/log.h"

namespace glancefs::cache {
namespace {

// Stored blocks are read back for a check in runs of up to this many bytes.
constexpr uint64_t kDigestRunBytes = 1 << 20;

}  // namespace

void ImageJudge::MaybeScheduleLocked(const ImagePtr& image) {
  if (!image->complete() || image->nblocks == 0 || image->verifying ||
      image->state() != CacheState::kPartial) {
    return;
  }
  image->verifying = true;
  auto verify = [this, image] {
    // A verdict (verified, corrupt) is the image's state, logged by Judge and Condemn. What
    // else fails leaves the image partial, verified again when it is next complete.
    Status s = Verify(image);
    if (!s.ok() && !s.IsCorruption()) {
      LOG_WARNING("cache: image %s not verified yet: %s", image->id.c_str(),
                  s.ToString().c_str());
    }
  };
  if (!d_.pool->Submit(verify)) image->verifying = false;
}

void ImageJudge::MaybeSchedule(const ImagePtr& image) {
  MutexLock lock(&image->mu);
  MaybeScheduleLocked(image);
}

void ImageJudge::EndVerifying(const ImagePtr& image) {
  {
    MutexLock lock(&image->mu);
    image->verifying = false;
    if (image->recheck) {  // its signature changed meanwhile: again
      image->recheck = false;
      MaybeScheduleLocked(image);
    }
  }
  image->changed.SignalAll();
}

std::unique_ptr<ImageCheck> ImageJudge::NewCheck(Image& image) {
  std::optional<SignatureSpec> spec;
  std::string fp;
  {
    MutexLock lock(&image.mu);  // ImageFor and Observe change them
    spec = image.signature_spec;
    fp = image.signature_fp;
  }
  return std::make_unique<ImageCheck>(image.hash_algo, spec, fp, *d_.policy, d_.now());
}

Status ImageJudge::Verify(const ImagePtr& image) {
  struct Done {
    ImageJudge* judge;
    const ImagePtr& image;
    ~Done() { judge->EndVerifying(image); }
  } done{this, image};
  // Durable first: a verified mark must never outlive its blocks.
  GLANCEFS_RETURN_IF_ERROR(d_.store->Sync());
  const uint64_t no = image->no;
  std::unique_ptr<ImageCheck> check = NewCheck(*image);
  if (!image->hash_algo.empty() && !check->hashing()) {
    LOG_WARNING("cache: image %s: unknown hash algorithm '%s'; not verified", image->id.c_str(),
                image->hash_algo.c_str());
  }
  if (check->any()) GLANCEFS_RETURN_IF_ERROR(DigestStored(*image, no, *check));
  return Judge(*image, no, *check);
}

Status ImageJudge::DigestStored(Image& image, uint64_t no, ImageCheck& check) {
  std::vector<size_t> lens(image.nblocks);
  for (uint64_t i = 0; i < image.nblocks; ++i) lens[i] = image.BlockLen(i);
  const uint64_t per_run = std::max<uint64_t>(1, kDigestRunBytes / image.block_size);
  uint64_t bad = 0;
  bool closing = false;
  Status s = d_.stored->ForEachStored(
      no, lens, per_run,
      [&](const char* data, size_t n) {
        // An unmount does not wait for a whole image's hash: the image stays partial, as after a
        // crash, and is checked by the next pass that asks (a pre-fetch, a signature check).
        if (d_.closing->load(std::memory_order_relaxed)) {
          closing = true;
          return false;
        }
        check.Update(data, n);
        return true;
      },
      &bad);
  if (s.ok()) return s;
  if (closing) return Status::Unavailable("image " + image.id + ": the cache is closing");
  // Lost or damaged since it was stored: fetch it again; verify once it is back.
  PendingRecord record;
  {
    MutexLock lock(&image.mu);
    if (image.no == no) record = d_.images->DropBlockLocked(image, bad);
  }
  d_.images->Commit(image, record);
  return Status::Unavailable("image " + image.id + ": block " + std::to_string(bad) +
                             " must be fetched again before verification");
}

void ImageJudge::JudgeSignatureLocked(Image& image, const std::string& verdict) {
  image.signature = verdict;
  if (verdict == kSignatureUnsigned) return;
  if (verdict == kSignatureVerified) {
    d_.metrics->signatures_verified.fetch_add(1, std::memory_order_relaxed);
    LOG_INFO("cache: image %s: signature verified", image.id.c_str());
  } else if (verdict.rfind("invalid", 0) == 0) {
    d_.metrics->signatures_invalid.fetch_add(1, std::memory_order_relaxed);
    LOG_ERROR("cache: image %s: signature %s", image.id.c_str(), verdict.c_str());
  } else {
    d_.metrics->signatures_unverifiable.fetch_add(1, std::memory_order_relaxed);
    LOG_WARNING("cache: image %s: signature %s", image.id.c_str(), verdict.c_str());
  }
}

Status ImageJudge::Judge(Image& image, uint64_t no, ImageCheck& check) {
  const std::string got = check.HashHex();
  const std::string signature = check.SignatureVerdict();
  PendingRecord record;
  {
    MutexLock lock(&image.mu);
    if (image.no != no || !image.complete()) {
      return Status::Unavailable("image " + image.id + " changed while it was verified");
    }
    if (image.signature_fp != check.signature_fp()) {
      // New signature properties (or policy) arrived during the pass: its verdict is about the
      // old ones. Nothing is recorded; the image stays partial and is checked again.
      image.recheck = true;
      return Status::Unavailable("image " + image.id +
                                 ": its signature changed while it was checked");
    }
    if (check.hashing() && got != image.hash_value) {
      lock.Unlock();
      return Condemn(image, no, got, signature);
    }
    JudgeSignatureLocked(image, signature);
    image.SetState(check.hashing() ? CacheState::kVerified : CacheState::kComplete);
    record = d_.images->RecordLocked(image);
  }
  d_.images->Commit(image, record);
  if (check.hashing()) {
    d_.metrics->verified.fetch_add(1, std::memory_order_relaxed);
    LOG_INFO("cache: image %s complete and verified (%s)", image.id.c_str(),
             image.hash_algo.c_str());
  }
  return Status::Ok();
}

Status ImageJudge::Condemn(Image& image, uint64_t no, const std::string& got,
                           const std::string& signature) {
  const std::string reason =
      image.hash_algo + " of the data is " + got + ", the record says " + image.hash_value;
  uint64_t old_no;
  PendingRecord record;
  {
    MutexLock lock(&image.mu);
    if (image.no != no) {  // evicted since Judge looked: the bytes judged are gone anyway
      return Status::Unavailable("image " + image.id + " changed while it was verified");
    }
    d_.metrics->verify_failures.fetch_add(1, std::memory_order_relaxed);
    LOG_ERROR("cache: image %s failed verification: %s; its data is dropped and not served",
              image.id.c_str(), reason.c_str());
    old_no = d_.images->EvictLocked(image);
    image.SetState(CacheState::kCorrupt);
    image.reason = reason;
    // The bytes that failed the hash are the ones the signature was checked over: its verdict
    // stands for this version until it is evicted (rm cache/<id>) or replaced.
    JudgeSignatureLocked(image, signature);
    record = d_.images->RecordLocked(image);
  }
  d_.images->DropBlocks(old_no);
  d_.images->Commit(image, record);
  return Status::Corruption("image " + image.id + " failed verification: " + reason);
}

}  // namespace glancefs::cache
