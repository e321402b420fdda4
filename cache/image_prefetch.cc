#include "cache/image_prefetch.h"

#include <chrono>

#include "cache/rate_limiter.h"
#include "fs/base/mutex.h"

namespace glancefs::cache {
namespace {

// The ranged requests of one FetchRanged: at most `limit` in flight, the first error kept.
class InFlight {
 public:
  explicit InFlight(int limit) : limit_(std::max(1, limit)) {}
  ~InFlight() { Wait().IgnoreError(); }  // waits; the caller returned the first error

  void Acquire() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (running_ >= limit_) cv_.Wait(&mu_);
    ++running_;
  }
  void Release(const Status& s) EXCLUDES(mu_) {
    MutexLock lock(&mu_);  // signalled under it: Wait's caller may destroy this at once
    if (!s.ok() && first_error_.ok()) first_error_ = s;
    --running_;
    cv_.SignalAll();
  }
  Status Wait() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    while (running_ > 0) cv_.Wait(&mu_);
    return first_error_;
  }
  bool failed() EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return !first_error_.ok();
  }

 private:
  const int limit_;
  Mutex mu_;
  CondVar cv_;
  int running_ GUARDED_BY(mu_) = 0;
  Status first_error_ GUARDED_BY(mu_);
};

Status Corrupt(const Image& image) REQUIRES(image.mu) {
  return Status::Corruption("image " + image.id + " failed verification: " + image.reason);
}

}  // namespace

Status ImagePrefetch::FetchAll(const ImagePtr& image, const SourcePtr& upstream, const Stop& stop,
                               uint64_t bytes_per_s) {
  if (Status s = FetchWholeHashed(image, upstream, stop, bytes_per_s); !s.IsNotSupported()) {
    return s;
  }
  // A block another fetch held when FetchRanged passed it may never land: a read-ahead stream
  // whose reader stopped abandons the blocks it claimed, a reader's failed request fails its
  // own. The next round claims them; rounds go on while each leaves fewer blocks missing.
  uint64_t missing = UINT64_MAX;
  for (int round = 1;; ++round) {
    GLANCEFS_RETURN_IF_ERROR(FetchRanged(image, upstream, stop, bytes_per_s));
    if (stop()) return Status::Unavailable("pre-fetch of image " + image->id + " stopped");
    const uint64_t before = missing;
    GLANCEFS_RETURN_IF_ERROR(AwaitLanded(image, stop, &missing));
    if (missing == 0) return VerifyComplete(image);
    if (round == kRounds || missing >= before) {
      return Status::Unavailable("image " + image->id + ": " + std::to_string(missing) +
                                 " blocks could not be fetched");
    }
  }
}

Status ImagePrefetch::FetchWholeHashed(const ImagePtr& image, const SourcePtr& upstream,
                                       const Stop& stop, uint64_t bytes_per_s) {
  std::unique_ptr<ImageCheck> check = d_.judge->NewCheck(*image);
  uint64_t no;
  {
    MutexLock lock(&image->mu);
    // A block another fetch holds (a format probe's, stored soon) makes it a ranged fetch of
    // the rest: one whole request would receive that block a second time.
    if (!check->any() || image->nblocks == 0 || image->present_blocks > 0 ||
        d_.flights->HasAny(image->no) || image->verifying || image->streaming || image->retired ||
        image->state() != CacheState::kPartial) {
      return Status::NotSupported("not a whole, hashed fetch");
    }
    no = image->no;
    // Readers of a whole-only image wait for this stream; no verification runs beside it.
    image->streaming = image->verifying = true;
  }
  // However it ends: readers of a whole-only image it passed before they asked get a stream of
  // their own, and an image readers completed meanwhile is verified.
  struct Done {
    const PrefetchDeps& d;
    const ImagePtr& image;
    const SourcePtr& upstream;
    ~Done() {
      {
        MutexLock lock(&image->mu);
        image->streaming = image->verifying = false;
        image->recheck = false;  // MaybeScheduleLocked below runs the pass again if needed
        if (image->whole_only && d.flights->HasPending(image->no)) {
          d.streamer->StartLocked(image, upstream, FetchWhy::kReadahead);
        }
        d.judge->MaybeScheduleLocked(image);
      }
      image->changed.SignalAll();
    }
  } done{d_, image, upstream};
  uint64_t received = 0;
  bool stopped = false;
  RateLimiter limiter(bytes_per_s);
  Status status = d_.fetcher->Fetch(image, no, 0, image->nblocks, upstream, FetchWhy::kPrefetch,
                                    nullptr, [&](const Block& block) {
                                      check->Update(block.data(), block.size());
                                      received += block.size();
                                      limiter.Pace(received, stop);
                                      stopped = stop();
                                      return !stopped;
                                    });
  if (stopped) return Status::Unavailable("pre-fetch of image " + image->id + " stopped");
  GLANCEFS_RETURN_IF_ERROR(status);
  if (received != image->size) {
    return Status::Unavailable("image " + image->id + ": some blocks could not be fetched");
  }
  // Durable first: a verified mark must never outlive its blocks.
  GLANCEFS_RETURN_IF_ERROR(d_.store->Sync());
  return d_.judge->Judge(*image, no, *check);
}

