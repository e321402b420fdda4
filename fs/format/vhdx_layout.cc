#include "fs/format/vhdx_layout.h"

#include <array>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <optional>
#include <string>
#include <vector>

#include "fs/format/crc32c.h"
#include "fs/format/format.h"
#include "fs/format/vhdx_reader.h"

namespace glancefs::format {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kHeader1Offset = 64 * kKiB;
constexpr uint64_t kHeader2Offset = 128 * kKiB;
constexpr uint64_t kRegionTable1Offset = 192 * kKiB;
constexpr uint64_t kRegionTable2Offset = 256 * kKiB;
constexpr uint64_t kHeaderBytes = 4 * kKiB;        // the CRC covers 4 KiB
constexpr uint64_t kHeaderCompareBytes = 80;       // the defined fields (qemu's VHDXHeader)
constexpr uint64_t kRegionTableBytes = 64 * kKiB;  // the CRC covers 64 KiB
constexpr uint64_t kMetadataTableBytes = 64 * kKiB;
constexpr uint32_t kMaxTableEntries = 2047;
constexpr uint64_t kMinBlockSize = kMiB;
constexpr uint64_t kMaxBlockSize = 256 * kMiB;
constexpr uint64_t kMaxVirtualSize = 64ULL << 40;  // 64 TiB

using Guid = std::array<unsigned char, 16>;

// The on-disk bytes of a GUID written "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX": the first three
// groups little-endian, the last two as written.
Guid ParseGuid(const char* text) {
  auto hex = [](char c) -> unsigned { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  unsigned char be[16];
  int n = 0;
  for (const char* p = text; *p && n < 16; ++p) {
    if (*p == '-') continue;
    be[n++] = static_cast<unsigned char>(hex(p[0]) << 4 | hex(p[1]));
    ++p;
  }
  Guid g;
  const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int i = 0; i < 16; ++i) g[i] = be[order[i]];
  return g;
}

const Guid kBatRegion = ParseGuid("2DC27766-F623-4200-9D64-115E9BFD4A08");
const Guid kMetadataRegion = ParseGuid("8B7CA206-4790-4B9A-B8FE-575F050F886E");
const Guid kFileParameters = ParseGuid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
const Guid kVirtualDiskSize = ParseGuid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
const Guid kPage83Data = ParseGuid("BECA12AB-B2E6-4523-93EF-C309E000C746");
const Guid kLogicalSectorSize = ParseGuid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
const Guid kPhysicalSectorSize = ParseGuid("CDA348C7-445D-4471-9CC9-E9885251C556");
const Guid kParentLocator = ParseGuid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");

bool GuidAt(const char* p, const Guid& g) { return std::memcmp(p, g.data(), 16) == 0; }

std::string GuidText(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", LoadLE32(p),
                LoadLE16(p + 4), LoadLE16(p + 6), u[8], u[9], u[10], u[11], u[12], u[13], u[14],
                u[15]);
  return buf;
}

// Checks a header-style CRC: the stored value at `crc_at` equals the CRC of `n` bytes with that
// field read as zeros.
bool CrcOk(const char* p, size_t n, size_t crc_at) {
  static const char kZeros[4] = {};
  uint32_t c = Crc32c(0, p, crc_at);
  c = Crc32c(c, kZeros, 4);
  c = Crc32c(c, p + crc_at + 4, n - crc_at - 4);
  return c == LoadLE32(p + crc_at);
}

