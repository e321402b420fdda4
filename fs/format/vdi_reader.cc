#include "fs/format/vdi_reader.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "fs/format/runs.h"

namespace glancefs::format {
namespace {

// Header fields (VDICore.h VDIPREHEADER + VDIHEADER1; qemu's VdiHeader), little-endian.
constexpr uint64_t kHeaderBytes = 512;
constexpr uint64_t kSignatureOffset = 0x40;
constexpr uint32_t kSignature = 0xbeda107f;
constexpr uint32_t kVersion11 = 0x00010001;
constexpr uint64_t kVersionOffset = 0x44;
constexpr uint64_t kImageTypeOffset = 0x4c;
constexpr uint64_t kOffsetBmapOffset = 0x154;
constexpr uint64_t kOffsetDataOffset = 0x158;
constexpr uint64_t kSectorSizeOffset = 0x168;
constexpr uint64_t kDiskSizeOffset = 0x170;
constexpr uint64_t kBlockSizeOffset = 0x178;
constexpr uint64_t kBlockExtraOffset = 0x17c;
constexpr uint64_t kBlocksInImageOffset = 0x180;
constexpr uint64_t kUuidImageOffset = 0x188;
constexpr uint64_t kUuidLinkOffset = 0x1a8;
constexpr uint64_t kUuidParentOffset = 0x1b8;

// Image types.
constexpr uint32_t kTypeDynamic = 1;
constexpr uint32_t kTypeStatic = 2;
constexpr uint32_t kTypeUndo = 3;
constexpr uint32_t kTypeDiff = 4;

constexpr uint64_t kSectorSize = 512;
constexpr uint32_t kMinBlockBits = 9;   // 512 B
constexpr uint32_t kMaxBlockBits = 28;  // 256 MiB
// qemu's limits (VDI_BLOCKS_IN_IMAGE_MAX, VDI_DISK_SIZE_MAX).
constexpr uint64_t kMaxBlocksInImage = 0x3fffffff;
constexpr uint64_t kMaxDiskSize = kMaxBlocksInImage << 20;

// Block map entries.
constexpr uint32_t kUnallocated = 0xffffffff;
constexpr uint32_t kDiscarded = 0xfffffffe;

// One MapExtent call scans at most this many blocks.
constexpr uint64_t kMaxExtentBlocks = uint64_t{1} << 20;

// A UUID stored the IPRT way (first three fields little-endian), as VirtualBox prints it.
// Empty for the null UUID.
std::string FormatUuid(const char* p) {
  bool null = std::all_of(p, p + 16, [](char c) { return c == 0; });
  if (null) return "";
  auto u = reinterpret_cast<const unsigned char*>(p);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08x-%04x-%04x-%02x%02x-%02x%02x%02x%02x%02x%02x", LoadLE32(p),
                LoadLE16(p + 4), LoadLE16(p + 6), u[8], u[9], u[10], u[11], u[12], u[13], u[14],
                u[15]);
  return buf;
}

Result<bool> ProbeVdi(ByteSource& src) {
  std::string magic(4, '\0');
  magic[0] = static_cast<char>(kSignature & 0xff);
  magic[1] = static_cast<char>((kSignature >> 8) & 0xff);
  magic[2] = static_cast<char>((kSignature >> 16) & 0xff);
  magic[3] = static_cast<char>(kSignature >> 24);
  return HasMagic(src, kSignatureOffset, magic);
}

Result<Decoded> OpenVdi(std::shared_ptr<ByteSource> file) {
  GLANCEFS_ASSIGN_OR_RETURN(auto reader, VdiReader::Open(std::move(file)));
  const VdiInfo& v = reader->info();
  Decoded d;
  d.info.format = "vdi";
  d.info.virtual_size = v.virtual_size;
  d.info.facts = {
      {"subformat", v.subformat}, {"block_size", std::to_string(v.block_size)}, {"version", "1.1"}};
  if (!v.uuid.empty()) d.info.facts.emplace_back("uuid", v.uuid);
  d.raw = std::move(reader);
  return d;
}

}  // namespace

const FormatSpec kVdiFormat{"vdi", ProbeVdi, OpenVdi};

Result<std::shared_ptr<VdiReader>> VdiReader::Open(std::shared_ptr<ByteSource> file,
                                                   const VdiLimits& limits) {
  std::shared_ptr<VdiReader> r(new VdiReader(std::move(file), limits));
  GLANCEFS_RETURN_IF_ERROR(r->ParseHeader());
  GLANCEFS_RETURN_IF_ERROR(r->LoadMap());
  return r;
}

