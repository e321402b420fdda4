#include "cache/block_fetcher.h"

#include <chrono>
#include <deque>

#include "cache/cache_metrics.h"
#include "cache/store_writer.h"
#include "cache/stored_blocks.h"
#include "fs/base/log.h"

namespace glancefs::cache {
namespace {

// Arrived blocks are stored in runs of about this many bytes (at least one block) while a
// request streams on, with at most kStoreRunsPending runs of one request waiting for the store
// threads.
constexpr uint64_t kStoreRunBytes = 2 << 20;
constexpr int kStoreRunsPending = 2;

// How often a long request (a stream) lets the cache check its limits while it runs.
constexpr uint64_t kLimitsEveryBytes = 64 << 20;

// One request's blocks, from the network to the store. Buffers are taken as the bytes arrive
// and let go once stored, so a request of any length holds only the few blocks between the
// head of the stream and the store: the blocks of the run being received, then the runs
// queued for the store threads, each owning its blocks. The receiving thread calls SliceFor
// and OnBlock; store threads call StoreBlocks on runs that receiving is done with.
//
// Blocks are claimed by the caller before the request (a fetch) or, with a pacer, one by one
// just before their bytes arrive (a stream); a block the pacer skips is received and dropped.
// A source may hand out several slices before the first is done (rbd keeps reads in flight):
// the buffers handed out and not done yet wait in order in pending_.
class FetchRequest {
 public:
  FetchRequest(const FetcherDeps& d, const ImagePtr& image, uint64_t no, uint64_t first,
               uint64_t count, FetchWhy why, const EachBlock& each, BlockPacer* pacer,
               std::function<void(bool added)> progress)
      : d_(d),
        image_(image),
        no_(no),
        first_(first),
        count_(count),
        why_(why),
        each_(each),
        pacer_(pacer),
        progress_(std::move(progress)),
        claimed_end_(pacer ? 0 : count),
        writer_(d.store_pool, kStoreRunsPending) {}

  uint64_t offset() const { return first_ * d_.block_size; }
  uint64_t length() const {
    return std::min(image_->size, (first_ + count_) * d_.block_size) - offset();
  }

  // The request, and every run it stored. Sets us(). A stream its pacer ended is OK.
  Status Receive(ByteSource& upstream) {
    auto t0 = std::chrono::steady_clock::now();
    Status status = upstream.ReadScattered(
        offset(), length(), [this](size_t k) { return SliceFor(k); },
        [this](size_t k) { OnBlock(k); });
    us_ =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    StoreRun();  // what arrived last (or before a failure)
    writer_.Drain();
    if (paced_out_ && arrived_ >= claimed_end_) return Status::Ok();
    return status;
  }
  uint64_t arrived() const { return arrived_; }
  // Blocks [arrived(), claimed_end()) were claimed for this request and never arrived.
  uint64_t claimed_end() const { return claimed_end_; }
  uint64_t received_bytes() const { return received_bytes_; }
  uint64_t delivered() const { return delivered_; }
  bool added() const { return added_; }
  uint64_t us() const { return us_; }
  BlockData TakeFirst() { return std::move(first_block_); }

 private:
  IoSlice SliceFor(size_t k) {
    if (ended_ || d_.closing->load(std::memory_order_relaxed)) return {nullptr, 0};  // ends it
    const size_t len = image_->BlockLen(first_ + k);
    bool skip = false;
    if (pacer_) {
      switch (pacer_->Before(first_ + k)) {
        case BlockPacer::Next::kEnd:
          paced_out_ = true;
          return {nullptr, 0};
        case BlockPacer::Next::kSkip:
          skip = true;
          break;
        case BlockPacer::Next::kClaimed:
          claimed_end_ = k + 1;
          break;
      }
    }
    std::shared_ptr<Block> block = d_.buffers->Allocate(len);
    if (!block) return {nullptr, 0};
    IoSlice slice{block->mutable_data(), block->size()};
    pending_.push_back({std::move(block), skip});
    return slice;
  }

