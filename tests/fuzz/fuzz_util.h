// What every decoder fuzzer does with a decoder that opened: reads at a few offsets (the start,
// a third, past the middle, the last 4 KiB), each twice (the second from whatever the decoder
// kept warm), and walks up to 64 extents, so that reads and maps of hostile tables run under
// ASan and UBSan.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fs/base/byte_source.h"

namespace glancefs::fuzz {

// `pinned`: also read each piece with ReadPinned (for decoders that pin).
inline void ExerciseReads(ByteSource& src, bool pinned = false) {
  static std::vector<char> buf(1 << 18);
  const uint64_t size = src.size();
  for (uint64_t off : {uint64_t{0}, size / 3, size / 2 + 777, size > 4096 ? size - 4096 : 0}) {
    if (off >= size) continue;
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
    (void)src.ReadAt(off, n, buf.data());
    (void)src.ReadAt(off, std::min<size_t>(n, 1000), buf.data());
    if (pinned) {
      std::vector<PinnedSlice> pieces;
      (void)src.ReadPinned(off, n, &pieces);
    }
  }
  uint64_t off = 0;
  for (int i = 0; i < 64 && off < size; ++i) {
    auto e = src.MapExtent(off);
    if (!e.ok() || e->length == 0) break;
    off += e->length;
  }
}

}  // namespace glancefs::fuzz