Status ImagePrefetch::FetchRanged(const ImagePtr& image, const SourcePtr& upstream,
                                  const Stop& stop, uint64_t bytes_per_s) {
  // Under a rate cap, requests of about a second's budget keep the pace smooth.
  uint64_t request_bytes = d_.request_bytes;
  if (bytes_per_s > 0) request_bytes = std::min<uint64_t>(request_bytes, bytes_per_s);
  const uint64_t per_request = std::max<uint64_t>(1, request_bytes / d_.block_size);
  RateLimiter limiter(bytes_per_s);
  InFlight in_flight(d_.readahead_requests);
  uint64_t requested = 0, cursor = 0;
  Status corrupt;
  while (!in_flight.failed()) {
    limiter.Pace(requested, stop);
    if (stop()) break;
    std::vector<BlockFetcher::Run> runs;
    uint64_t no;
    {
      MutexLock lock(&image->mu);
      if (image->state() == CacheState::kCorrupt) {
        corrupt = Corrupt(*image);
        break;
      }
      no = image->no;
      if (image->whole_only) {  // one stream reads it all: no runs to claim
        d_.streamer->StartLocked(image, upstream, FetchWhy::kPrefetch);
        break;
      }
      while (cursor < image->nblocks && runs.empty()) {
        const uint64_t last = std::min(image->nblocks, cursor + per_request) - 1;
        runs = d_.fetcher->ClaimLocked(*image, cursor, last);
        cursor = last + 1;
      }
    }
    if (runs.empty()) break;
    for (const auto& [a, count] : runs) {
      in_flight.Acquire();
      requested += count * d_.block_size;
      auto task = [&, a = a, count = count, no] {
        Status s = d_.fetcher->Fetch(image, no, a, count, upstream, FetchWhy::kPrefetch, nullptr);
        // NotSupported: whole-only, the stream it started lands these blocks.
        in_flight.Release(s.IsNotSupported() ? Status::Ok() : s);
      };
      if (!d_.pool->Submit(task)) task();  // the cache is closing: the claim must be settled
    }
    if (stop()) break;
  }
  GLANCEFS_RETURN_IF_ERROR(in_flight.Wait());
  return corrupt;
}

Status ImagePrefetch::AwaitLanded(const ImagePtr& image, const Stop& stop, uint64_t* missing) {
  // Blocks claimed by others when we passed them: wait for their flights to land. A stream of
  // the whole image takes as long as it takes (stop() is honoured).
  MutexLock lock(&image->mu);
  auto landed = [&]() REQUIRES(image->mu) {
    return !image->streaming && !d_.flights->HasAny(image->no);
  };
  if (image->whole_only) {
    while (!landed()) {
      lock.Unlock();
      // The pre-fetch queue's stop() takes the queue's lock, which is taken before an image's
      // (Prefetcher::Queue pins with it held): never ask it with the image's lock held.
      const bool stopped = stop();
      lock.Lock();
      if (stopped && !landed()) {
        return Status::Unavailable("pre-fetch of image " + image->id + " stopped");
      }
      if (!landed()) image->changed.WaitFor(&image->mu, std::chrono::seconds(1));
    }
  } else {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (!landed() && image->changed.WaitUntil(&image->mu, deadline)) {
    }
  }
  // Failed its hash meanwhile (its blocks dropped): that is the outcome, not missing blocks.
  if (image->state() == CacheState::kCorrupt) return Corrupt(*image);
  *missing = image->nblocks - image->present_blocks;
  return Status::Ok();
}

Status ImagePrefetch::VerifyComplete(const ImagePtr& image) {
  MutexLock lock(&image->mu);
  if (image->state() == CacheState::kCorrupt) return Corrupt(*image);
  if (image->state() == CacheState::kVerified || image->state() == CacheState::kComplete) {
    return Status::Ok();
  }
  if (!image->complete()) {  // evicted since it landed
    return Status::Unavailable("image " + image->id + " lost blocks before it was verified");
  }
  if (image->verifying) {
    // A reader completed it first; its verification is running on the pool. A pass that
    // reached no verdict leaves the image partial: the caller sees its state.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(600);
    while (image->verifying && image->changed.WaitUntil(&image->mu, deadline)) {
    }
    return image->state() == CacheState::kCorrupt ? Corrupt(*image) : Status::Ok();
  }
  image->verifying = true;
  lock.Unlock();
  return d_.judge->Verify(image);
}

}  // namespace glancefs::cache
