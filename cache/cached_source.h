// The cached byte source: the decorator the file system reads an image through (byte_source.h
// stacks it between the backend's source and the format decoders), and BlockReader, the path
// of one block: the memory tier, a flight already fetching it, the store, or the backend.
//
// A read is served block by block. A block in the memory tier is served without a lock. A block
// in flight is waited for (single flight, flight_table.h). A stored block is read from the store
// (checked; a damaged one is dropped, counted and fetched again, never served); a sequential
// reader's stored blocks come in runs of up to 256 KiB, one store request. A missing block is
// fetched with the rest of the read's missing blocks in one request (block_fetcher.h); of a
// whole-only image, by waiting for a stream of it (whole_streamer.h). A source whose image was
// replaced by a newer version (retired) reads around the cache.
//
// Sequential readers get read-ahead: each source has a ReadaheadWindow (readahead_window.h)
// under its lock. Over a source that PrefersOneStream, the window's first fetch starts a
// stream (sequential_stream.h) that the reader then paces, and a jump stops it. Otherwise
// (or when enough streams run) what the window asks is claimed at once (so a reader arriving
// first waits for it rather than fetching it again) and fetched on the fetch threads in
// ranged requests, at most readahead_requests per image in flight. The window's stored blocks
// are claimed the same way and loaded into the memory tier on those threads, 1 MiB per store
// request: a reader of a cached image (after a remount) finds them there, and its FUSE threads
// only reply.
//
// Thread-safe. Locks: CachedSource::mu_ (the window) is ACQUIRED_BEFORE Image::mu (read-ahead is
// scheduled under both); BlockReader holds Image::mu only between store and network calls,
// never across one.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "cache/block_fetcher.h"
#include "cache/image_table.h"
#include "cache/readahead_window.h"
#include "cache/sequential_stream.h"
#include "cache/stored_blocks.h"
#include "cache/whole_streamer.h"
#include "fs/base/byte_source.h"
#include "fs/base/mutex.h"

namespace glancefs::cache {

class CacheMetrics;

struct ReaderDeps {
  FlightTable* flights;
  MemoryTier* memory;
  BlockPool* buffers;
  StoredBlocks* stored;
  ImageTable* images;
  BlockFetcher* fetcher;
  WholeImageStreamer* streamer;
  CacheMetrics* metrics;
  WorkPool* pool;  // read-ahead runs here
  const CacheOptions* options;
  std::function<int64_t()> now;
};

class BlockReader {
 public:
  explicit BlockReader(const ReaderDeps& deps) : d_(deps) {}

  // Block `index` of `image`. A miss fetches the missing blocks up to `want_last` (one request)
  // with it; a block read from the store brings the stored blocks up to `disk_last` into memory
  // with it (one store request).
  Result<BlockData> Get(const ImagePtr& image, uint64_t index, uint64_t want_last,
                        uint64_t disk_last, const SourcePtr& upstream) EXCLUDES(image->mu);
  // Waits until block `index` is no longer being fetched (if it is), whatever the outcome.
  void AwaitFlight(const Image& image, uint64_t index);
  // Claims blocks [first, last] and, on the pool, loads the stored ones into memory and fetches
  // the missing ones in requests of per_request blocks. Returns one past the last block
  // scheduled.
  uint64_t ScheduleReadahead(const ImagePtr& image, const SourcePtr& upstream, uint64_t first,
                             uint64_t last, uint64_t per_request) EXCLUDES(image->mu);
  // Starts a stream of `image` from the first block at or after `first` that is neither stored
  // nor in flight, for a reader at byte `next` reading `window` ahead (sequential_stream.h);
  // null when that window has no such block, the source prefers ranges, the image is read
  // whole or retired, or enough streams run (then read ahead with ScheduleReadahead).
  std::shared_ptr<SequentialStream> StartStream(const ImagePtr& image, const SourcePtr& upstream,
                                                uint64_t first, uint64_t next, uint64_t window)
      EXCLUDES(image->mu);
  const ReaderDeps& deps() const { return d_; }

 private:
  Status CorruptLocked(const Image& image) REQUIRES(image.mu);
  // The last block of the run to read from the store with block `key`.
  uint64_t StoredRunLocked(Image& image, BlockKey key, uint64_t disk_last) REQUIRES(image.mu);
  Result<BlockData> LoadStored(Image& image, BlockKey key, uint64_t last);
  // A stored block failed to load: dropped (to be fetched again), and counted if damaged.
  void Damaged(Image& image, BlockKey key, const Status& status) EXCLUDES(image.mu);
  Result<BlockData> ReadAround(const Image& image, uint64_t index, ByteSource& upstream);
  // Claims the blocks of [first, last] that are stored but neither in memory nor in flight,
  // in runs for LoadAhead.
  std::vector<BlockFetcher::Run> ClaimStoredLocked(Image& image, uint64_t first, uint64_t last)
      REQUIRES(image.mu);
  // Loads a claimed run of stored blocks into the memory tier and lands their flights; a block
  // absent or damaged is abandoned to its readers.
  void LoadAhead(const Image& image, uint64_t no, uint64_t first, uint64_t count);
  Result<BlockData> FetchRuns(const ImagePtr& image, uint64_t no, uint64_t index,
                              const std::vector<BlockFetcher::Run>& runs,
                              const SourcePtr& upstream);

  const ReaderDeps d_;
  std::atomic<int> streams_{0};  // running
};

class CachedSource final : public ByteSource {
 public:
  CachedSource(BlockReader* reader, ImagePtr image, SourcePtr upstream);
  ~CachedSource() override;

  uint64_t size() const override { return image_->size; }
  uint64_t allocated_bytes() const override { return upstream_->allocated_bytes(); }
  Result<Extent> MapExtent(uint64_t off) override { return upstream_->MapExtent(off); }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override;
  // Fetches the missing blocks of [off, off + n) on the fetch threads (read-ahead).
  void WillNeed(uint64_t off, uint64_t n) override;

 private:
  using Piece = std::function<void(const BlockData&, const char*, size_t)>;
  // Calls piece(block, data, len) for the bytes [off, off + n) in order, block by block.
  Status ForEachBlock(uint64_t off, size_t n, const Piece& piece) EXCLUDES(mu_);
  // Feeds the window; schedules what it asks. Whether the read continues a sequential stream.
  bool Readahead(uint64_t off, size_t n) EXCLUDES(mu_);

  BlockReader* const reader_;
  const ImagePtr image_;
  const SourcePtr upstream_;

  Mutex mu_ ACQUIRED_BEFORE(Image::mu);
  ReadaheadWindow window_ GUARDED_BY(mu_);
  // The stream serving this source's sequential reader, if any, and that reader's window: its
  // reads follow the stream; reads elsewhere (a decoder's tables) go to window_ and leave it be.
  std::shared_ptr<SequentialStream> stream_ GUARDED_BY(mu_);
  std::optional<ReadaheadWindow> stream_window_ GUARDED_BY(mu_);
  uint64_t stream_begin_ GUARDED_BY(mu_) = 0;  // the byte the stream started at
  int reads_elsewhere_ GUARDED_BY(mu_) = 0;    // in a row, since the stream's reader last read
};

}  // namespace glancefs::cache