// UTF-16LE up to the first NUL, as UTF-8 (unpaired surrogates as U+FFFD, controls as '?'),
// trailing spaces dropped.
std::string Utf16LeToUtf8(const char* p, size_t bytes) {
  std::string out;
  for (size_t i = 0; i + 1 < bytes; i += 2) {
    uint32_t c = LoadLE16(p + i);
    if (c == 0) break;
    if (c >= 0xD800 && c < 0xDC00 && i + 3 < bytes && LoadLE16(p + i + 2) >= 0xDC00 &&
        LoadLE16(p + i + 2) < 0xE000) {
      c = 0x10000 + ((c - 0xD800) << 10) + (LoadLE16(p + i + 2) - 0xDC00);
      i += 2;
    } else if (c >= 0xD800 && c < 0xE000) {
      c = 0xFFFD;
    }
    if (c < 0x20 || c == 0x7F) c = '?';
    AppendUtf8(c, &out);
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// ---- The header section ----

// The creator named by the file identifier ("vhdxfile") at offset 0.
Result<std::string> ReadCreator(ByteSource& file) {
  char ident[8 + 512];
  GLANCEFS_RETURN_IF_ERROR(file.ReadAt(0, sizeof ident, ident));
  if (std::memcmp(ident, "vhdxfile", 8) != 0) {
    return Status::Corruption("vhdx: no file identifier (\"vhdxfile\") at offset 0");
  }
  return Utf16LeToUtf8(ident + 8, 512);
}

// The current header: of the two, the valid one with the higher sequence number.
Result<std::string> ReadCurrentHeader(ByteSource& file) {
  std::string headers[2];
  bool valid[2];
  for (int i = 0; i < 2; ++i) {
    headers[i].resize(kHeaderBytes);
    GLANCEFS_RETURN_IF_ERROR(
        file.ReadAt(i == 0 ? kHeader1Offset : kHeader2Offset, kHeaderBytes, headers[i].data()));
    const char* h = headers[i].data();
    valid[i] = std::memcmp(h, "head", 4) == 0 && CrcOk(h, kHeaderBytes, 4) && LoadLE16(h + 66) == 1;
  }
  int current;
  if (valid[0] && valid[1]) {
    uint64_t s0 = LoadLE64(headers[0].data() + 8), s1 = LoadLE64(headers[1].data() + 8);
    if (s0 == s1 && std::memcmp(headers[0].data(), headers[1].data(), kHeaderCompareBytes) != 0) {
      return Status::Corruption("vhdx: both headers have sequence number " + std::to_string(s0) +
                                " but differ");
    }
    current = s1 > s0 ? 1 : 0;
  } else if (valid[0] || valid[1]) {
    current = valid[0] ? 0 : 1;
  } else {
    return Status::Corruption("vhdx: no valid header (signature, version 1 and CRC-32C)");
  }
  return std::move(headers[current]);
}

// The log fields of header `h`, with qemu's checks, into *header.
Status ParseLogFields(const char* h, VhdxHeader* header) {
  const char* log_guid = h + 48;
  const uint16_t log_version = LoadLE16(h + 64);
  const uint64_t log_length = LoadLE32(h + 68);
  const uint64_t log_offset = LoadLE64(h + 72);
  if (log_offset < kMiB || log_offset % kMiB != 0) {
    return Status::Corruption("vhdx: log offset " + Hex(log_offset) +
                              " is not a multiple of 1 MiB past the header section");
  }
  if (log_version != 0) {
    return Status::Corruption("vhdx: log version " + std::to_string(log_version) +
                              " (only 0 exists)");
  }
  static const char kZeroGuid[16] = {};
  header->log_in_use = std::memcmp(log_guid, kZeroGuid, 16) != 0 && log_length != 0;
  if (header->log_in_use && log_length % kMiB != 0) {
    return Status::Corruption("vhdx: log length " + std::to_string(log_length) +
                              " is not a multiple of 1 MiB");
  }
  std::memcpy(header->log.guid.data(), log_guid, 16);
  header->log.offset = log_offset;
  header->log.length = log_length;
  return Status::Ok();
}

// ---- The region table ----

// The region table: the first copy with a valid signature and CRC-32C.
Result<std::string> ReadRegionTable(ByteSource& f) {
  const uint64_t size = f.size();
  std::string table(kRegionTableBytes, '\0');
  for (uint64_t at : {kRegionTable1Offset, kRegionTable2Offset}) {
    if (at + kRegionTableBytes > size) break;
    GLANCEFS_RETURN_IF_ERROR(f.ReadAt(at, table.size(), table.data()));
    if (std::memcmp(table.data(), "regi", 4) == 0 && CrcOk(table.data(), kRegionTableBytes, 4)) {
      return table;
    }
  }
  return Status::Corruption("vhdx: no valid region table (signature and CRC-32C)");
}

// Corruption when two of the regions share a byte.
Status CheckOverlaps(const std::vector<VhdxRegion>& regions) {
  for (size_t i = 0; i < regions.size(); ++i) {
    for (size_t j = i + 1; j < regions.size(); ++j) {
      const VhdxRegion& a = regions[i];
      const VhdxRegion& b = regions[j];
      if (a.length == 0 || b.length == 0) continue;
      if (a.offset < b.offset + b.length && b.offset < a.offset + a.length) {
        return Status::Corruption(std::string("vhdx: ") + a.what + " at " + Hex(a.offset) + "+" +
                                  std::to_string(a.length) + " overlaps " + b.what + " at " +
                                  Hex(b.offset) + "+" + std::to_string(b.length));
      }
    }
  }
  return Status::Ok();
}

// ---- The metadata ----

// A metadata item glancefs knows, and what the table says of it.
struct MetadataItem {
  const Guid* id;
  const char* name;
  uint64_t need;  // bytes read
  std::string value;
  bool found = false;
};
using MetadataItems = std::array<MetadataItem, 6>;

// Reads the metadata table in region `metadata` and, for each item of *items the table lists,
// the first `need` bytes of its value. Every item but the last (the parent locator) must be
// there.
Status ReadMetadataItems(ByteSource& f, const VhdxRegion& metadata, MetadataItems* items) {
  if (metadata.length < kMetadataTableBytes) {
    return Status::Corruption("vhdx: metadata region of " + std::to_string(metadata.length) +
                              " bytes is smaller than its table");
  }
  std::string md(kMetadataTableBytes, '\0');
  GLANCEFS_RETURN_IF_ERROR(f.ReadAt(metadata.offset, md.size(), md.data()));
  if (std::memcmp(md.data(), "metadata", 8) != 0) {
    return Status::Corruption("vhdx: no metadata table (\"metadata\") at " + Hex(metadata.offset));
  }
  const uint16_t item_count = LoadLE16(md.data() + 10);
  if (item_count > kMaxTableEntries) {
    return Status::Corruption("vhdx: metadata table has " + std::to_string(item_count) +
                              " entries (at most 2047)");
  }
  for (uint16_t i = 0; i < item_count; ++i) {
    const char* e = md.data() + 32 + 32 * i;
    const uint64_t offset = LoadLE32(e + 16), length = LoadLE32(e + 20);
    size_t k = 0;
    while (k < items->size() && !GuidAt(e, *(*items)[k].id)) ++k;
    if (k == items->size()) {
      if (LoadLE32(e + 24) & 4) {
        return Status::Refused("vhdx: required metadata item " + GuidText(e) + " is unknown");
      }
      continue;
    }
    MetadataItem& item = (*items)[k];
    if (item.found) return Status::Corruption(std::string("vhdx: two ") + item.name + " items");
    item.found = true;
    if (length < item.need || offset > metadata.length || metadata.length - offset < length) {
      return Status::Corruption(std::string("vhdx: metadata item ") + item.name + " at +" +
                                Hex(offset) + " (" + std::to_string(length) +
                                " bytes) does not fit its region of " +
                                std::to_string(metadata.length) + " bytes");
    }
    item.value.resize(item.need);
    if (item.need > 0) {
      GLANCEFS_RETURN_IF_ERROR(f.ReadAt(metadata.offset + offset, item.need, item.value.data()));
    }
  }
  for (size_t k = 0; k + 1 < items->size(); ++k) {  // all but the parent locator
    if (!(*items)[k].found) {
      return Status::Corruption(std::string("vhdx: metadata lacks the ") + (*items)[k].name);
    }
  }
  return Status::Ok();
}

}  // namespace

Result<VhdxHeader> ReadVhdxHeader(ByteSource& file) {
  const uint64_t file_size = file.size();
  if (file_size < kRegionTable1Offset + kRegionTableBytes) {
    return Status::Corruption("vhdx: the file (" + std::to_string(file_size) +
                              " bytes) is too small for its header section");
  }
  VhdxHeader header;
  GLANCEFS_ASSIGN_OR_RETURN(header.creator, ReadCreator(file));
  GLANCEFS_ASSIGN_OR_RETURN(std::string h, ReadCurrentHeader(file));
  GLANCEFS_RETURN_IF_ERROR(ParseLogFields(h.data(), &header));
  return header;
}

Result<VhdxRegions> ReadVhdxRegionTable(ByteSource& f, const VhdxLogLocation& log) {
  const uint64_t size = f.size();
  GLANCEFS_ASSIGN_OR_RETURN(std::string table, ReadRegionTable(f));
  const uint32_t region_count = LoadLE32(table.data() + 8);
  if (region_count > kMaxTableEntries) {
    return Status::Corruption("vhdx: region table has " + std::to_string(region_count) +
                              " entries (at most 2047)");
  }
  std::vector<VhdxRegion> regions = {{"the header section", 0, kVhdxHeaderSectionBytes},
                                     {"the log", log.offset, log.length}};
  std::optional<VhdxRegion> bat, metadata;
  for (uint32_t i = 0; i < region_count; ++i) {
    const char* e = table.data() + 16 + 32 * i;
    VhdxRegion region{"a region", LoadLE64(e + 16), LoadLE32(e + 24)};
    if (GuidAt(e, kBatRegion) || GuidAt(e, kMetadataRegion)) {
      bool is_bat = GuidAt(e, kBatRegion);
      std::optional<VhdxRegion>& slot = is_bat ? bat : metadata;
      region.what = is_bat ? "the BAT" : "the metadata region";
      if (slot) return Status::Corruption(std::string("vhdx: two entries for ") + region.what);
      if (region.offset > size || size - region.offset < region.length) {
        return Status::Corruption(std::string("vhdx: region table points outside the file: ") +
                                  region.what + " at " + Hex(region.offset) + "+" +
                                  std::to_string(region.length) + ", file of " +
                                  std::to_string(size) + " bytes");
      }
      slot = region;
    } else if (LoadLE32(e + 28) & 1) {
      return Status::Refused("vhdx: required region " + GuidText(e) + " is unknown");
    }
    regions.push_back(region);
  }
  if (!bat || !metadata) {
    return Status::Corruption(std::string("vhdx: region table lacks ") +
                              (bat ? "the metadata region" : "the BAT"));
  }
  GLANCEFS_RETURN_IF_ERROR(CheckOverlaps(regions));
  return VhdxRegions{*bat, *metadata};
}

Status ReadVhdxMetadata(ByteSource& f, const VhdxRegion& metadata, VhdxInfo* info) {
  MetadataItems items = {{{&kFileParameters, "file parameters", 8, {}},
                          {&kVirtualDiskSize, "virtual disk size", 8, {}},
                          {&kPage83Data, "page 83 data", 16, {}},
                          {&kLogicalSectorSize, "logical sector size", 4, {}},
                          {&kPhysicalSectorSize, "physical sector size", 4, {}},
                          {&kParentLocator, "parent locator", 0, {}}}};
  GLANCEFS_RETURN_IF_ERROR(ReadMetadataItems(f, metadata, &items));
  const uint64_t block_size = LoadLE32(items[0].value.data());
  const uint32_t params = LoadLE32(items[0].value.data() + 4);
  if (params & 2) return Status::Refused("vhdx differencing disk (has_parent) names a parent");
  info->leave_blocks_allocated = params & 1;
  const uint64_t disk_size = LoadLE64(items[1].value.data());
  const uint64_t sector = LoadLE32(items[3].value.data());
  info->physical_sector_size = LoadLE32(items[4].value.data());
  if (block_size < kMinBlockSize || block_size > kMaxBlockSize ||
      (block_size & (block_size - 1)) != 0) {
    return Status::Corruption("vhdx: block size " + std::to_string(block_size) +
                              " is not a power of two from 1 MiB to 256 MiB");
  }
  if (sector != 512 && sector != 4096) {
    return Status::Corruption("vhdx: logical sector size " + std::to_string(sector) +
                              " is neither 512 nor 4096");
  }
  if (disk_size > kMaxVirtualSize) {
    return Status::Corruption("vhdx: virtual disk size " + std::to_string(disk_size) +
                              " is over the 64 TiB maximum");
  }
  info->block_size = static_cast<uint32_t>(block_size);
  info->logical_sector_size = static_cast<uint32_t>(sector);
  info->virtual_size = disk_size / sector * sector;  // whole sectors, as qemu counts them
  return Status::Ok();
}

}  // namespace glancefs::format
