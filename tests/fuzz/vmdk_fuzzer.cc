// libFuzzer target for the VMDK decoder: any bytes, as an image file. Seed it with small
// images from qemu-img (monolithicSparse, streamOptimized, zeroed_grain=on, a descriptor
// file) and the corpus's iotest-version3*.vmdk; built with clang, ASan + UBSan, as
// scripts/fuzz.sh builds qcow2_fuzzer.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/format/vmdk_reader.h"
#include "tests/fakes/fakes.h"

using glancefs::Extent;
using glancefs::format::kVmdkFormat;
using glancefs::format::VmdkLimits;
using glancefs::format::VmdkReader;
using glancefs::testing::MemByteSource;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto src =
      std::make_shared<MemByteSource>(std::string(reinterpret_cast<const char*>(data), size));
  (void)kVmdkFormat.probe(*src);
  (void)kVmdkFormat.open(src);  // the registry's entry, with its facts
  VmdkLimits limits;
  limits.max_gd_bytes = 1 << 20;  // keep each run small
  limits.gt_cache_bytes = 4096;   // two tables: exercise eviction
  auto reader = VmdkReader::Open(src, limits);
  if (!reader.ok()) return 0;
  uint64_t vsize = (*reader)->size();
  static std::vector<char> buf(1 << 18);
  for (uint64_t off : {uint64_t{0}, vsize / 3, vsize / 2 + 777, vsize > 4096 ? vsize - 4096 : 0}) {
    if (off >= vsize) continue;
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), vsize - off));
    (void)(*reader)->ReadAt(off, n, buf.data());
    (void)(*reader)->ReadAt(off, std::min<size_t>(n, 1000), buf.data());  // a warm grain
  }
  uint64_t off = 0;
  for (int i = 0; i < 64 && off < vsize; ++i) {
    auto e = (*reader)->MapExtent(off);
    if (!e.ok() || e->length == 0) break;
    off += e->length;
  }
  return 0;
}
