#include "fs/format/vhd_reader.h"

#include <algorithm>
#include <cstring>

#include "fs/format/runs.h"

namespace glancefs::format {
namespace {

constexpr uint64_t kSector = 512;
constexpr uint64_t kFooterBytes = 512;
constexpr uint64_t kDynHeaderBytes = 512;  // what qemu reads; the fields used lie in it
constexpr uint64_t kDynHeaderFullBytes = 1024;

// Footer fields (spec "Hard Disk Footer Format"), big-endian.
constexpr size_t kFooterDataOffset = 16;
constexpr size_t kFooterCreatorApp = 28;
constexpr size_t kFooterCreatorVersion = 32;
constexpr size_t kFooterCreatorOs = 36;
constexpr size_t kFooterCurrentSize = 48;
constexpr size_t kFooterGeometry = 56;
constexpr size_t kFooterDiskType = 60;
constexpr size_t kFooterChecksum = 64;

// Dynamic header fields.
constexpr size_t kDynTableOffset = 16;
constexpr size_t kDynMaxTableEntries = 28;
constexpr size_t kDynBlockSize = 32;
constexpr size_t kDynParentName = 64;
constexpr size_t kDynParentNameBytes = 512;

constexpr uint32_t kTypeFixed = 2;
constexpr uint32_t kTypeDynamic = 3;
constexpr uint32_t kTypeDifferencing = 4;

constexpr uint32_t kUnallocated = 0xFFFFFFFF;
constexpr uint64_t kMaxSectors = 0xff000000;  // qemu's VHD_MAX_SECTORS: 2040 GiB
constexpr uint64_t kMaxGeometrySectors = 65535ULL * 16 * 255;

bool HasCookie(const char* footer) { return std::memcmp(footer, "conectix", 8) == 0; }

// One's complement of the byte sum, the checksum field counted as zeros.
bool ChecksumOk(const char* footer) {
  uint32_t sum = 0;
  for (size_t i = 0; i < kFooterBytes; ++i) {
    if (i >= kFooterChecksum && i < kFooterChecksum + 4) continue;
    sum += static_cast<unsigned char>(footer[i]);
  }
  return ~sum == LoadBE32(footer + kFooterChecksum);
}

// Trailing spaces and NULs dropped; other non-printable bytes as '?'.
std::string Printable4(const std::string& s) {
  std::string out;
  for (char c : s) out += (c >= 0x20 && c < 0x7f) ? c : (c == '\0' ? '\0' : '?');
  while (!out.empty() && (out.back() == ' ' || out.back() == '\0')) out.pop_back();
  for (char& c : out) {
    if (c == '\0') c = '?';
  }
  return out;
}

// A big-endian UTF-16 name (the differencing disk's parent) as UTF-8, up to its first NUL.
std::string Utf16BeToUtf8(const char* p, size_t bytes) {
  std::string out;
  for (size_t i = 0; i + 1 < bytes; i += 2) {
    uint32_t c = LoadBE16(p + i);
    if (c == 0) break;
    if (c >= 0xD800 && c < 0xDC00 && i + 3 < bytes) {
      uint32_t lo = LoadBE16(p + i + 2);
      if (lo >= 0xDC00 && lo < 0xE000) {
        c = 0x10000 + ((c - 0xD800) << 10) + (lo - 0xDC00);
        i += 2;
      } else {
        c = 0xFFFD;
      }
    } else if (c >= 0xD800 && c < 0xE000) {
      c = 0xFFFD;
    }
    AppendUtf8(c, &out);
  }
  return out;
}

// The creators whose images qemu 7.2 sizes by current_size rather than by CHS geometry.
bool CreatorUsesCurrentSize(const char* app) {
  for (const char* known : {"win ", "qem2", "d2v ", "CTXS"}) {
    if (std::memcmp(app, known, 4) == 0) return true;
  }
  return std::memcmp(app, "tap\0", 4) == 0;
}

}  // namespace

// Which footer (see vhd_reader.h) of the first and last 512 bytes of a file of `file_size`
// bytes; Corruption when neither is one, or the chosen one's checksum is wrong.
Result<VhdReader::Footer> VhdReader::PickFooter(const char* head, const char* tail,
                                                uint64_t file_size) {
  Footer f;
  bool tail_is_fixed =
      HasCookie(tail) && ChecksumOk(tail) && LoadBE32(tail + kFooterDiskType) == kTypeFixed;
  if (tail_is_fixed) {
    f = {tail, file_size - kFooterBytes};
  } else if (HasCookie(head)) {
    f = {head, 0};
  } else if (HasCookie(tail)) {
    f = {tail, file_size - kFooterBytes};
  } else {
    return Status::Corruption(
        "vhd: no footer (\"conectix\") at offset 0 nor in the last 512 bytes");
  }
  if (!ChecksumOk(f.bytes)) {
    return Status::Corruption("vhd: footer checksum mismatch (footer at " + Hex(f.offset) + ")");
  }
  return f;
}

Status VhdReader::CheckDiskType(const Footer& footer) const {
  const uint32_t type = LoadBE32(footer.bytes + kFooterDiskType);
  if (type == kTypeDifferencing) {
    // Name the parent when the dynamic header is readable, for the refusal message.
    const uint64_t file_size = file_->size();
    std::string parent;
    uint64_t dyn = LoadBE64(footer.bytes + kFooterDataOffset);
    if (dyn <= file_size && file_size - dyn >= kDynHeaderFullBytes) {
      char h[kDynHeaderFullBytes];
      GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(dyn, sizeof h, h));
      if (std::memcmp(h, "cxsparse", 8) == 0) {
        parent = Utf16BeToUtf8(h + kDynParentName, kDynParentNameBytes);
      }
    }
    return Status::Refused("vhd differencing disk names a parent" +
                           (parent.empty() ? std::string() : " \"" + parent + "\""));
  }
  if (type == kTypeFixed && footer.offset == 0) {
    return Status::Corruption(
        "vhd: the footer at offset 0 says fixed disk, but the file does not end with one");
  }
  if (type == kTypeDynamic && footer.offset != 0) {
    return Status::Corruption("vhd: dynamic disk without its footer copy at offset 0");
  }
  if (type != kTypeFixed && type != kTypeDynamic) {
    return Status::Corruption("vhd: disk type " + std::to_string(type) +
                              " is not fixed (2), dynamic (3) or differencing (4)");
  }
  return Status::Ok();
}

