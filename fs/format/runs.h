// Runs: the read and extent loops every decoder shares, over the decoder's own map.
//
// A decoder maps a guest offset to a run: the longest stretch from there that its allocation
// map describes one way (a hole, zeros, bytes stored contiguously in the file, a compressed
// grain). These helpers walk a request run by run; the decoder says, per run, what to append or
// which kind of extent it is. They hold no state and read nothing themselves, so they are as
// thread-safe as the callbacks given to them.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "fs/base/byte_source.h"
#include "fs/format/format.h"

namespace glancefs::format {

// OutOfRange "<format>: read past the virtual size" unless the `n` bytes at `off` lie within
// [0, virtual_size).
inline Status CheckRead(const char* format, uint64_t off, uint64_t n, uint64_t virtual_size) {
  if (RangeWithin(off, n, virtual_size)) return Status::Ok();
  return Status::OutOfRange(std::string(format) + ": read past the virtual size");
}

// Appends `len` bytes of zeros to *out, as pieces of a static zero page.
inline void PinZeros(uint64_t len, std::vector<PinnedSlice>* out) {
  static const char kZeros[64 << 10] = {};
  for (uint64_t left = len; left > 0;) {
    size_t take = static_cast<size_t>(std::min<uint64_t>(left, sizeof kZeros));
    out->push_back({kZeros, take, nullptr});
    left -= take;
  }
}

// The most pieces one pinned read may take: a reply is one writev, so stay well under IOV_MAX.
inline constexpr size_t kMaxPinnedPieces = 512;

// The loop of a decoder's ReadPinned over the `n` bytes at guest `off`: pin_run(off, n) appends
// the pieces of the run at `off` (at most n bytes) to *out and returns the run's length (> 0), or
// a Status. On any error *out is left as it was found; so it is, with NotSupported
// ("<format>: read in too many pieces"), for a read of more than kMaxPinnedPieces pieces.
// REQUIRES: the caller has checked the range (CheckRead).
template <typename PinRun>  // Result<uint64_t>(uint64_t off, uint64_t n)
Status PinRuns(const char* format, uint64_t off, size_t n, std::vector<PinnedSlice>* out,
               PinRun&& pin_run) {
  const size_t had = out->size();
  auto give_up = [&](Status s) {
    out->resize(had);
    return s;
  };
  while (n > 0) {
    Result<uint64_t> len = pin_run(off, n);
    if (!len.ok()) return give_up(len.status());
    if (out->size() - had > kMaxPinnedPieces) {
      return give_up(Status::NotSupported(std::string(format) + ": read in too many pieces"));
    }
    off += *len;
    n -= *len;
  }
  return Status::Ok();
}

// The extent at guest `off` (< size): extent_at(off, size - off) -- the run at `off` as an
// Extent -- merged with the runs that follow while they have its kind. At most 4096 runs are
// merged, so one call stays cheap on a huge image; the caller asks again from the end.
template <typename ExtentAt>  // Result<Extent>(uint64_t off, uint64_t max_len)
Result<Extent> MergeRuns(uint64_t off, uint64_t size, ExtentAt&& extent_at) {
  GLANCEFS_ASSIGN_OR_RETURN(Extent extent, extent_at(off, size - off));
  for (int i = 0; i < 4096 && extent.offset + extent.length < size; ++i) {
    uint64_t next_off = extent.offset + extent.length;
    GLANCEFS_ASSIGN_OR_RETURN(Extent next, extent_at(next_off, size - next_off));
    if (next.kind != extent.kind) break;
    extent.length += next.length;
  }
  return extent;
}

}  // namespace glancefs::format
