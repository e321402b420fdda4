// ImageJudge: what happens when every block of an image is stored. The blocks are made durable
// (Sync), then the whole image is checked in one pass (verifier.h: hash and signature) and the
// image gets the verdicts: verified if its hash is the record's (complete if it has none), else
// corrupt, its data dropped, every read of it failing until it is evicted or replaced; and its
// signature's verdict. A verdict reached over bytes that changed meanwhile (a block dropped,
// an eviction, new signature properties) counts for nothing, and the check runs again.
//
// MaybeScheduleLocked queues the check on a fetch thread when the image is complete, partial and
// not being checked; Judge also serves the pre-fetch that hashed an image as it arrived
// (image_prefetch.h). Thread-safe; no lock of its own: it takes the image's lock to read and
// set its state, and reads the store and writes records with no lock held.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "cache/image_table.h"
#include "cache/stored_blocks.h"
#include "cache/verifier.h"
#include "cache/work_pool.h"

namespace glancefs::cache {

class CacheMetrics;

struct JudgeDeps {
  const std::atomic<bool>* closing;  // a check of the stored bytes stops when it is set
  BlockStore* store;
  StoredBlocks* stored;
  ImageTable* images;
  CacheMetrics* metrics;
  WorkPool* pool;
  const SignaturePolicy* policy;
  std::function<int64_t()> now;
};

class ImageJudge {
 public:
  explicit ImageJudge(const JudgeDeps& deps) : d_(deps) {}

  void MaybeScheduleLocked(const ImagePtr& image) REQUIRES(image->mu);
  void MaybeSchedule(const ImagePtr& image) EXCLUDES(image->mu);
  // Checks the stored image and judges it. REQUIRES: the caller set image->verifying (this
  // clears it, however it ends).
  Status Verify(const ImagePtr& image) EXCLUDES(image->mu);
  // A check for one pass over `image`'s bytes, under its signature properties as they are now.
  std::unique_ptr<ImageCheck> NewCheck(Image& image) EXCLUDES(image.mu);
  // Gives image number `no`, all of it stored and synced, the verdicts of `check`, which saw
  // all its bytes.
  Status Judge(Image& image, uint64_t no, ImageCheck& check) EXCLUDES(image.mu);
  // Records a signature verdict (and counts it).
  void JudgeSignatureLocked(Image& image, const std::string& verdict) REQUIRES(image.mu);
  // Clears image->verifying (and recheck, running the check again if asked) and wakes waiters.
  void EndVerifying(const ImagePtr& image) EXCLUDES(image->mu);

 private:
  // Feeds the stored blocks of image number `no` to `check`.
  Status DigestStored(Image& image, uint64_t no, ImageCheck& check) EXCLUDES(image.mu);
  // The corrupt verdict: data dropped, reads refused.
  Status Condemn(Image& image, uint64_t no, const std::string& got, const std::string& signature)
      EXCLUDES(image.mu);

  const JudgeDeps d_;
};

}  // namespace glancefs::cache