  // Readers first: each block's flight completes as soon as its bytes are in. It stays in the
  // table (done) until its block is stored, so a reader arriving meanwhile takes its data.
  void OnBlock(size_t k) {
    arrived_ = k + 1;  // slices complete in order
    const uint64_t len = image_->BlockLen(first_ + k);
    received_bytes_ += len;
    if (received_bytes_ / kLimitsEveryBytes != (received_bytes_ - len) / kLimitsEveryBytes &&
        progress_) {
      progress_(added_.exchange(false));
    }
    Pending done = std::move(pending_.front());  // slices are done in the order handed out
    pending_.pop_front();
    if (done.skip) {
      StoreRun();  // a run is contiguous: it ends before a skipped block
      return;
    }
    BlockData block = std::move(done.block);
    ++delivered_;
    if (each_ && !each_(*block)) ended_ = true;
    if (why_ != FetchWhy::kPrefetch) d_.memory->Insert({no_, first_ + k}, block);
    d_.flights->Complete({no_, first_ + k}, block);
    if (k == 0) first_block_ = block;
    if (run_.empty()) run_first_ = k;
    // Its check now, while its bytes are in this core's cache (after its readers have it):
    // on a store thread it was a second trip through memory for every byte.
    run_checks_.push_back(BlockCheck({no_, first_ + k}, block->data(), block->size()));
    run_.push_back(std::move(block));
    if (run_.size() * d_.block_size >= kStoreRunBytes) StoreRun();
  }

  void StoreRun() {
    if (run_.empty()) return;
    writer_.Submit([this, a = run_first_, run = std::move(run_), checks = std::move(run_checks_)] {
      StoreBlocks(a, run, checks);
    });
    run_.clear();
    run_checks_.clear();
  }

  // On a store thread: blocks [a, a + run.size()) to the store, then marked stored and their
  // flights landed. The run's blocks go when it does: readers have theirs.
  void StoreBlocks(uint64_t a, const std::vector<BlockData>& run,
                   const std::vector<uint64_t>& checks) {
    Status put = image_->no.load() == no_ ? PutRun(a, run, checks) : Status::Unavailable("evicted");
    {
      MutexLock lock(&image_->mu);
      for (uint64_t k = 0; k < run.size(); ++k) {
        const uint64_t index = first_ + a + k;
        // One made after its block arrived (a reader of a whole-only image) is served now.
        d_.flights->Land({no_, index}, run[k]);
        if (put.ok() && image_->no == no_ && d_.images->AddBlockLocked(*image_, index)) {
          added_ = true;
        }
      }
    }
    image_->changed.SignalAll();
  }

  Status PutRun(uint64_t a, const std::vector<BlockData>& run,
                const std::vector<uint64_t>& checks) {
    std::vector<BlockPut> puts;
    puts.reserve(run.size());
    for (uint64_t k = 0; k < run.size(); ++k) {
      puts.push_back({std::string_view(run[k]->data(), run[k]->size()), checks[k]});
    }
    Status put = d_.store->PutBlocks({no_, first_ + a}, puts);
    if (!put.ok()) {
      const uint64_t n = run.size();
      image_->counters.store_errors.fetch_add(n, std::memory_order_relaxed);
      uint64_t before = d_.metrics->totals.store_errors.fetch_add(n, std::memory_order_relaxed);
      if (before == 0 || before / 1000 != (before + n) / 1000) {  // now and then
        LOG_ERROR("cache: cannot store blocks (%s); serving them uncached", put.ToString().c_str());
      }
    }
    return put;
  }