Status VdiReader::ParseHeader() {
  if (file_->size() < kHeaderBytes) return Status::Corruption("vdi: file too short for a header");
  char h[kHeaderBytes];
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(0, sizeof h, h));
  if (LoadLE32(h + kSignatureOffset) != kSignature) {
    return Status::Corruption("vdi: bad signature " + Hex(LoadLE32(h + kSignatureOffset)));
  }
  uint32_t version = LoadLE32(h + kVersionOffset);
  if (version != kVersion11) {
    return Status::Refused("vdi: version " + std::to_string(version >> 16) + "." +
                           std::to_string(version & 0xffff) + " is not supported (only 1.1)");
  }
  uint32_t type = LoadLE32(h + kImageTypeOffset);
  if (type == kTypeUndo || type == kTypeDiff) {
    return Status::Refused(std::string("vdi differencing image (") +
                           (type == kTypeDiff ? "diff" : "undo") +
                           " type): its unallocated blocks are in a parent image; refused");
  }
  if (type != kTypeDynamic && type != kTypeStatic) {
    return Status::Refused("vdi: unknown image type " + std::to_string(type));
  }
  info_.subformat = type == kTypeStatic ? "static" : "dynamic";
  std::string link = FormatUuid(h + kUuidLinkOffset), parent = FormatUuid(h + kUuidParentOffset);
  if (!link.empty() || !parent.empty()) {
    return Status::Refused("vdi: names a parent image (link " + (link.empty() ? "null" : link) +
                           ", parent " + (parent.empty() ? "null" : parent) + "); refused");
  }
  info_.uuid = FormatUuid(h + kUuidImageOffset);
  return ParseLayout(h);
}

Status VdiReader::ParseLayout(const char* h) {
  if (LoadLE32(h + kSectorSizeOffset) != kSectorSize) {
    return Status::Refused("vdi: sector size " + std::to_string(LoadLE32(h + kSectorSizeOffset)) +
                           " is not supported (only 512)");
  }
  info_.block_size = LoadLE32(h + kBlockSizeOffset);
  uint32_t bs = info_.block_size;
  if (bs == 0 || (bs & (bs - 1)) != 0 || bs < (1u << kMinBlockBits) || bs > (1u << kMaxBlockBits)) {
    return Status::Refused("vdi: block size " + std::to_string(bs) +
                           " is not a power of two from 512 B to 256 MiB");
  }
  while ((uint32_t{1} << block_bits_) < bs) ++block_bits_;
  if (LoadLE32(h + kBlockExtraOffset) != 0) {
    return Status::Refused("vdi: blocks carry " + std::to_string(LoadLE32(h + kBlockExtraOffset)) +
                           " extra bytes each; not supported");
  }
  offset_bmap_ = LoadLE32(h + kOffsetBmapOffset);
  offset_data_ = LoadLE32(h + kOffsetDataOffset);
  if (offset_bmap_ % kSectorSize != 0 || offset_data_ % kSectorSize != 0) {
    return Status::Refused("vdi: block map offset " + Hex(offset_bmap_) + " or data offset " +
                           Hex(offset_data_) + " is not sector-aligned");
  }
  uint64_t disk_size = LoadLE64(h + kDiskSizeOffset);
  if (disk_size > kMaxDiskSize) {
    return Status::Refused("vdi: disk size " + std::to_string(disk_size) + " is too large");
  }
  // 'VBoxManage convertfromraw' writes odd sizes; qemu rounds them up to whole sectors.
  info_.virtual_size = (disk_size + kSectorSize - 1) / kSectorSize * kSectorSize;
  blocks_in_image_ = LoadLE32(h + kBlocksInImageOffset);
  if (blocks_in_image_ > kMaxBlocksInImage) {
    return Status::Refused("vdi: " + std::to_string(blocks_in_image_) + " blocks is too many");
  }
  if (info_.virtual_size > (blocks_in_image_ << block_bits_)) {
    return Status::Corruption("vdi: disk size " + std::to_string(info_.virtual_size) +
                              " is larger than its " + std::to_string(blocks_in_image_) +
                              " blocks of " + std::to_string(bs) + " bytes");
  }
  return Status::Ok();
}

