#include "fs/format/vhdx_reader.h"

#include <algorithm>
#include <cstring>

#include "fs/format/runs.h"
#include "fs/format/vhdx_layout.h"
#include "fs/format/vhdx_log.h"

namespace glancefs::format {
namespace {

// BAT entries.
constexpr uint64_t kStateMask = 7;
constexpr uint64_t kOffsetMask = 0xFFFFFFFFFFF00000ULL;
enum : uint64_t {
  kNotPresent = 0,
  kUndefined = 1,
  kZero = 2,
  kUnmapped = 3,
  kUnmappedV095 = 5,
  kFullyPresent = 6,
  kPartiallyPresent = 7,
};

}  // namespace

Result<std::shared_ptr<VhdxReader>> VhdxReader::Open(std::shared_ptr<ByteSource> file,
                                                     const VhdxLimits& limits) {
  GLANCEFS_ASSIGN_OR_RETURN(VhdxHeader header, ReadVhdxHeader(*file));
  std::shared_ptr<VhdxReader> r(new VhdxReader(file));
  VhdxInfo& info = r->info_;
  info.creator = std::move(header.creator);
  if (header.log_in_use) {
    std::shared_ptr<ByteSource> replayed;
    GLANCEFS_ASSIGN_OR_RETURN(info.log_entries_replayed,
                              ReplayVhdxLog(file, header.log, limits.max_log_bytes, &replayed));
    if (info.log_entries_replayed > 0) {
      info.log_replayed = true;
      r->file_ = std::move(replayed);
    }
  }
  // Everything else is read through the log.
  GLANCEFS_ASSIGN_OR_RETURN(VhdxRegions regions, ReadVhdxRegionTable(*r->file_, header.log));
  GLANCEFS_RETURN_IF_ERROR(ReadVhdxMetadata(*r->file_, regions.metadata, &info));
  GLANCEFS_RETURN_IF_ERROR(r->LoadBat(regions.bat, limits));
  return r;
}

Status VhdxReader::LoadBat(const VhdxRegion& bat, const VhdxLimits& limits) {
  const uint64_t block_size = info_.block_size;
  const uint64_t sector = info_.logical_sector_size;
  chunk_ratio_ = (uint64_t{1} << 23) * sector / block_size;
  const uint64_t blocks = (info_.virtual_size + block_size - 1) / block_size;
  const uint64_t entries = blocks == 0 ? 0 : blocks + (blocks - 1) / chunk_ratio_;
  if (entries * 8 > bat.length) {
    return Status::Corruption("vhdx: BAT region of " + std::to_string(bat.length) +
                              " bytes is too small for " + std::to_string(entries) + " entries");
  }
  if (entries * 8 > limits.max_bat_bytes) {
    return Status::Refused("vhdx: BAT of " + std::to_string(entries * 8) +
                           " bytes is over the limit of " + std::to_string(limits.max_bat_bytes));
  }
  std::vector<char> raw(entries * 8);
  if (!raw.empty()) GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(bat.offset, raw.size(), raw.data()));
  bat_.resize(entries);
  for (uint64_t i = 0; i < entries; ++i) bat_[i] = LoadLE64(raw.data() + 8 * i);
  return Status::Ok();
}

Result<VhdxReader::Mapping> VhdxReader::Map(uint64_t off, uint64_t max_len) const {
  const uint64_t bs = info_.block_size;
  const uint64_t block = off / bs;
  const uint64_t in_block = off % bs;
  const uint64_t len = std::min(max_len, bs - in_block);
  const uint64_t entry = bat_[block + block / chunk_ratio_];
  switch (entry & kStateMask) {
    case kNotPresent:
    case kUndefined:
    case kUnmapped:
    case kUnmappedV095:
      return Mapping{Kind::kHole, 0, len};
    case kZero:
      return Mapping{Kind::kZero, 0, len};
    case kFullyPresent: {
      const uint64_t block_offset = entry & kOffsetMask;
      const uint64_t host = block_offset + in_block;
      const uint64_t file_size = file_->size();
      if (block_offset < kVhdxHeaderSectionBytes) {
        return Status::Corruption("vhdx: block " + std::to_string(block) + " (BAT entry " +
                                  Hex(entry) + ") lies in the header section");
      }
      // Compared from block_offset: block_offset + in_block could wrap around 2^64.
      if (!RangeWithin(block_offset, in_block + len, file_size)) {
        return Status::Corruption("vhdx: block " + std::to_string(block) + " (BAT entry " +
                                  Hex(entry) + ") has data at " + Hex(host) + "+" +
                                  std::to_string(len) + ", outside the file (" +
                                  std::to_string(file_size) + " bytes)");
      }
      return Mapping{Kind::kData, host, len};
    }
    case kPartiallyPresent:
      return Status::Corruption("vhdx: block " + std::to_string(block) +
                                " is partially present, which only a differencing disk may be");
    default:
      return Status::Corruption("vhdx: block " + std::to_string(block) + " has invalid state " +
                                std::to_string(entry & kStateMask));
  }
}

Status VhdxReader::ReadAt(uint64_t off, size_t n, char* dst) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("vhdx", off, n, info_.virtual_size));
  while (n > 0) {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(off, n));
    if (m.kind == Kind::kData) {
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

Status VhdxReader::ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("vhdx", off, n, info_.virtual_size));
  if (info_.log_replayed) return Status::NotSupported("vhdx: replayed log, read with ReadAt");
  return PinRuns("vhdx", off, n, out, [&](uint64_t at, uint64_t max_len) -> Result<uint64_t> {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(at, max_len));
    if (m.kind == Kind::kData) {
      GLANCEFS_RETURN_IF_ERROR(file_->ReadPinned(m.host_offset, m.length, out));
    } else {
      PinZeros(m.length, out);
    }
    return m.length;
  });
}

Result<Extent> VhdxReader::MapExtent(uint64_t off) {
  const uint64_t vsize = info_.virtual_size;
  if (off >= vsize) return Status::OutOfRange("vhdx: extent past the end");
  return MergeRuns(off, vsize, [&](uint64_t at, uint64_t max_len) -> Result<Extent> {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(at, max_len));
    switch (m.kind) {
      case Kind::kHole:
        return Extent{at, m.length, Extent::Kind::kHole};
      case Kind::kZero:
        return Extent{at, m.length, Extent::Kind::kZero};
      case Kind::kData:
        break;
    }
    return Extent{at, m.length, Extent::Kind::kData};
  });
}

std::vector<std::pair<std::string, std::string>> VhdxReader::Facts() const {
  return {{"subformat", info_.leave_blocks_allocated ? "fixed" : "dynamic"},
          {"block_size", std::to_string(info_.block_size)},
          {"logical_sector_size", std::to_string(info_.logical_sector_size)},
          {"physical_sector_size", std::to_string(info_.physical_sector_size)},
          {"creator_application", info_.creator},
          {"log", info_.log_replayed ? "replayed" : "clean"}};
}

namespace {

Result<bool> ProbeVhdx(ByteSource& src) { return HasMagic(src, 0, "vhdxfile"); }

Result<Decoded> OpenVhdx(std::shared_ptr<ByteSource> file) {
  GLANCEFS_ASSIGN_OR_RETURN(auto reader, VhdxReader::Open(std::move(file)));
  Decoded d;
  d.info.format = "vhdx";
  d.info.virtual_size = reader->size();
  d.info.facts = reader->Facts();
  d.raw = std::move(reader);
  return d;
}

}  // namespace

const FormatSpec kVhdxFormat{"vhdx", ProbeVhdx, OpenVhdx};

}  // namespace glancefs::format
