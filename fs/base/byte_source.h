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

class ByteSource {
 public:
  virtual ~ByteSource() = default;

  // The number of readable bytes. Constant for the life of the object.
  virtual uint64_t size() const = 0;

  // Reads exactly n bytes at off into dst. REQUIRES: off + n <= size().
  // A source that cannot deliver all n bytes returns an error, never a short read.
  virtual Status ReadAt(uint64_t off, size_t n, char* dst) = 0;

  // Returns the largest extent that starts at `off` and has one kind.
  // REQUIRES: off < size(). Default: everything is data.
  virtual Result<Extent> MapExtent(uint64_t off) {
    return Extent{off, size() - off, Extent::Kind::kData};
  }

  // Bytes the source keeps allocated (for st_blocks). Default: size().
  virtual uint64_t allocated_bytes() const { return size(); }
};

}  // namespace glancefs
