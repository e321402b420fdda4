// WholeImageStreamer: the one place the cache reads an image whole. A store that cannot seek
// (Glance's rbd, swift, s3 and http stores answer a Range with 400, some with the whole body)
// makes the image whole-only (block_fetcher.h): only a request for all of it, from its first
// byte, brings its blocks. Readers of such an image claim the blocks they want and wait for
// their flights; Start runs one stream of the whole image on a fetch thread, which stores
// every block as it passes and completes those flights, wherever the readers read.
//
// A pass that ends while readers still wait (for blocks it passed before they asked, whose
// store failed, or of a number the image got from an eviction meanwhile) runs again; a pass
// that fails fails the readers it had not reached. Nothing runs for a retired image, or while
// the cache closes (the cache then fails every flight left).
//
// Thread-safe; no lock of its own. Start's callers hold the image's lock (it sets streaming);
// the stream itself runs with none held.
#pragma once

#include <atomic>

#include "cache/block_fetcher.h"
#include "cache/flight_table.h"
#include "cache/image_table.h"
#include "cache/work_pool.h"

namespace glancefs::cache {

class WholeImageStreamer {
 public:
  WholeImageStreamer(BlockFetcher* fetcher, FlightTable* flights, WorkPool* pool,
                     const std::atomic<bool>* closing)
      : fetcher_(fetcher), flights_(flights), pool_(pool), closing_(closing) {}

  // Starts a stream of `image` unless one runs, it is retired, or nothing is missing and no
  // reader waits.
  void StartLocked(const ImagePtr& image, const SourcePtr& upstream, FetchWhy why)
      REQUIRES(image->mu);
  void Start(const ImagePtr& image, const SourcePtr& upstream, FetchWhy why) EXCLUDES(image->mu);

 private:
  // Passes over the whole image until no reader waits for a block of it.
  void Stream(const ImagePtr& image, const SourcePtr& upstream, FetchWhy why) EXCLUDES(image->mu);

  BlockFetcher* const fetcher_;
  FlightTable* const flights_;
  WorkPool* const pool_;
  const std::atomic<bool>* const closing_;
};

}  // namespace glancefs::cache