Status VhdReader::ParseFooter(const char* footer) {
  VhdInfo& info = info_;
  info.fixed = LoadBE32(footer + kFooterDiskType) == kTypeFixed;
  info.creator_app.assign(footer + kFooterCreatorApp, 4);
  info.creator_major = LoadBE16(footer + kFooterCreatorVersion);
  info.creator_minor = LoadBE16(footer + kFooterCreatorVersion + 2);
  info.creator_os.assign(footer + kFooterCreatorOs, 4);
  info.current_size = LoadBE64(footer + kFooterCurrentSize);
  info.cylinders = LoadBE16(footer + kFooterGeometry);
  info.heads = static_cast<uint8_t>(footer[kFooterGeometry + 2]);
  info.sectors_per_track = static_cast<uint8_t>(footer[kFooterGeometry + 3]);

  // The size rule: see the header comment.
  uint64_t sectors = uint64_t{info.cylinders} * info.heads * info.sectors_per_track;
  info.size_from_chs =
      !CreatorUsesCurrentSize(footer + kFooterCreatorApp) && sectors != kMaxGeometrySectors;
  if (!info.size_from_chs) sectors = info.current_size / kSector;
  if (sectors > kMaxSectors) {
    return Status::Corruption("vhd: virtual size of " + std::to_string(sectors) +
                              " sectors is over the 2040 GiB maximum");
  }
  info.virtual_size = sectors * kSector;
  return Status::Ok();
}

