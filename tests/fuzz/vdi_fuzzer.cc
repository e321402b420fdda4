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
#include "tests/fuzz/fuzz_util.h"

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
  glancefs::fuzz::ExerciseReads(**reader, /*pinned=*/true);
  return 0;
}
