#include "fs/format/probe.h"

#include <cstring>
#include <vector>

namespace glancefs::format {
namespace {

// True iff `src` holds `magic` at `off`.
Result<bool> HasMagic(ByteSource& src, uint64_t off, std::string_view magic) {
  if (off > src.size() || magic.size() > src.size() - off) return false;
  std::vector<char> buf(magic.size());
  GLANCEFS_RETURN_IF_ERROR(src.ReadAt(off, buf.size(), buf.data()));
  return std::memcmp(buf.data(), magic.data(), magic.size()) == 0;
}

}  // namespace

Result<std::string> ProbeFormat(ByteSource& src) {
  struct Signature {
    const char* format;
    uint64_t offset;
    std::string_view magic;
  };
  static const Signature kSignatures[] = {
      {"qcow2", 0, std::string_view("QFI\xfb", 4)},
      {"qed", 0, std::string_view("QED\0", 4)},
      {"vmdk", 0, "KDMV"},
      {"vmdk", 0, "# Disk DescriptorFile"},
      {"vhdx", 0, "vhdxfile"},
      {"vhd", 0, "conectix"},
      {"vdi", 0x40, std::string_view("\x7f\x10\xda\xbe", 4)},
      {"luks", 0, std::string_view("LUKS\xba\xbe", 6)},
      {"iso", 0x8001, "CD001"},
  };
  for (const auto& sig : kSignatures) {
    GLANCEFS_ASSIGN_OR_RETURN(bool match, HasMagic(src, sig.offset, sig.magic));
    if (match) return std::string(sig.format);
  }
  // A fixed VHD has its footer only at the end.
  if (src.size() >= 512) {
    GLANCEFS_ASSIGN_OR_RETURN(bool vhd, HasMagic(src, src.size() - 512, "conectix"));
    if (vhd) return std::string("vhd");
  }
  return std::string("raw");
}

}  // namespace glancefs::format