Result<std::shared_ptr<VhdReader>> VhdReader::Open(std::shared_ptr<ByteSource> file,
                                                   const VhdLimits& limits) {
  const uint64_t file_size = file->size();
  if (file_size < kFooterBytes) {
    return Status::Corruption("vhd: the file (" + std::to_string(file_size) +
                              " bytes) is smaller than a footer");
  }
  char head[kFooterBytes], tail[kFooterBytes];
  GLANCEFS_RETURN_IF_ERROR(file->ReadAt(0, kFooterBytes, head));
  GLANCEFS_RETURN_IF_ERROR(file->ReadAt(file_size - kFooterBytes, kFooterBytes, tail));

  std::shared_ptr<VhdReader> r(new VhdReader(std::move(file)));
  GLANCEFS_ASSIGN_OR_RETURN(Footer footer, PickFooter(head, tail, file_size));
  GLANCEFS_RETURN_IF_ERROR(r->CheckDiskType(footer));
  GLANCEFS_RETURN_IF_ERROR(r->ParseFooter(footer.bytes));
  if (r->info_.fixed) {
    if (r->info_.virtual_size > footer.offset) {
      return Status::Corruption("vhd: fixed disk of " + std::to_string(r->info_.virtual_size) +
                                " bytes does not fit before its footer at " + Hex(footer.offset));
    }
    return r;
  }
  GLANCEFS_RETURN_IF_ERROR(r->OpenDynamic(LoadBE64(footer.bytes + kFooterDataOffset), limits));
  return r;
}

Status VhdReader::OpenDynamic(uint64_t data_offset, const VhdLimits& limits) {
  const uint64_t file_size = file_->size();
  if (data_offset > file_size || file_size - data_offset < kDynHeaderBytes) {
    return Status::Corruption("vhd: dynamic header at " + Hex(data_offset) +
                              " is outside the file (" + std::to_string(file_size) + " bytes)");
  }
  char h[kDynHeaderBytes];
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(data_offset, sizeof h, h));
  if (std::memcmp(h, "cxsparse", 8) != 0) {
    return Status::Corruption("vhd: no dynamic header (\"cxsparse\") at " + Hex(data_offset));
  }
  const uint64_t block_size = LoadBE32(h + kDynBlockSize);
  if (block_size < kSector || (block_size & (block_size - 1)) != 0) {
    return Status::Corruption("vhd: block size " + std::to_string(block_size) +
                              " is not a power of two of at least 512");
  }
  info_.block_size = static_cast<uint32_t>(block_size);
  bitmap_bytes_ = (block_size / (8 * kSector) + kSector - 1) & ~(kSector - 1);

  const uint64_t vsize = info_.virtual_size;
  const uint64_t blocks = vsize / block_size + (vsize % block_size != 0);
  const uint64_t max_entries = LoadBE32(h + kDynMaxTableEntries);
  if (max_entries < blocks) {
    return Status::Corruption("vhd: BAT of " + std::to_string(max_entries) +
                              " entries is too small for " + std::to_string(vsize) + " bytes of " +
                              std::to_string(block_size) + "-byte blocks");
  }
  const uint64_t bat_offset = LoadBE64(h + kDynTableOffset);
  const uint64_t declared_bytes = max_entries * 4;
  if (bat_offset > file_size || file_size - bat_offset < declared_bytes) {
    return Status::Corruption("vhd: BAT of " + std::to_string(max_entries) + " entries at " +
                              Hex(bat_offset) + " runs past the end of the file (" +
                              std::to_string(file_size) + " bytes)");
  }
  if (blocks * 4 > limits.max_bat_bytes) {
    return Status::Refused("vhd: BAT of " + std::to_string(blocks * 4) +
                           " bytes is over the limit of " + std::to_string(limits.max_bat_bytes));
  }
  std::vector<char> raw(blocks * 4);
  if (!raw.empty()) GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(bat_offset, raw.size(), raw.data()));
  bat_.resize(blocks);
  for (uint64_t i = 0; i < blocks; ++i) bat_[i] = LoadBE32(raw.data() + 4 * i);
  return Status::Ok();
}

