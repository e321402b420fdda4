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

using glancefs::testing::MemByteSource;
namespace format = glancefs::format;

namespace {

void ReadSome(glancefs::ByteSource& src) {
  static std::vector<char> buf(1 << 16);
  uint64_t size = src.size();
  for (uint64_t off : {uint64_t{0}, size / 2 + 513, size > 4096 ? size - 4096 : 0}) {
    if (off >= size) continue;
    (void)src.ReadAt(off, static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off)),
                     buf.data());
  }
  uint64_t off = 0;
  for (int i = 0; i < 32 && off < size; ++i) {
    auto e = src.MapExtent(off);
    if (!e.ok() || e->length == 0) break;
    off += e->length;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto src =
      std::make_shared<MemByteSource>(std::string(reinterpret_cast<const char*>(data), size));
  for (const char* disk_format : {"raw", "iso", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "ploop"}) {
    for (const char* container : {"bare", "ova"}) {
      auto verdict = format::Inspect(src, disk_format, container);
      if (!verdict.ok() || !verdict->refused.empty()) continue;
      for (format::View view : {format::View::kRaw, format::View::kQcow2}) {
        auto v = format::OpenView(view, src, disk_format, container);
        if (v.ok() && (*v)->size() < (uint64_t{1} << 40)) ReadSome(**v);
      }
    }
  }
  return 0;
}
