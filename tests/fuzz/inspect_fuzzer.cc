// libFuzzer target for what sits above the decoders: detection, the verdict on a record (every
// disk_format, bare and OVA), the OVA walk and both views, the synthesized qcow2 included.
// Built and run by scripts/fuzz.sh (clang, ASan + UBSan).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/format/inspect.h"
#include "fs/format/views.h"
#include "tests/fakes/fakes.h"
#include "tests/fuzz/fuzz_util.h"

using glancefs::testing::MemByteSource;
namespace format = glancefs::format;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto src =
      std::make_shared<MemByteSource>(std::string(reinterpret_cast<const char*>(data), size));
  for (const char* disk_format : {"raw", "iso", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "ploop"}) {
    for (const char* container : {"bare", "ova"}) {
      auto verdict = format::Inspect(src, disk_format, container);
      if (!verdict.ok() || !verdict->refused.empty()) continue;
      for (format::View view : {format::View::kRaw, format::View::kQcow2}) {
        auto v = format::OpenView(view, src, disk_format, container);
        if (v.ok() && (*v)->size() < (uint64_t{1} << 40)) glancefs::fuzz::ExerciseReads(**v);
      }
    }
  }
  return 0;
}
