// SequentialStream: one streaming request serving a sequential reader. Glance spends CPU per
// request, so one GET of an image costs it much less than the 64 MiB ranges read-ahead would
// send (docs/CACHE.md): a reader that reads on sequentially, over a source that
// PrefersOneStream (HTTP), is served by one request from its read-ahead point to the image's
// end, taken over by ranged reads when it jumps.
//
// The request is paced by the reader (BlockFetcher::Stream asks Before for each block). Follow,
// on the reader's thread, claims the blocks up to the reader's read-ahead window, as ranged
// read-ahead would (so a reader that reaches them first waits for the stream rather than
// fetching them), and remembers those it could not claim (stored or in flight already: the
// stream receives and drops their bytes). The receiving thread waits in Before until its next
// block is claimed or skipped that way, and the connection's flow control then holds the server
// back. The stream ends:
//  - when its reader leaves it for a run elsewhere, or its source closes (Stop: the cached
//    source decides, cached_source.h);
//  - when the reader leaves it idle for kIdle (a fetch thread and a connection are not held
//    for a reader that stopped);
//  - after kMaxSkipped blocks in a row it only skips (what follows is cached);
//  - at the image's end; on an error; when the image is renumbered, retired or found corrupt;
//    when the cache closes.
// Whatever it claimed and never received is abandoned when it ends: whoever waits for such a
// block fetches it (flight_table.h).
//
// Thread-safe. Locks: mu_ is a leaf (the claimed window); Follow takes Image::mu alone to
// claim, then mu_ to publish.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>

#include "cache/block_fetcher.h"
#include "cache/image_table.h"
#include "fs/base/mutex.h"

namespace glancefs::cache {

class SequentialStream final : public BlockPacer {
 public:
  static constexpr std::chrono::milliseconds kIdle{3000};
  static constexpr uint64_t kMaxSkipped = 32;

  // A stream of image number `no` of `image` from block `first`. Runs when Run is called.
  SequentialStream(BlockFetcher* fetcher, ImagePtr image, uint64_t no, SourcePtr upstream,
                   uint64_t first, const std::atomic<bool>* closing);

  // The reader has read up to byte `next` and reads `window` bytes ahead of it: claims the
  // blocks that start below next + window. One caller at a time (the reader's source lock).
  void Follow(uint64_t next, uint64_t window) EXCLUDES(mu_, image_->mu);
  // Ends the stream before its next block.
  void Stop() EXCLUDES(mu_);
  uint64_t first_block() const { return first_; }
  // Whether Run has returned.
  bool done() const { return done_.load(std::memory_order_acquire); }
  // The request, on a fetch thread, until the stream ends; then abandons what it claimed and
  // never received. A stream that never runs is ended with Abandon instead.
  void Run() EXCLUDES(mu_, image_->mu);
  void Abandon() EXCLUDES(mu_, image_->mu);

  Next Before(uint64_t index) override EXCLUDES(mu_, image_->mu);

 private:
  // Abandons the flights of the blocks from `base` that `claimed` marks.
  void AbandonClaimed(uint64_t base, const std::deque<bool>& claimed) EXCLUDES(image_->mu);
  // Waits until block `index` is claimed or known skipped; false if the stream is to end first.
  bool AwaitReader(uint64_t index) REQUIRES(mu_);

  BlockFetcher* const fetcher_;
  const ImagePtr image_;
  const uint64_t no_;
  const SourcePtr upstream_;
  const uint64_t first_;
  const std::atomic<bool>* const closing_;

  Mutex mu_;
  CondVar moved_;
  // Blocks [base_, base_ + claimed_.size()) have been through Follow: claimed[i] says whether
  // block base_ + i was claimed for the stream (else it is skipped). Before pops them.
  std::deque<bool> claimed_ GUARDED_BY(mu_);
  uint64_t base_ GUARDED_BY(mu_);
  bool stop_ GUARDED_BY(mu_) = false;
  uint64_t skipped_ = 0;  // blocks skipped in a row; the receiving thread's
  std::atomic<bool> done_{false};
};

}  // namespace glancefs::cache
