// BlockFetcher: fetches claimed runs of blocks from the backend into the cache.
//
// A run of missing blocks is claimed (ClaimLocked: a flight per block, flight_table.h) and then
// fetched in one request (ReadScattered), received straight into pooled block buffers taken as
// the bytes arrive (block.h); a stream (Stream) claims each block as its bytes come, as its
// pacer says (sequential_stream.h), and abandons the one it was receiving if it fails. Each block
// is handed to its waiting readers (and the memory tier) as soon as it is in, so a reader follows
// the head of a request; blocks are stored in runs by the store threads while the rest streams in
// (store_writer.h), and a block's flight leaves the table once it is stored. A failed request fails
// the flights of the blocks that never arrived; those that did stay good. The image's record is
// written before its first block is stored.
//
// A source that reads only whole (NotSupported, nothing placed) makes the image whole-only:
// the fetch leaves its flights to a whole-image stream, which the whole_only hook starts
// (whole_streamer.h). After every other request the fetched hook runs: the facade then checks
// whether the image is complete (image_judge.h) and whether the limits hold (eviction).
//
// Thread-safe; holds no lock of its own. Takes Image::mu (then the flight table's) to mark
// blocks stored, never across a store call or the network.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "cache/block.h"
#include "cache/image_table.h"
#include "cache/memory_tier.h"
#include "cache/work_pool.h"
#include "fs/base/byte_source.h"

namespace glancefs::cache {

class CacheMetrics;

enum class FetchWhy { kDemand, kReadahead, kPrefetch };
using SourcePtr = std::shared_ptr<ByteSource>;
// Sees every block of a request as it arrives, in order; false ends the request.
using EachBlock = std::function<bool(const Block&)>;

// Paces a stream (sequential_stream.h): asked, on the receiving thread, before the first byte
// of each block arrives, and may wait there (the connection's flow control then holds the
// server back).
class BlockPacer {
 public:
  enum class Next {
    kClaimed,  // the block is claimed for the stream: it receives, stores and hands it over
    kSkip,     // stored or in flight already: its bytes are dropped
    kEnd,      // the stream ends before it
  };
  virtual ~BlockPacer() = default;
  virtual Next Before(uint64_t index) = 0;
};

struct FetcherDeps {
  BlockStore* store;
  BlockPool* buffers;
  MemoryTier* memory;
  FlightTable* flights;
  ImageTable* images;
  CacheMetrics* metrics;
  WorkPool* store_pool;
  const std::atomic<bool>* closing;  // the cache is closing: requests end at their next block
  uint32_t block_size;
  uint32_t request_bytes;  // the largest request
};

struct FetchHooks {
  // `image` reads only whole: its flights wait for a stream of it.
  std::function<void(const ImagePtr&, const SourcePtr&, FetchWhy)> whole_only;
  // A request ended; `added`: it stored blocks not stored before.
  std::function<void(const ImagePtr&, FetchWhy, bool added)> fetched;
};

class BlockFetcher {
 public:
  BlockFetcher(const FetcherDeps& deps, FetchHooks hooks) : d_(deps), hooks_(std::move(hooks)) {}
  BlockFetcher(const BlockFetcher&) = delete;
  BlockFetcher& operator=(const BlockFetcher&) = delete;

  using Run = std::pair<uint64_t, uint64_t>;  // first block, count
  // Adds block `index` to the last of `runs` if it follows it and that run has fewer than
  // `per_run` blocks, else as a run of its own.
  static void AddToRuns(std::vector<Run>* runs, uint64_t index, uint64_t per_run) {
    if (!runs->empty() && runs->back().first + runs->back().second == index &&
        runs->back().second < per_run) {
      ++runs->back().second;
    } else {
      runs->emplace_back(index, 1);
    }
  }
  // Claims the blocks in [first, last] that are neither stored nor in flight, as runs of at
  // most one request. None for a corrupt image (never fetched again until evicted).
  std::vector<Run> ClaimLocked(Image& image, uint64_t first, uint64_t last) REQUIRES(image.mu);
  // Fetches claimed blocks [first, first + count) of image number `no` and settles their
  // flights; the first block goes to *first_block (if given). NotSupported: whole-only.
  Status Fetch(const ImagePtr& image, uint64_t no, uint64_t first, uint64_t count,
               const SourcePtr& upstream, FetchWhy why, BlockData* first_block,
               const EachBlock& each = nullptr);
  // Streams image number `no` from block `first` to its end in one request, each block claimed
  // (or skipped) as its pacer says just before its bytes arrive, until the pacer ends it (OK).
  // A claimed block that never arrives is abandoned: whoever waits for it fetches it again.
  Status Stream(const ImagePtr& image, uint64_t no, uint64_t first, const SourcePtr& upstream,
                BlockPacer* pacer);
  uint64_t blocks_per_request() const {
    return std::max<uint64_t>(1, d_.request_bytes / d_.block_size);
  }
  const FetcherDeps& deps() const { return d_; }

 private:
  Status Request(const ImagePtr& image, uint64_t no, uint64_t first, uint64_t count,
                 const SourcePtr& upstream, FetchWhy why, BlockData* first_block,
                 const EachBlock& each, BlockPacer* pacer);
  void Count(Image& image, FetchWhy why, const Status& status, uint64_t bytes, uint64_t count,
             uint64_t us);
  // Abandons the flights of blocks [first + arrived, first + claimed_end) of number `no`.
  void AbandonUnarrived(const ImagePtr& image, uint64_t no, uint64_t first, uint64_t arrived,
                        uint64_t claimed_end, const Status& status);
  // Fails the flights of blocks [first + arrived, first + count) of number `no`.
  void FailUnarrived(const ImagePtr& image, uint64_t no, uint64_t first, uint64_t count,
                     uint64_t arrived, const Status& status);

  const FetcherDeps d_;
  const FetchHooks hooks_;
};

}  // namespace glancefs::cache
