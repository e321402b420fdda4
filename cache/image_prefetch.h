// ImagePrefetch: fetching all of an image into the store (not the memory tier), under a rate
// cap, and verifying it: what the pre-fetch queue (prefetcher.h) and a signature check that
// needs the rest of an image (BlockCache::CheckSignature) ask of the cache.
//
// An image nothing of which is stored yet, with a hash or signature to check, is read in one
// request (a plain GET: the cheapest for Glance, which spends several ms of CPU per request)
// and hashed as each block arrives, while it is in the CPU's cache, so verifying it reads
// nothing back; the rate cap holds the receiver back. Otherwise the missing blocks are claimed
// and fetched in ranged requests, at most readahead_requests in flight, each started once the
// bytes already requested fit the rate cap (rate_limiter.h); blocks readers claimed meanwhile
// are waited for, and those that never landed (a read-ahead stream abandons what its reader
// left) are claimed in another round; then the stored image is checked (image_judge.h). A
// whole-only image is one stream (whole_streamer.h), which the cap does not pace.
//
// Thread-safe; no lock of its own but the in-flight count of one call (a leaf). Waits on the
// image's condition variable (Image::changed) with its lock, never with another held.
#pragma once

#include <cstdint>
#include <functional>

#include "cache/block_fetcher.h"
#include "cache/image_judge.h"
#include "cache/image_table.h"
#include "cache/whole_streamer.h"

namespace glancefs::cache {

struct PrefetchDeps {
  BlockStore* store;
  FlightTable* flights;
  BlockFetcher* fetcher;
  WholeImageStreamer* streamer;
  ImageJudge* judge;
  WorkPool* pool;
  uint32_t block_size;
  uint32_t request_bytes;
  int readahead_requests;  // ranged requests in flight
};

class ImagePrefetch {
 public:
  using Stop = std::function<bool()>;
  explicit ImagePrefetch(const PrefetchDeps& deps) : d_(deps) {}

  // Every block of `image` not stored yet, fetched from `upstream` at most bytes_per_s (0: no
  // cap), then verified. Unavailable as soon as stop() turns true (what was fetched stays);
  // Corruption if the image fails verification.
  Status FetchAll(const ImagePtr& image, const SourcePtr& upstream, const Stop& stop,
                  uint64_t bytes_per_s);

 private:
  // The one-request, hashed-as-it-arrives fetch. NotSupported (nothing done) if it does not
  // apply.
  Status FetchWholeHashed(const ImagePtr& image, const SourcePtr& upstream, const Stop& stop,
                          uint64_t bytes_per_s);
  // Claims and fetches the missing blocks in ranged requests.
  Status FetchRanged(const ImagePtr& image, const SourcePtr& upstream, const Stop& stop,
                     uint64_t bytes_per_s);
  // Waits for the blocks others claimed to land; *missing: the blocks still not stored then.
  // Corruption if the image failed verification meanwhile.
  Status AwaitLanded(const ImagePtr& image, const Stop& stop, uint64_t* missing)
      EXCLUDES(image->mu);
  // Verifies the complete image unless it is verified already, or waits for the pass that runs.
  Status VerifyComplete(const ImagePtr& image) EXCLUDES(image->mu);

  // Rounds of FetchRanged at most, each for the blocks the one before could not settle.
  static constexpr int kRounds = 4;

  const PrefetchDeps d_;
};

}  // namespace glancefs::cache
