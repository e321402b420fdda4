// libFuzzer target for the VDI decoder and the inspector: any bytes, as an image file.
// Built and run by scripts/fuzz.sh (clang, ASan + UBSan), seeded with images from qemu-img.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/format/inspect.h"
#include "fs/format/vdi_reader.h"
#include "tests/fakes/fakes.h"

using glancefs::format::VdiLimits;
using glancefs::format::VdiReader;
using glancefs::testing::MemByteSource;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto src =
      std::make_shared<MemByteSource>(std::string(reinterpret_cast<const char*>(data), size));
  (void)glancefs::format::Inspect(*src, "vdi");
  (void)glancefs::format::kVdiFormat.probe(*src);
  (void)glancefs::format::kVdiFormat.open(src);
  VdiLimits limits;
  limits.max_map_bytes = 1 << 20;  // keep each run small
  auto reader = VdiReader::Open(src, limits);
  if (!reader.ok()) return 0;
  uint64_t vsize = (*reader)->size();
  static std::vector<char> buf(1 << 18);
  for (uint64_t off : {uint64_t{0}, vsize / 3, vsize / 2 + 777, vsize > 4096 ? vsize - 4096 : 0}) {
    if (off >= vsize) continue;
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), vsize - off));
    (void)(*reader)->ReadAt(off, n, buf.data());
    std::vector<glancefs::PinnedSlice> pieces;
    (void)(*reader)->ReadPinned(off, n, &pieces);
  }
  uint64_t off = 0;
  for (int i = 0; i < 64 && off < vsize; ++i) {
    auto e = (*reader)->MapExtent(off);
    if (!e.ok() || e->length == 0) break;
    off += e->length;
  }
  return 0;
}
