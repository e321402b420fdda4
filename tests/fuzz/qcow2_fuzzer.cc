// libFuzzer target for the qcow2 decoder and the inspector: any bytes, as an image file.
// Built and run by scripts/fuzz.sh (clang, ASan + UBSan), seeded with images from qemu-img.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/format/inspect.h"
#include "fs/format/qcow2_reader.h"
#include "tests/fakes/fakes.h"

using glancefs::Extent;
using glancefs::format::Qcow2Limits;
using glancefs::format::Qcow2Reader;
using glancefs::testing::MemByteSource;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto src =
      std::make_shared<MemByteSource>(std::string(reinterpret_cast<const char*>(data), size));
  (void)glancefs::format::Inspect(*src, "qcow2");
  Qcow2Limits limits;
  limits.max_l1_bytes = 1 << 20;    // keep each run small
  limits.l2_cache_bytes = 1 << 16;  // and exercise eviction
  auto reader = Qcow2Reader::Open(src, limits);
  if (!reader.ok()) return 0;
  uint64_t vsize = (*reader)->size();
  static std::vector<char> buf(1 << 18);
  for (uint64_t off : {uint64_t{0}, vsize / 3, vsize / 2 + 777, vsize > 4096 ? vsize - 4096 : 0}) {
    if (off >= vsize) continue;
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), vsize - off));
    (void)(*reader)->ReadAt(off, n, buf.data());
  }
  uint64_t off = 0;
  for (int i = 0; i < 64 && off < vsize; ++i) {
    auto e = (*reader)->MapExtent(off);
    if (!e.ok() || e->length == 0) break;
    off += e->length;
  }
  return 0;
}
