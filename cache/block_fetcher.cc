#include "cache/block_fetcher.h"

#include <chrono>

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

// One request's blocks, from the network to the store. Buffers are taken as the bytes arrive
// and let go once stored, so a large request holds only the few blocks between the head of the
// stream and the store. The receiving thread calls SliceFor and OnBlock; store threads call
// StoreBlocks on runs that receiving is done with.
class FetchRequest {
 public:
  FetchRequest(const FetcherDeps& d, const ImagePtr& image, uint64_t no, uint64_t first,
               uint64_t count, FetchWhy why, const EachBlock& each, bool keep_first)
      : d_(d),
        image_(image),
        no_(no),
        first_(first),
        count_(count),
        why_(why),
        each_(each),
        keep_first_(keep_first),
        blocks_(count),
        writer_(d.store_pool, kStoreRunsPending) {}

  uint64_t offset() const { return first_ * d_.block_size; }
  uint64_t length() const {
    return std::min(image_->size, (first_ + count_) * d_.block_size) - offset();
  }

  // The request, and every run it stored. Sets us().
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
    return status;
  }
  uint64_t arrived() const { return arrived_; }
  bool added() const { return added_; }
  uint64_t us() const { return us_; }
  BlockData TakeFirst() { return std::move(blocks_.front()); }

 private:
  IoSlice SliceFor(size_t k) {
    if (ended_ || d_.closing->load(std::memory_order_relaxed)) return {nullptr, 0};  // ends it
    std::shared_ptr<Block> block = d_.buffers->Allocate(image_->BlockLen(first_ + k));
    if (!block) return {nullptr, 0};
    IoSlice slice{block->mutable_data(), block->size()};
    blocks_[k] = std::move(block);
    return slice;
  }

  // Readers first: each block's flight completes as soon as its bytes are in. It stays in the
  // table (done) until its block is stored, so a reader arriving meanwhile takes its data.
  void OnBlock(size_t k) {
    arrived_ = k + 1;  // slices complete in order
    if (each_ && !each_(*blocks_[k])) ended_ = true;
    if (why_ != FetchWhy::kPrefetch) d_.memory->Insert({no_, first_ + k}, blocks_[k]);
    d_.flights->Complete({no_, first_ + k}, blocks_[k]);
    if ((arrived_ - stored_) * d_.block_size >= kStoreRunBytes) StoreRun();
  }

  void StoreRun() {
    if (stored_ == arrived_) return;
    const uint64_t a = stored_, b = arrived_;
    stored_ = arrived_;
    writer_.Submit([this, a, b] { StoreBlocks(a, b); });
  }

  // On a store thread: blocks [a, b) to the store, then marked stored and their flights landed.
  void StoreBlocks(uint64_t a, uint64_t b) {
    Status put = image_->no.load() == no_ ? PutRun(a, b) : Status::Unavailable("evicted");
    {
      MutexLock lock(&image_->mu);
      for (uint64_t k = a; k < b; ++k) {
        // One made after its block arrived (a reader of a whole-only image) is served now.
        d_.flights->Land({no_, first_ + k}, blocks_[k]);
        if (put.ok() && image_->no == no_ && d_.images->AddBlockLocked(*image_, first_ + k)) {
          added_ = true;
        }
      }
    }
    image_->changed.SignalAll();
    for (uint64_t k = a; k < b; ++k) {
      if (k > 0 || !keep_first_) blocks_[k].reset();  // readers have theirs
    }
  }

  Status PutRun(uint64_t a, uint64_t b) {
    std::vector<BlockPut> run;
    run.reserve(b - a);
    for (uint64_t k = a; k < b; ++k) {
      const Block& block = *blocks_[k];
      run.push_back({std::string_view(block.data(), block.size()),
                     BlockCheck({no_, first_ + k}, block.data(), block.size())});
    }
    Status put = d_.store->PutBlocks({no_, first_ + a}, run);
    if (!put.ok()) {
      image_->counters.store_errors.fetch_add(b - a, std::memory_order_relaxed);
      uint64_t before = d_.metrics->totals.store_errors.fetch_add(b - a, std::memory_order_relaxed);
      if (before == 0 || before / 1000 != (before + b - a) / 1000) {  // now and then
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
  const bool keep_first_;
  std::vector<BlockData> blocks_;
  uint64_t arrived_ = 0;  // blocks [stored_, arrived_) have arrived and are not stored yet
  uint64_t stored_ = 0;
  bool ended_ = false;  // each_ said no more
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
    if (!runs.empty() && runs.back().first + runs.back().second == i &&
        runs.back().second < per_request) {
      ++runs.back().second;
    } else {
      runs.emplace_back(i, 1);
    }
  }
  return runs;
}

Status BlockFetcher::Fetch(const ImagePtr& image, uint64_t no, uint64_t first, uint64_t count,
                           const SourcePtr& upstream, FetchWhy why, BlockData* first_block,
                           const EachBlock& each) {
  d_.images->EnsureRecord(*image);
  FetchRequest request(d_, image, no, first, count, why, each, first_block != nullptr);
  Status status = request.Receive(*upstream);
  if (status.IsNotSupported() && request.arrived() == 0) {
    // The source reads only whole: a stream of the image completes these flights.
    {
      MutexLock lock(&image->mu);
      image->whole_only = true;
    }
    hooks_.whole_only(image, upstream, why == FetchWhy::kPrefetch ? why : FetchWhy::kReadahead);
    return status;
  }
  Count(*image, why, status, request.length(), count, request.us());
  if (!status.ok()) FailUnarrived(image, no, first, count, request.arrived(), status);
  image->changed.SignalAll();
  hooks_.fetched(image, why, request.added());
  if (first_block && status.ok()) *first_block = request.TakeFirst();
  return status;
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
