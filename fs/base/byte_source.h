// ByteSource: a read-only, fixed-size, random-access byte range. The central seam of glancefs.
//
// Backends (a local file, a Glance image over HTTP), the block cache (a decorator) and the format
// decoders (qcow2 → raw) all implement it and stack like nbdkit filters:
//   FileByteSource | GlanceByteSource → CachedByteSource → Qcow2Reader → read by a view.
// Implementations must be safe for concurrent ReadAt/MapExtent calls from many threads.
// Shared by shared_ptr: several open file handles may read one source.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "fs/base/status.h"

namespace glancefs {

// A run of bytes that share one kind. Holes read as zeros and take no space; kZero is allocated
// (or declared) zeros, which also read as zeros but are not holes for SEEK_HOLE purposes of a
// decoder that knows better. For lseek both kZero and kHole count as holes.
struct Extent {
  enum class Kind { kData, kZero, kHole };
  uint64_t offset = 0;
  uint64_t length = 0;
  Kind kind = Kind::kData;
};

// One piece of a scattered read's destination.
struct IoSlice {
  char* data;
  size_t size;
};

// A piece of a read served from a buffer the source keeps, valid while `pin` is held.
struct PinnedSlice {
  const char* data;
  size_t size;
  std::shared_ptr<const void> pin;
};

class ByteSource {
 public:
  virtual ~ByteSource() = default;

  // The number of readable bytes. Constant for the life of the object.
  virtual uint64_t size() const = 0;

  // Reads exactly n bytes at off into dst. REQUIRES: off + n <= size().
  // A source that cannot deliver all n bytes returns an error, never a short read.
  virtual Status ReadAt(uint64_t off, size_t n, char* dst) = 0;

  // Reads n bytes at off into slices that the caller hands out one at a time: slice_for(i) is
  // called, in order, just before slice i's first byte is placed (so a caller may allocate its
  // buffers as the bytes arrive, not for the whole request up front), and done(i) (if given) as
  // soon as slice i holds its bytes -- before later slices, for a source that streams. A slice
  // once reported is never written again. Slices must add up to n; one with no data (the caller
  // is out of memory) ends the read with an error. For sources where one large request costs
  // much less than several (HTTP): the block cache fetches a run of blocks straight into their
  // buffers and hands each to its readers as it arrives.
  // A source that can only be read whole, from its first byte (an HTTP store that refuses
  // Range), answers NotSupported to a ReadScattered of part of itself, having placed nothing;
  // the caller then reads it whole: ReadScattered(0, size()). Its ReadAt still serves any part.
  // Default: one ReadAt per slice.
  using SliceFor = std::function<IoSlice(size_t index)>;
  using SliceDone = std::function<void(size_t index)>;
  virtual Status ReadScattered(uint64_t off, uint64_t n, const SliceFor& slice_for,
                               const SliceDone& done = nullptr) {
    for (size_t i = 0; n > 0; ++i) {
      IoSlice slice = slice_for(i);
      if (!slice.data || slice.size == 0 || slice.size > n) {
        return Status::IOError("no buffer for a scattered read");
      }
      GLANCEFS_RETURN_IF_ERROR(ReadAt(off, slice.size, slice.data));
      off += slice.size;
      n -= slice.size;
      if (done) done(i);
    }
    return Status::Ok();
  }

  // Advice, as posix_fadvise's WILLNEED: the n bytes at off will be read soon. A source that
  // reads over a network may start fetching them, so that reads a caller must make one after
  // the other (a format probe's first and last bytes) wait for one round trip, not two.
  // Changes no result. Default: nothing.
  virtual void WillNeed(uint64_t off, uint64_t n) { (void)off, (void)n; }

  // Whether one long request from some point on costs this source much less than several
  // ranged ones (HTTP: the server spends CPU per request). The block cache then serves a
  // sequential reader from one stream (cache/sequential_stream.h). Default: no.
  virtual bool PrefersOneStream() const { return false; }

  // ReadScattered into slices given up front.
  Status ReadSlices(uint64_t off, const std::vector<IoSlice>& slices,
                    const SliceDone& done = nullptr) {
    uint64_t n = 0;
    for (const IoSlice& slice : slices) n += slice.size;
    return ReadScattered(
        off, n, [&](size_t i) { return i < slices.size() ? slices[i] : IoSlice{nullptr, 0}; },
        done);
  }

  // Appends the n bytes at off to *out as pieces of buffers the source holds, without a copy:
  // the FUSE adapter replies straight from them. For sources that keep bytes in memory (the
  // block cache). NotSupported (nothing appended): read with ReadAt instead.
  virtual Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
    (void)off, (void)n, (void)out;
    return Status::NotSupported("no pinned reads");
  }

  // Returns the largest extent that starts at `off` and has one kind.
  // REQUIRES: off < size(). Default: everything is data.
  virtual Result<Extent> MapExtent(uint64_t off) {
    return Extent{off, size() - off, Extent::Kind::kData};
  }

  // Bytes the source keeps allocated (for st_blocks). Default: size().
  virtual uint64_t allocated_bytes() const { return size(); }
};

}  // namespace glancefs