Status VdiReader::LoadMap() {
  const uint64_t file_size = file_->size();
  const uint64_t map_bytes = blocks_in_image_ * 4;
  if (offset_bmap_ > file_size || map_bytes > file_size - offset_bmap_) {
    return Status::Corruption(
        "vdi with a block map larger than the file: " + std::to_string(blocks_in_image_) +
        " entries (" + std::to_string(map_bytes) + " bytes) at " + Hex(offset_bmap_) +
        ", the file has " + std::to_string(file_size) + " bytes");
  }
  if (offset_data_ < offset_bmap_ + map_bytes) {  // VirtualBox's rule too
    return Status::Corruption("vdi: data area at " + Hex(offset_data_) +
                              " overlaps the block map at " + Hex(offset_bmap_) + " (+" +
                              std::to_string(map_bytes) + ")");
  }
  // Only the blocks that cover the disk are ever read.
  uint64_t needed = (info_.virtual_size + (uint64_t{1} << block_bits_) - 1) >> block_bits_;
  if (needed * 4 > limits_.max_map_bytes) {
    return Status::Refused("vdi: block map of " + std::to_string(needed * 4) +
                           " bytes is larger than the limit (" +
                           std::to_string(limits_.max_map_bytes) + ")");
  }
  if (needed == 0) return Status::Ok();
  std::vector<char> raw(needed * 4);
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(offset_bmap_, raw.size(), raw.data()));
  map_.resize(needed);
  for (uint64_t i = 0; i < needed; ++i) map_[i] = LoadLE32(&raw[i * 4]);
  return Status::Ok();
}

VdiReader::Mapping VdiReader::Map(uint64_t off, uint64_t max_len) const {
  const uint64_t block_size = uint64_t{1} << block_bits_;
  auto kind_of = [](uint32_t e) {
    return e == kUnallocated ? Kind::kHole : e == kDiscarded ? Kind::kZero : Kind::kData;
  };
  uint64_t limit = std::min(max_len, info_.virtual_size - off);
  uint64_t b = off >> block_bits_;
  uint32_t entry = map_[b];
  Mapping m{kind_of(entry), 0, std::min(limit, block_size - (off & (block_size - 1)))};
  if (m.kind == Kind::kData) {
    m.host_offset = offset_data_ + (uint64_t{entry} << block_bits_) + (off & (block_size - 1));
  }
  // Extend over following blocks of the same kind (stored ones: contiguous in the file).
  while (m.length < limit) {
    uint32_t next = map_[++b];
    if (kind_of(next) != m.kind) break;
    if (m.kind == Kind::kData && next != entry + 1) break;
    entry = next;
    m.length += std::min(block_size, limit - m.length);
  }
  return m;
}

Status VdiReader::CheckStored(uint64_t off, const Mapping& m) const {
  const uint64_t file_size = file_->size();
  if (m.host_offset <= file_size && m.length <= file_size - m.host_offset) return Status::Ok();
  // The first block of the run that is not all in the file.
  uint64_t inside = m.host_offset < file_size ? file_size - m.host_offset : 0;
  uint64_t block = (off + inside) >> block_bits_;
  return Status::Corruption("vdi: block " + std::to_string(block) + " (map entry " +
                            Hex(map_[block]) + ") is stored at " +
                            Hex(offset_data_ + (uint64_t{map_[block]} << block_bits_)) +
                            ", past the end of the file (" + std::to_string(file_size) + " bytes)");
}

Status VdiReader::ReadAt(uint64_t off, size_t n, char* dst) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("vdi", off, n, info_.virtual_size));
  while (n > 0) {
    Mapping m = Map(off, n);
    if (m.kind == Kind::kData) {
      GLANCEFS_RETURN_IF_ERROR(CheckStored(off, m));
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

Status VdiReader::ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("vdi", off, n, info_.virtual_size));
  return PinRuns("vdi", off, n, out, [&](uint64_t at, uint64_t max_len) -> Result<uint64_t> {
    Mapping m = Map(at, max_len);
    if (m.kind == Kind::kData) {
      GLANCEFS_RETURN_IF_ERROR(CheckStored(at, m));
      GLANCEFS_RETURN_IF_ERROR(file_->ReadPinned(m.host_offset, m.length, out));
    } else {
      PinZeros(m.length, out);
    }
    return m.length;
  });
}

Result<Extent> VdiReader::MapExtent(uint64_t off) {
  if (off >= info_.virtual_size) return Status::OutOfRange("vdi: extent past the end");
  auto kind_of = [](uint32_t e) {
    return e == kUnallocated ? Extent::Kind::kHole
           : e == kDiscarded ? Extent::Kind::kZero
                             : Extent::Kind::kData;
  };
  const uint64_t block_size = uint64_t{1} << block_bits_;
  uint64_t b = off >> block_bits_;
  const Extent::Kind kind = kind_of(map_[b]);
  uint64_t end = (b + 1) << block_bits_;
  for (uint64_t scanned = 1; end < info_.virtual_size && scanned < kMaxExtentBlocks; ++scanned) {
    if (kind_of(map_[end >> block_bits_]) != kind) break;
    end += block_size;
  }
  return Extent{off, std::min(end, info_.virtual_size) - off, kind};
}

}  // namespace glancefs::format
