#include "cache/cached_source.h"

#include <cstring>

#include "cache/cache_metrics.h"
#include "fs/base/log.h"

namespace glancefs::cache {
namespace {

// A sequential reader's stored blocks are read in runs of up to this many bytes.
constexpr uint64_t kStoreLoadRunBytes = 256 << 10;
// Read-ahead loads a sequential reader's stored blocks into memory in runs of up to this many
// bytes (one store request each), so the reader's FUSE threads only reply.
constexpr uint64_t kStoreLoadAheadBytes = 1 << 20;
// A read-ahead task starting at a stored block covers at most this many bytes, so that
// several tasks load a cached image's window at once.
constexpr uint64_t kStoreTaskBytes = 4 << 20;
uint64_t StoreTaskBlocks(const Image& image) {
  return std::max<uint64_t>(1, kStoreTaskBytes / image.block_size);
}
// A stream's reader has left it after this many reads in a row elsewhere.
constexpr int kLeftAfterReads = 8;

}  // namespace

Result<BlockData> BlockReader::Get(const ImagePtr& image, uint64_t index, uint64_t want_last,
                                   uint64_t disk_last, const SourcePtr& upstream) {
  if (image->corrupt()) {
    MutexLock lock(&image->mu);
    return CorruptLocked(*image);
  }
  if (BlockData b = d_.memory->Lookup({image->no.load(), index})) {
    d_.metrics->Add(image->counters, &CacheCounters::hits_memory);
    return b;
  }
  MutexLock lock(&image->mu);
  for (;;) {
    if (image->state() == CacheState::kCorrupt) return CorruptLocked(*image);
    const BlockKey key{image->no.load(), index};  // an eviction renumbers the image
    if (FlightTable::Ticket flight = d_.flights->Find(key)) {
      lock.Unlock();
      Result<BlockData> outcome = FlightTable::Wait(flight);
      if (outcome.ok()) d_.metrics->Add(image->counters, &CacheCounters::hits_memory);
      if (outcome.ok() || !FlightTable::IsAbandoned(outcome.status())) return outcome;
      lock.Lock();  // a stream ended before the block: fetch it
      continue;
    }
    if (image->present[index]) {
      const uint64_t last = StoredRunLocked(*image, key, disk_last);
      lock.Unlock();
      auto block = LoadStored(*image, key, last);
      if (block.ok()) return block;
      Damaged(*image, key, block.status());
      lock.Lock();
      continue;
    }
    if (image->whole_only) {
      if (image->retired) {  // replaced since the read began: read around the cache
        lock.Unlock();
        return ReadAround(*image, index, *upstream);
      }
      // Only a stream of the whole image brings it: wait for it to pass.
      d_.fetcher->ClaimLocked(*image, index, index);
      d_.streamer->StartLocked(image, upstream, FetchWhy::kReadahead);
      continue;
    }
    const uint64_t last = std::min(want_last, index + d_.fetcher->blocks_per_request() - 1);
    auto runs = d_.fetcher->ClaimLocked(*image, index, last);
    lock.Unlock();
    Result<BlockData> wanted = FetchRuns(image, key.image_no, index, runs, upstream);
    if (wanted.ok() || !wanted.status().IsNotSupported()) return wanted;
    lock.Lock();  // whole-only: the flights wait for the stream
  }
}

Status BlockReader::CorruptLocked(const Image& image) {
  return Status::Corruption("image " + image.id + " failed verification: " + image.reason);
}

uint64_t BlockReader::StoredRunLocked(Image& image, BlockKey key, uint64_t disk_last) {
  // With it, the stored blocks after it up to disk_last that are neither in memory nor in
  // flight: one request to the store.
  uint64_t last = key.index;
  while (last < disk_last && last + 1 < image.nblocks && image.present[last + 1] &&
         !d_.flights->Has({key.image_no, last + 1}) &&
         !d_.memory->Lookup({key.image_no, last + 1})) {
    ++last;
  }
  return last;
}

Result<BlockData> BlockReader::LoadStored(Image& image, BlockKey key, uint64_t last) {
  auto load = [&]() -> Result<BlockData> {
    if (last <= key.index) return d_.stored->Load(key, image.BlockLen(key.index));
    std::vector<size_t> lens;
    for (uint64_t i = key.index; i <= last; ++i) lens.push_back(image.BlockLen(i));
    return d_.stored->LoadRun(key, lens);
  };
  Result<BlockData> block = load();
  if (!block.ok()) return block;
  d_.memory->Insert(key, *block);
  d_.metrics->Add(image.counters, &CacheCounters::hits_disk);
  return block;
}

void BlockReader::Damaged(Image& image, BlockKey key, const Status& status) {
  PendingRecord record;
  {
    MutexLock lock(&image.mu);
    if (image.no != key.image_no || !image.present[key.index]) return;
    if (!status.IsNotFound()) {
      d_.metrics->Add(image.counters, &CacheCounters::corrupt_blocks);
      LOG_WARNING("cache: image %s block %llu is damaged (%s): fetching it again", image.id.c_str(),
                  static_cast<unsigned long long>(key.index), status.message().c_str());
    }
    record = d_.images->DropBlockLocked(image, key.index);
  }
  d_.images->Commit(image, record);
}

Result<BlockData> BlockReader::ReadAround(const Image& image, uint64_t index,
                                          ByteSource& upstream) {
  std::shared_ptr<Block> block = d_.buffers->Allocate(image.BlockLen(index));
  if (!block) return Status::IOError("out of memory for a cache block");
  GLANCEFS_RETURN_IF_ERROR(
      upstream.ReadAt(index * image.block_size, block->size(), block->mutable_data()));
  return BlockData(std::move(block));
}

Result<BlockData> BlockReader::FetchRuns(const ImagePtr& image, uint64_t no, uint64_t index,
                                         const std::vector<BlockFetcher::Run>& runs,
                                         const SourcePtr& upstream) {
  // The first run starts at `index` (neither stored nor in flight); the others are the rest
  // of this read, claimed so they must be fetched.
  Status status;
  BlockData wanted;
  for (const auto& [first, count] : runs) {
    Status s = d_.fetcher->Fetch(image, no, first, count, upstream, FetchWhy::kDemand,
                                 first == index ? &wanted : nullptr);
    if (first == index) status = s;
  }
  if (!status.ok()) return status;
  return wanted;
}

void BlockReader::AwaitFlight(const Image& image, uint64_t index) {
  const BlockKey key{image.no.load(), index};
  // A block in the memory tier has arrived: no lock for a read served from memory.
  if (d_.memory->Lookup(key)) return;
  d_.flights->Await(key);
}

std::vector<BlockFetcher::Run> BlockReader::ClaimStoredLocked(Image& image, uint64_t first,
                                                              uint64_t last) {
  std::vector<BlockFetcher::Run> runs;
  const uint64_t per_run = std::max<uint64_t>(1, kStoreLoadAheadBytes / image.block_size);
  const uint64_t no = image.no;
  for (uint64_t i = first; i <= last && i < image.nblocks; ++i) {
    if (!image.present[i] || d_.memory->Lookup({no, i}) || !d_.flights->Claim({no, i})) continue;
    BlockFetcher::AddToRuns(&runs, i, per_run);
  }
  return runs;
}

void BlockReader::LoadAhead(const Image& image, uint64_t no, uint64_t first, uint64_t count) {
  std::vector<size_t> lens;
  for (uint64_t i = first; i < first + count; ++i) lens.push_back(image.BlockLen(i));
  std::vector<BlockData> run = d_.stored->LoadAll({no, first}, lens);
  for (uint64_t i = 0; i < count; ++i) {
    const BlockKey key{no, first + i};
    if (!run[i]) {
      // Absent or damaged: its readers load it themselves, and judge it (Damaged).
      d_.flights->Abandon(key);
      continue;
    }
    d_.memory->Insert(key, run[i]);
    d_.flights->Land(key, run[i]);
  }
}

uint64_t BlockReader::ScheduleReadahead(const ImagePtr& image, const SourcePtr& upstream,
                                        uint64_t first, uint64_t last, uint64_t per_request) {
  MutexLock lock(&image->mu);
  if (image->retired || image->whole_only) return last + 1;  // a stream reads ahead of those
  uint64_t next = first;
  while (next <= last && next < image->nblocks) {
    if (image->readahead_tasks >= d_.options->readahead_requests) break;
    uint64_t end = std::min(last, next + per_request - 1);
    // Stored blocks load faster than a reader replies only when several tasks load them.
    if (image->present[next]) end = std::min(end, next + StoreTaskBlocks(*image) - 1);
    // Claimed here, not in the task: a reader arriving before the task runs waits for these
    // flights instead of fetching the same blocks in small demand requests (or loading the
    // same stored ones).
    auto loads = ClaimStoredLocked(*image, next, end);
    auto runs = d_.fetcher->ClaimLocked(*image, next, end);
    next = end + 1;
    if (runs.empty() && loads.empty()) continue;
    ++image->readahead_tasks;
    d_.pool->Submit([this, image, upstream, no = image->no.load(), loads = std::move(loads),
                     runs = std::move(runs)] {
      // In the order the reader will want them: stored runs, then the network's.
      for (const auto& [a, count] : loads) LoadAhead(*image, no, a, count);
      for (const auto& [a, count] : runs) {
        // A failed read-ahead fails its blocks' flights: their waiting readers get the error,
        // and a later reader fetches them again.
        d_.fetcher->Fetch(image, no, a, count, upstream, FetchWhy::kReadahead, nullptr)
            .IgnoreError();
      }
      MutexLock task_lock(&image->mu);
      --image->readahead_tasks;
    });
  }
  return next;
}

std::shared_ptr<SequentialStream> BlockReader::StartStream(const ImagePtr& image,
                                                           const SourcePtr& upstream,
                                                           uint64_t first, uint64_t next,
                                                           uint64_t window) {
  if (!upstream->PrefersOneStream()) return nullptr;
  uint64_t no;
  {
    MutexLock lock(&image->mu);
    if (image->retired || image->whole_only || image->state() == CacheState::kCorrupt) {
      return nullptr;
    }
    no = image->no;
    // From the window's first block missing: a cached window asks nothing of the network.
    const uint64_t end =
        std::min(image->nblocks, (next + window + image->block_size - 1) / image->block_size);
    while (first < end && (image->present[first] || d_.flights->Has({no, first}))) ++first;
    if (first >= end) return nullptr;
  }
  const int most = std::max(1, d_.options->fetch_threads / 2);  // the rest read ahead in ranges
  if (streams_.fetch_add(1) >= most) {
    streams_.fetch_sub(1);
    return nullptr;
  }
  auto stream = std::make_shared<SequentialStream>(d_.fetcher, image, no, upstream, first,
                                                   d_.fetcher->deps().closing);
  stream->Follow(next, window);  // claims its first window: a reader there first waits for it
  if (!d_.pool->Submit([this, stream] {
        stream->Run();
        streams_.fetch_sub(1);
      })) {
    stream->Abandon();  // the cache is closing
    streams_.fetch_sub(1);
    return nullptr;
  }
  return stream;
}

CachedSource::CachedSource(BlockReader* reader, ImagePtr image, SourcePtr upstream)
    : reader_(reader),
      image_(std::move(image)),
      upstream_(std::move(upstream)),
      window_(ReadaheadConfig{
          reader->deps().options->readahead_initial, reader->deps().options->readahead_max,
          reader->deps().options->request_bytes, image_->block_size, image_->size}) {}

CachedSource::~CachedSource() {
  MutexLock lock(&mu_);
  if (stream_) stream_->Stop();
}

Status CachedSource::ReadAt(uint64_t off, size_t n, char* dst) {
  if (image_->retired) return upstream_->ReadAt(off, n, dst);
  return ForEachBlock(off, n, [&](const BlockData&, const char* data, size_t len) {
    std::memcpy(dst, data, len);
    dst += len;
  });
}

Status CachedSource::ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
  if (image_->retired) return ByteSource::ReadPinned(off, n, out);
  size_t had = out->size();
  Status s = ForEachBlock(off, n, [&](const BlockData& block, const char* data, size_t len) {
    out->push_back({data, len, block});
  });
  if (!s.ok()) out->resize(had);
  return s;
}