  const FetcherDeps& d_;
  const ImagePtr& image_;
  const uint64_t no_, first_, count_;
  const FetchWhy why_;
  const EachBlock& each_;
  BlockPacer* const pacer_;
  const std::function<void(bool added)> progress_;
  // The receiving thread's: the blocks handed out and not done yet (skip: the pacer's, its
  // bytes dropped), and the run not yet handed to the store.
  struct Pending {
    std::shared_ptr<Block> block;
    bool skip;
  };
  std::deque<Pending> pending_;
  std::vector<BlockData> run_;
  std::vector<uint64_t> run_checks_;  // BlockCheck of each block of run_
  uint64_t run_first_ = 0;
  BlockData first_block_;
  uint64_t arrived_ = 0;
  uint64_t claimed_end_;
  uint64_t received_bytes_ = 0;
  uint64_t delivered_ = 0;  // blocks received for the cache (not skipped)
  bool ended_ = false;      // each_ said no more
  bool paced_out_ = false;  // the pacer ended the stream
  std::atomic<bool> added_{false};
  uint64_t us_ = 0;
  StoreWriter writer_;  // last: drained before the blocks go
};

}  // namespace

std::vector<BlockFetcher::Run> BlockFetcher::ClaimLocked(Image& image, uint64_t first,
                                                         uint64_t last) {
  std::vector<Run> runs;
  if (image.state() == CacheState::kCorrupt) return runs;
  const uint64_t per_request = blocks_per_request();
  const uint64_t no = image.no;
  for (uint64_t i = first; i <= last && i < image.nblocks; ++i) {
    if (image.present[i] || !d_.flights->Claim({no, i})) continue;
    AddToRuns(&runs, i, per_request);
  }
  return runs;
}

Status BlockFetcher::Fetch(const ImagePtr& image, uint64_t no, uint64_t first, uint64_t count,
                           const SourcePtr& upstream, FetchWhy why, BlockData* first_block,
                           const EachBlock& each) {
  return Request(image, no, first, count, upstream, why, first_block, each, nullptr);
}

Status BlockFetcher::Stream(const ImagePtr& image, uint64_t no, uint64_t first,
                            const SourcePtr& upstream, BlockPacer* pacer) {
  if (first >= image->nblocks) return Status::Ok();
  return Request(image, no, first, image->nblocks - first, upstream, FetchWhy::kReadahead, nullptr,
                 nullptr, pacer);
}

Status BlockFetcher::Request(const ImagePtr& image, uint64_t no, uint64_t first, uint64_t count,
                             const SourcePtr& upstream, FetchWhy why, BlockData* first_block,
                             const EachBlock& each, BlockPacer* pacer) {
  d_.images->EnsureRecord(*image);
  FetchRequest request(d_, image, no, first, count, why, each, pacer,
                       [&](bool added) { hooks_.fetched(image, why, added); });
  Status status = request.Receive(*upstream);
  if (status.IsNotSupported() && request.arrived() == 0) {
    // The source reads only whole: a stream of the image completes these flights.
    {
      MutexLock lock(&image->mu);
      image->whole_only = true;
    }
    if (pacer) AbandonUnarrived(image, no, first, request.arrived(), request.claimed_end(), status);
    hooks_.whole_only(image, upstream, why == FetchWhy::kPrefetch ? why : FetchWhy::kReadahead);
    return status;
  }
  Count(*image, why, status, request.received_bytes(), request.delivered(), request.us());
  if (!status.ok() && pacer) {
    // A stream's block that never came is fetched again by whoever waits for it.
    AbandonUnarrived(image, no, first, request.arrived(), request.claimed_end(), status);
  } else if (!status.ok()) {
    FailUnarrived(image, no, first, request.claimed_end(), request.arrived(), status);
  }
  image->changed.SignalAll();
  hooks_.fetched(image, why, request.added());
  if (first_block && status.ok()) *first_block = request.TakeFirst();
  return status;
}

void BlockFetcher::AbandonUnarrived(const ImagePtr& image, uint64_t no, uint64_t first,
                                    uint64_t arrived, uint64_t claimed_end, const Status& status) {
  LOG_DEBUG("cache: stream of image %s ended at block %llu: %s", image->id.c_str(),
            static_cast<unsigned long long>(first + arrived), status.ToString().c_str());
  MutexLock lock(&image->mu);
  for (uint64_t k = arrived; k < claimed_end; ++k) {
    d_.flights->Abandon({no, first + k});
  }
}

void BlockFetcher::Count(Image& image, FetchWhy why, const Status& status, uint64_t bytes,
                         uint64_t count, uint64_t us) {
  CacheCounters* counters[] = {&image.counters, &d_.metrics->totals};
  for (CacheCounters* c : counters) {
    c->fetch_requests.fetch_add(1, std::memory_order_relaxed);
    c->fetch_us.fetch_add(us, std::memory_order_relaxed);
    if (!status.ok()) {
      c->fetch_errors.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    c->bytes_fetched.fetch_add(bytes, std::memory_order_relaxed);
    auto& kind = why == FetchWhy::kDemand      ? c->misses
                 : why == FetchWhy::kReadahead ? c->readahead_blocks
                                               : c->prefetch_blocks;
    kind.fetch_add(count, std::memory_order_relaxed);
  }
  d_.metrics->RecordLatency(us);
}

void BlockFetcher::FailUnarrived(const ImagePtr& image, uint64_t no, uint64_t first, uint64_t count,
                                 uint64_t arrived, const Status& status) {
  LOG_DEBUG("cache: fetch of image %s blocks %llu+%llu failed: %s", image->id.c_str(),
            static_cast<unsigned long long>(first), static_cast<unsigned long long>(count),
            status.ToString().c_str());
  MutexLock lock(&image->mu);  // with it, a waiter of image->changed misses no wake-up
  for (uint64_t k = arrived; k < count; ++k) d_.flights->Fail({no, first + k}, status);
}

}  // namespace glancefs::cache
