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
#include "tests/fuzz/fuzz_util.h"

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
  glancefs::fuzz::ExerciseReads(**reader);
  return 0;
}