void CachedSource::WillNeed(uint64_t off, uint64_t n) {
  if (image_->retired || n == 0 || off >= image_->size) return;
  const uint64_t bs = image_->block_size;
  const uint64_t first = off / bs;
  const uint64_t last = (off + std::min(n, image_->size - off) - 1) / bs;
  reader_->ScheduleReadahead(image_, upstream_, first, last, last - first + 1);
}

Status CachedSource::ForEachBlock(uint64_t off, size_t n, const Piece& piece) {
  if (off > image_->size || n > image_->size - off) {
    return Status::OutOfRange("image " + image_->id + ": read past the end");
  }
  if (n == 0) return Status::Ok();
  const uint64_t bs = image_->block_size;
  const uint64_t first = off / bs;
  const uint64_t last = (off + n - 1) / bs;
  // A sequential reader's stored blocks are read from the store in runs (one request each),
  // a random reader's one by one: it would not use the rest.
  const bool sequential = Readahead(off, n);
  const uint64_t disk_last =
      std::min(image_->nblocks - 1, sequential ? last + kStoreLoadRunBytes / bs : last);
  image_->last_access.store(reader_->deps().now(), std::memory_order_relaxed);
  // Blocks of a request arrive in order: waiting for this read's last one first makes one
  // wake-up of the reader where waiting block by block at the head of a stream made one per
  // block.
  if (last > first) reader_->AwaitFlight(*image_, last);
  size_t done = 0;
  for (uint64_t index = first; index <= last; ++index) {
    GLANCEFS_ASSIGN_OR_RETURN(BlockData block,
                              reader_->Get(image_, index, last, disk_last, upstream_));
    uint64_t from = off + done - index * bs;
    size_t len = static_cast<size_t>(std::min<uint64_t>(n - done, block->size() - from));
    piece(block, block->data() + from, len);
    done += len;
  }
  return Status::Ok();
}

