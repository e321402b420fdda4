// The registry: every format glancefs knows, in probe order. Adding a format is one decoder
// file (its FormatSpec) and one line in kFormats below. After the registry: the helpers
// format.h offers decoders.
#include <cstdio>
#include <cstring>
#include <string>

#include "fs/format/format.h"
#include "fs/format/ploop_reader.h"
#include "fs/format/qcow2_reader.h"
#include "fs/format/vdi_reader.h"
#include "fs/format/vhd_reader.h"
#include "fs/format/vhdx_reader.h"
#include "fs/format/vmdk_reader.h"

namespace glancefs::format {
namespace {

Result<bool> ProbeQcow2(ByteSource& src) { return HasMagic(src, 0, std::string_view("QFI\xfb", 4)); }

Result<Decoded> OpenQcow2(std::shared_ptr<ByteSource> file) {
  GLANCEFS_ASSIGN_OR_RETURN(auto reader, Qcow2Reader::Open(std::move(file)));
  const Qcow2Info& q = reader->info();
  Decoded d;
  d.info.format = "qcow2";
  d.info.virtual_size = q.virtual_size;
  d.info.facts = {{"version", std::to_string(q.version)},
                  {"cluster_size", std::to_string(uint64_t{1} << q.cluster_bits)},
                  {"compression", q.compression},
                  {"extended_l2", q.extended_l2 ? "true" : "false"},
                  {"snapshots", std::to_string(q.snapshots)}};
  d.raw = std::move(reader);
  return d;
}

// Known, detected, never decoded: Glance's inspector knows them too.
Result<bool> ProbeQed(ByteSource& src) { return HasMagic(src, 0, std::string_view("QED\0", 4)); }
Result<bool> ProbeLuks(ByteSource& src) {
  return HasMagic(src, 0, std::string_view("LUKS\xba\xbe", 6));
}

// ISO 9660: "CD001" in the first volume descriptor (sector 16). Its raw view is its bytes.
Result<bool> ProbeIso(ByteSource& src) { return HasMagic(src, 0x8001, "CD001"); }
Result<Decoded> OpenIso(std::shared_ptr<ByteSource> file) {
  Decoded d;
  d.info.format = "iso";
  d.info.virtual_size = file->size();
  d.raw = std::move(file);
  return d;
}

const FormatSpec kQcow2Format{"qcow2", ProbeQcow2, OpenQcow2};
const FormatSpec kQedFormat{"qed", ProbeQed, nullptr};
const FormatSpec kLuksFormat{"luks", ProbeLuks, nullptr};
const FormatSpec kIsoFormat{"iso", ProbeIso, OpenIso};

}  // namespace

const std::vector<FormatSpec>& Formats() {
  static const std::vector<FormatSpec> kFormats = {
      kQcow2Format,
      kVmdkFormat,
      kVhdxFormat,
      kVhdFormat,
      kVdiFormat,
      kPloopFormat,
      kQedFormat,
      kLuksFormat,
      kIsoFormat,
  };
  return kFormats;
}

const FormatSpec* FindFormat(std::string_view name) {
  for (const FormatSpec& f : Formats()) {
    if (name == f.name) return &f;
  }
  return nullptr;
}

Result<bool> HasMagic(ByteSource& src, uint64_t off, std::string_view magic) {
  if (off > src.size() || magic.size() > src.size() - off) return false;
  std::string buf(magic.size(), '\0');
  GLANCEFS_RETURN_IF_ERROR(src.ReadAt(off, buf.size(), buf.data()));
  return buf == magic;
}

uint16_t LoadLE16(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>(u[0] | (u[1] << 8));
}
uint32_t LoadLE32(const char* p) { return LoadLE16(p) | (uint32_t{LoadLE16(p + 2)} << 16); }
uint64_t LoadLE64(const char* p) { return LoadLE32(p) | (uint64_t{LoadLE32(p + 4)} << 32); }
uint16_t LoadBE16(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  return static_cast<uint16_t>((u[0] << 8) | u[1]);
}
uint32_t LoadBE32(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  return (uint32_t{u[0]} << 24) | (uint32_t{u[1]} << 16) | (uint32_t{u[2]} << 8) | u[3];
}
uint64_t LoadBE64(const char* p) { return (uint64_t{LoadBE32(p)} << 32) | LoadBE32(p + 4); }

bool RangeWithin(uint64_t off, uint64_t len, uint64_t size) {
  return off <= size && len <= size - off;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

Status CheckInFile(const ByteSource& file, const char* format, const char* what, uint64_t off,
                   uint64_t len) {
  const uint64_t file_size = file.size();
  if (RangeWithin(off, len, file_size)) return Status::Ok();
  return Status::Corruption(std::string(format) + " " + what + " at " + Hex(off) + " (+" +
                            std::to_string(len) + ") is outside the file (" +
                            std::to_string(file_size) + " bytes)");
}

void AppendUtf8(uint32_t c, std::string* out) {
  if (c < 0x80) {
    *out += static_cast<char>(c);
  } else if (c < 0x800) {
    *out += static_cast<char>(0xC0 | (c >> 6));
    *out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    *out += static_cast<char>(0xE0 | (c >> 12));
    *out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (c >> 18));
    *out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

}  // namespace glancefs::format
