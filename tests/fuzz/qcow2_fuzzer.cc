// libFuzzer target for the qcow2 decoder and the inspector: any bytes, as an image file.
// Built and run by scripts/fuzz.sh (clang, ASan + UBSan), seeded with images from qemu-img.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/format/inspect.h"
#include "fs/format/qcow2_reader.h"
#include "tests/fakes/fakes.h"
#include "tests/fuzz/fuzz_util.h"

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
  glancefs::fuzz::ExerciseReads(**reader);
  return 0;
}