bool CachedSource::Readahead(uint64_t off, size_t n) {
  MutexLock lock(&mu_);
  if (stream_ && stream_->done()) {  // it ended by itself: its reader goes on with the window
    window_ = *stream_window_;
    window_.ForgetAhead();
    stream_.reset();
  }
  if (stream_ && stream_window_->Continues(off)) {
    reads_elsewhere_ = 0;
    stream_window_->OnRead(off, n);
    stream_->Follow(stream_window_->next(), stream_window_->window());
    return true;
  }
  if (stream_ && off >= stream_begin_ && off < stream_window_->next()) {
    // Behind the stream's reader, where the stream has been: a read of its reader that the
    // kernel's read-ahead and several FUSE threads delivered late.
    reads_elsewhere_ = 0;
    return true;
  }
  ++reads_elsewhere_;
  ReadaheadWindow::Plan plan = window_.OnRead(off, n);
  if (!plan.fetch) return plan.sequential;
  // A sequential run here. The stream moves to it once its reader has left the old one (a
  // decoder's table read between data reads is not leaving); until then it reads ahead in ranges.
  if (stream_ && reads_elsewhere_ >= kLeftAfterReads) {
    LOG_DEBUG("cache: image %s: the stream's reader left it; at %llu now", image_->id.c_str(),
              static_cast<unsigned long long>(off));
    stream_->Stop();
    stream_.reset();
  }
  if (!stream_) {
    // Past this read's own blocks, which it fetches with a ranged request: so the first request
    // for an image is always ranged, and a store that refuses Range is found out at once.
    const uint64_t after_read = (off + n - 1) / image_->block_size + 1;
    stream_ = reader_->StartStream(image_, upstream_, std::max(plan.first_block, after_read),
                                   window_.next(), window_.window());
    if (stream_) {
      stream_window_.emplace(window_);
      stream_begin_ = stream_->first_block() * image_->block_size;
      reads_elsewhere_ = 0;
      return plan.sequential;  // it reads ahead, paced by Follow
    }
  }
  window_.Scheduled(reader_->ScheduleReadahead(image_, upstream_, plan.first_block, plan.last_block,
                                               plan.blocks_per_request));
  return plan.sequential;
}

}  // namespace glancefs::cache