Result<VhdReader::Mapping> VhdReader::Map(uint64_t off, uint64_t max_len) const {
  if (info_.fixed) return Mapping{true, off, max_len};
  const uint64_t bs = info_.block_size;
  const uint64_t block = off / bs;
  const uint64_t in_block = off % bs;
  const uint64_t len = std::min(max_len, bs - in_block);
  const uint32_t entry = bat_[block];
  if (entry == kUnallocated) return Mapping{false, 0, len};
  const uint64_t host = uint64_t{entry} * kSector + bitmap_bytes_ + in_block;
  const uint64_t file_size = file_->size();
  if (host > file_size || file_size - host < len) {
    return Status::Corruption("vhd: block " + std::to_string(block) + " (BAT entry " + Hex(entry) +
                              ") has data at " + Hex(host) + "+" + std::to_string(len) +
                              ", outside the file (" + std::to_string(file_size) + " bytes)");
  }
  return Mapping{true, host, len};
}

Status VhdReader::ReadAt(uint64_t off, size_t n, char* dst) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("vhd", off, n, info_.virtual_size));
  while (n > 0) {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(off, n));
    if (m.allocated) {
      GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(m.host_offset, m.length, dst));
    } else {
      std::memset(dst, 0, m.length);
    }
    off += m.length;
    dst += m.length;
    n -= m.length;
  }
  return Status::Ok();
}

Status VhdReader::ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("vhd", off, n, info_.virtual_size));
  return PinRuns("vhd", off, n, out, [&](uint64_t at, uint64_t max_len) -> Result<uint64_t> {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(at, max_len));
    if (m.allocated) {
      GLANCEFS_RETURN_IF_ERROR(file_->ReadPinned(m.host_offset, m.length, out));
    } else {
      PinZeros(m.length, out);
    }
    return m.length;
  });
}

Result<Extent> VhdReader::MapExtent(uint64_t off) {
  const uint64_t vsize = info_.virtual_size;
  if (off >= vsize) return Status::OutOfRange("vhd: extent past the end");
  if (info_.fixed) {
    // The file's own holes, clipped to the disk.
    GLANCEFS_ASSIGN_OR_RETURN(Extent e, file_->MapExtent(off));
    e.offset = off;
    e.length = std::min(e.length, vsize - off);
    if (e.length == 0) e.length = vsize - off;  // a source that reports nothing: data
    return e;
  }
  return MergeRuns(off, vsize, [&](uint64_t at, uint64_t max_len) -> Result<Extent> {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(at, max_len));
    return Extent{at, m.length, m.allocated ? Extent::Kind::kData : Extent::Kind::kHole};
  });
}

std::vector<std::pair<std::string, std::string>> VhdReader::Facts() const {
  std::vector<std::pair<std::string, std::string>> facts;
  facts.emplace_back("subformat", info_.fixed ? "fixed" : "dynamic");
  facts.emplace_back("creator_application", Printable4(info_.creator_app));
  facts.emplace_back("creator_version", std::to_string(info_.creator_major) + "." +
                                            std::to_string(info_.creator_minor));
  facts.emplace_back("creator_os", Printable4(info_.creator_os));
  if (!info_.fixed) facts.emplace_back("block_size", std::to_string(info_.block_size));
  facts.emplace_back("disk_geometry", std::to_string(info_.cylinders) + "/" +
                                          std::to_string(info_.heads) + "/" +
                                          std::to_string(info_.sectors_per_track));
  facts.emplace_back("size_rule", info_.size_from_chs ? "chs" : "current_size");
  return facts;
}

namespace {

Result<bool> ProbeVhd(ByteSource& src) {
  GLANCEFS_ASSIGN_OR_RETURN(bool at_start, HasMagic(src, 0, "conectix"));
  if (at_start || src.size() < kFooterBytes) return at_start;
  return HasMagic(src, src.size() - kFooterBytes, "conectix");
}

Result<Decoded> OpenVhd(std::shared_ptr<ByteSource> file) {
  GLANCEFS_ASSIGN_OR_RETURN(auto reader, VhdReader::Open(std::move(file)));
  Decoded d;
  d.info.format = "vhd";
  d.info.virtual_size = reader->size();
  d.info.facts = reader->Facts();
  d.raw = std::move(reader);
  return d;
}

}  // namespace

const FormatSpec kVhdFormat{"vhd", ProbeVhd, OpenVhd};

}  // namespace glancefs::format
