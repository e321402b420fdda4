// libFuzzer target for the ploop (Parallels) decoder and the inspector: any bytes, as an
// image file.
// Built and run by scripts/fuzz.sh (clang, ASan + UBSan), seeded with images from qemu-img.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/format/inspect.h"
#include "fs/format/ploop_reader.h"
#include "tests/fakes/fakes.h"
#include "tests/fuzz/fuzz_util.h"

using glancefs::format::PloopLimits;
using glancefs::format::PloopReader;
using glancefs::testing::MemByteSource;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto src =
      std::make_shared<MemByteSource>(std::string(reinterpret_cast<const char*>(data), size));
  (void)glancefs::format::Inspect(*src, "ploop");
  (void)glancefs::format::kPloopFormat.probe(*src);
  (void)glancefs::format::kPloopFormat.open(src);
  PloopLimits limits;
  limits.max_bat_bytes = 1 << 20;  // keep each run small
  auto reader = PloopReader::Open(src, limits);
  if (!reader.ok()) return 0;
  glancefs::fuzz::ExerciseReads(**reader, /*pinned=*/true);
  return 0;
}
