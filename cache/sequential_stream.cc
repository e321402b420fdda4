#include "cache/sequential_stream.h"

#include <algorithm>

#include "fs/base/log.h"

namespace glancefs::cache {
namespace {

// How often a waiting stream looks whether the cache is closing.
constexpr std::chrono::milliseconds kClosingPoll{100};

}  // namespace

SequentialStream::SequentialStream(BlockFetcher* fetcher, ImagePtr image, uint64_t no,
                                   SourcePtr upstream, uint64_t first,
                                   const std::atomic<bool>* closing)
    : fetcher_(fetcher),
      image_(std::move(image)),
      no_(no),
      upstream_(std::move(upstream)),
      first_(first),
      closing_(closing),
      base_(first) {}

void SequentialStream::Follow(uint64_t next, uint64_t window) {
  uint64_t from;
  {
    MutexLock lock(&mu_);
    if (stop_) return;
    from = base_ + claimed_.size();
  }
  const uint64_t bs = image_->block_size;
  const uint64_t to = std::min<uint64_t>(image_->nblocks, (next + window + bs - 1) / bs);
  if (to <= from) return;
  std::deque<bool> got;  // Follow's callers are serialized: nobody else extends the window
  {
    MutexLock lock(&image_->mu);
    if (image_->no != no_) return;  // renumbered: the stream ends at its next block
    for (uint64_t i = from; i < to; ++i) {
      got.push_back(!fetcher_->ClaimLocked(*image_, i, i).empty());
    }
  }
  {
    MutexLock lock(&mu_);
    if (!stop_) {
      claimed_.insert(claimed_.end(), got.begin(), got.end());
      moved_.SignalAll();
      return;
    }
  }
  AbandonClaimed(from, got);  // it ended meanwhile: these would never come
}

void SequentialStream::Stop() {
  MutexLock lock(&mu_);
  stop_ = true;
  moved_.SignalAll();
}

void SequentialStream::Run() {
  Status s = fetcher_->Stream(image_, no_, first_, upstream_, this);
  // Nothing is lost if it failed: what it claimed and did not receive is abandoned below, and
  // ranged reads take over.
  LOG_DEBUG("cache: stream of image %s from block %llu ended: %s", image_->id.c_str(),
            static_cast<unsigned long long>(first_), s.ToString().c_str());
  Abandon();
  done_.store(true, std::memory_order_release);
}

void SequentialStream::Abandon() {
  std::deque<bool> left;
  uint64_t base;
  {
    MutexLock lock(&mu_);
    stop_ = true;
    left.swap(claimed_);
    base = base_;
  }
  // Every block it received has landed (the request drained its store runs): these never came.
  AbandonClaimed(base, left);
}

void SequentialStream::AbandonClaimed(uint64_t base, const std::deque<bool>& claimed) {
  MutexLock lock(&image_->mu);
  for (uint64_t i = 0; i < claimed.size(); ++i) {
    if (claimed[i]) fetcher_->deps().flights->Abandon({no_, base + i});
  }
}

bool SequentialStream::AwaitReader(uint64_t index) {
  auto idle_until = std::chrono::steady_clock::now() + kIdle;
  uint64_t seen = base_ + claimed_.size();
  while (!stop_ && index >= base_ + claimed_.size()) {
    if (closing_->load(std::memory_order_relaxed)) return false;
    moved_.WaitFor(&mu_, kClosingPoll);
    if (base_ + claimed_.size() != seen) {  // the reader moved, if not far enough yet
      seen = base_ + claimed_.size();
      idle_until = std::chrono::steady_clock::now() + kIdle;
    } else if (std::chrono::steady_clock::now() >= idle_until) {
      LOG_DEBUG("cache: stream of image %s idle at block %llu", image_->id.c_str(),
                static_cast<unsigned long long>(index));
      stop_ = true;
    }
  }
  return !stop_;
}

BlockPacer::Next SequentialStream::Before(uint64_t index) {
  bool claimed;
  {
    MutexLock lock(&mu_);
    if (!AwaitReader(index)) return Next::kEnd;
    while (base_ < index) {  // blocks are asked for in order, each once
      claimed_.pop_front();
      ++base_;
    }
    claimed = claimed_.front();
  }
  if (claimed) {
    MutexLock lock(&image_->mu);
    // Its flight is the stream's: received whatever happened, unless the image is gone.
    if (image_->no != no_ || image_->retired) return Next::kEnd;
    skipped_ = 0;
    return Next::kClaimed;
  }
  if (++skipped_ <= kMaxSkipped) return Next::kSkip;
  LOG_DEBUG("cache: stream of image %s ends at block %llu: the rest is cached or fetched",
            image_->id.c_str(), static_cast<unsigned long long>(index));
  return Next::kEnd;
}

}  // namespace glancefs::cache
