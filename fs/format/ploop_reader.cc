#include "fs/format/ploop_reader.h"

#include <algorithm>
#include <climits>
#include <cstring>

#include "fs/format/runs.h"

namespace glancefs::format {
namespace {

// Header fields (parallels.txt "Header"), little-endian.
constexpr uint64_t kHeaderBytes = 64;
constexpr std::string_view kMagicV1("WithoutFreeSpace");
constexpr std::string_view kMagicV2("WithouFreSpacExt");
constexpr uint64_t kVersionOffset = 16;
constexpr uint64_t kTracksOffset = 28;
constexpr uint64_t kBatEntriesOffset = 32;
constexpr uint64_t kNbSectorsOffset = 36;
constexpr uint64_t kInUseOffset = 44;
constexpr uint64_t kExtOffOffset = 56;
constexpr uint32_t kHeaderVersion = 2;
constexpr uint32_t kInUseMagic = 0x746f6e59;  // opened read-write, not closed since

constexpr uint64_t kSectorSize = 512;
// qemu's limit on sectors per cluster ("Invalid image: Too big cluster").
constexpr uint64_t kMaxTracks = INT32_MAX / 513;
constexpr uint64_t kMaxSectors = INT64_MAX / kSectorSize;

// Format Extension (parallels.txt "Format Extension").
constexpr uint64_t kExtMagic = 0xab234cef23dcea87ULL;
constexpr uint64_t kExtHeaderBytes = 24;      // magic, MD5
constexpr uint64_t kFeatureHeaderBytes = 24;  // magic, flags, data_size, unused
constexpr uint64_t kFeatureEnd = 0;
constexpr uint64_t kFeatureDirtyBitmap = 0x20385fae252cb34aULL;

// One MapExtent call scans at most this many clusters.
constexpr uint64_t kMaxExtentClusters = uint64_t{1} << 20;

Result<bool> ProbePloop(ByteSource& src) {
  GLANCEFS_ASSIGN_OR_RETURN(bool v1, HasMagic(src, 0, kMagicV1));
  if (v1) return true;
  return HasMagic(src, 0, kMagicV2);
}

Result<Decoded> OpenPloop(std::shared_ptr<ByteSource> file) {
  GLANCEFS_ASSIGN_OR_RETURN(auto reader, PloopReader::Open(std::move(file)));
  const PloopInfo& p = reader->info();
  Decoded d;
  d.info.format = "ploop";
  d.info.virtual_size = p.virtual_size;
  d.info.facts = {{"version", std::to_string(p.version)},
                  {"cluster_size", std::to_string(p.cluster_size)}};
  if (p.in_use) d.info.facts.emplace_back("in_use", "true");
  if (p.dirty_bitmaps > 0) {
    d.info.facts.emplace_back("dirty_bitmaps", std::to_string(p.dirty_bitmaps));
  }
  d.raw = std::move(reader);
  return d;
}

}  // namespace

const FormatSpec kPloopFormat{"ploop", ProbePloop, OpenPloop};

Result<std::shared_ptr<PloopReader>> PloopReader::Open(std::shared_ptr<ByteSource> file,
                                                       const PloopLimits& limits) {
  std::shared_ptr<PloopReader> r(new PloopReader(std::move(file), limits));
  GLANCEFS_RETURN_IF_ERROR(r->ParseHeader());
  GLANCEFS_RETURN_IF_ERROR(r->LoadBat());
  return r;
}

Status PloopReader::ParseHeader() {
  if (file_->size() < kHeaderBytes) {
    return Status::Corruption("parallels: file too short for a header");
  }
  char h[kHeaderBytes];
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(0, sizeof h, h));
  std::string_view magic(h, 16);
  if (magic == kMagicV1) {
    info_.version = 1;
  } else if (magic == kMagicV2) {
    info_.version = 2;
  } else {
    return Status::Corruption("parallels: bad magic");
  }
  uint32_t version = LoadLE32(h + kVersionOffset);
  if (version != kHeaderVersion) {
    return Status::Refused("parallels: header version " + std::to_string(version) +
                           " is not supported (only 2)");
  }
  uint64_t tracks = LoadLE32(h + kTracksOffset);
  if (tracks == 0) return Status::Corruption("parallels: zero sectors per cluster");
  if (tracks > kMaxTracks) {
    return Status::Refused("parallels: clusters of " + std::to_string(tracks) +
                           " sectors are too large");
  }
  info_.cluster_size = tracks * kSectorSize;
  off_unit_ = info_.version == 1 ? kSectorSize : info_.cluster_size;
  uint64_t sectors = LoadLE64(h + kNbSectorsOffset);
  if (info_.version == 1) sectors &= 0xffffffff;  // as qemu: the high half is not used
  if (sectors > kMaxSectors) {
    return Status::Refused("parallels: " + std::to_string(sectors) + " sectors is too large");
  }
  info_.virtual_size = sectors * kSectorSize;
  info_.in_use = LoadLE32(h + kInUseOffset) == kInUseMagic;
  bat_entries_ = LoadLE32(h + kBatEntriesOffset);
  uint64_t ext_off = LoadLE64(h + kExtOffOffset);
  if (ext_off != 0) GLANCEFS_RETURN_IF_ERROR(ParseExtension(ext_off));
  return Status::Ok();
}

Status PloopReader::ParseExtension(uint64_t ext_off) {
  const uint64_t file_size = file_->size();
  if (ext_off > file_size / kSectorSize || ext_off * kSectorSize + kExtHeaderBytes > file_size) {
    return Status::Corruption("parallels: format extension at sector " + std::to_string(ext_off) +
                              " is outside the file (" + std::to_string(file_size) + " bytes)");
  }
  const uint64_t start = ext_off * kSectorSize;
  const uint64_t end = std::min(start + info_.cluster_size, file_size);
  char buf[kFeatureHeaderBytes];
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(start, kExtHeaderBytes, buf));
  if (LoadLE64(buf) != kExtMagic) {
    return Status::Corruption("parallels: format extension at " + Hex(start) + " has a bad magic " +
                              Hex(LoadLE64(buf)));
  }
  uint64_t pos = start + kExtHeaderBytes;
  for (uint32_t i = 0; i < limits_.max_extension_features; ++i) {
    if (pos > end || kFeatureHeaderBytes > end - pos) {
      return Status::Corruption("parallels: format extension at " + Hex(start) +
                                " runs past its cluster or the file at " + Hex(pos));
    }
    GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(pos, kFeatureHeaderBytes, buf));
    uint64_t magic = LoadLE64(buf);
    uint64_t data_bytes = (uint64_t{LoadLE32(buf + 16)} + 7) & ~uint64_t{7};
    if (magic == kFeatureEnd) return Status::Ok();
    if (magic != kFeatureDirtyBitmap) {
      return Status::Refused("parallels: format extension feature " + Hex(magic) +
                             " is not supported (only dirty bitmaps); refused");
    }
    ++info_.dirty_bitmaps;
    pos += kFeatureHeaderBytes;
    if (data_bytes > end - pos) {
      return Status::Corruption("parallels: dirty bitmap feature at " + Hex(pos) +
                                " runs past its cluster or the file");
    }
    pos += data_bytes;
  }
  return Status::Refused("parallels: format extension has more than " +
                         std::to_string(limits_.max_extension_features) + " features");
}

Status PloopReader::LoadBat() {
  const uint64_t file_size = file_->size();
  const uint64_t bat_bytes = bat_entries_ * 4;
  if (bat_bytes > file_size - kHeaderBytes) {
    return Status::Corruption("parallels BAT of " + std::to_string(bat_entries_) + " entries (" +
                              std::to_string(bat_bytes) +
                              " bytes at 0x40) is larger than the "
                              "file (" +
                              std::to_string(file_size) + " bytes)");
  }
  // Only the entries that cover the virtual size are ever read.
  uint64_t needed = info_.virtual_size / info_.cluster_size +
                    (info_.virtual_size % info_.cluster_size != 0 ? 1 : 0);
  uint64_t count = std::min(bat_entries_, needed);
  if (count * 4 > limits_.max_bat_bytes) {
    return Status::Refused("parallels: BAT of " + std::to_string(count * 4) +
                           " bytes is larger than the limit (" +
                           std::to_string(limits_.max_bat_bytes) + ")");
  }
  if (count == 0) return Status::Ok();
  std::vector<char> raw(count * 4);
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(kHeaderBytes, raw.size(), raw.data()));
  bat_.resize(count);
  for (uint64_t i = 0; i < count; ++i) bat_[i] = LoadLE32(&raw[i * 4]);
  return Status::Ok();
}

PloopReader::Mapping PloopReader::Map(uint64_t off, uint64_t max_len) const {
  const uint64_t cs = info_.cluster_size;
  const uint64_t limit = std::min(max_len, info_.virtual_size - off);
  uint64_t c = off / cs;
  const uint64_t in_cluster = off % cs;
  // Clusters past the BAT are holes up to the end.
  if (c >= bat_.size()) return Mapping{false, 0, limit};
  uint32_t entry = bat_[c];
  Mapping m{entry != 0, entry != 0 ? HostOf(entry) + in_cluster : 0,
            std::min(limit, cs - in_cluster)};
  // Extend over following clusters: holes, or stored right after this one in the file.
  while (m.length < limit) {
    if (++c >= bat_.size()) {
      if (!m.stored) m.length = limit;
      break;
    }
    uint32_t next = bat_[c];
    if ((next != 0) != m.stored) break;
    if (m.stored && HostOf(next) != HostOf(entry) + cs) break;
    entry = next;
    m.length += std::min(cs, limit - m.length);
  }
  return m;
}

Status PloopReader::CheckStored(uint64_t off, const Mapping& m) const {
  const uint64_t file_size = file_->size();
  if (m.host_offset <= file_size && m.length <= file_size - m.host_offset) return Status::Ok();
  // The first cluster of the run that is not all in the file.
  uint64_t inside = m.host_offset < file_size ? file_size - m.host_offset : 0;
  uint64_t c = (off + inside) / info_.cluster_size;
  return Status::Corruption("parallels: cluster " + std::to_string(c) + " (BAT entry " +
                            Hex(bat_[c]) + ") is stored at " + Hex(HostOf(bat_[c])) +
                            ", past the end of the file (" + std::to_string(file_size) + " bytes)");
}

Status PloopReader::ReadAt(uint64_t off, size_t n, char* dst) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("parallels", off, n, info_.virtual_size));
  while (n > 0) {
    Mapping m = Map(off, n);
    if (m.stored) {
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

Status PloopReader::ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("parallels", off, n, info_.virtual_size));
  return PinRuns("parallels", off, n, out, [&](uint64_t at, uint64_t max_len) -> Result<uint64_t> {
    Mapping m = Map(at, max_len);
    if (m.stored) {
      GLANCEFS_RETURN_IF_ERROR(CheckStored(at, m));
      GLANCEFS_RETURN_IF_ERROR(file_->ReadPinned(m.host_offset, m.length, out));
    } else {
      PinZeros(m.length, out);
    }
    return m.length;
  });
}

Result<Extent> PloopReader::MapExtent(uint64_t off) {
  if (off >= info_.virtual_size) return Status::OutOfRange("parallels: extent past the end");
  const uint64_t cs = info_.cluster_size;
  uint64_t c = off / cs;
  if (c >= bat_.size()) return Extent{off, info_.virtual_size - off, Extent::Kind::kHole};
  const bool stored = bat_[c] != 0;
  uint64_t end = (c + 1) * cs;
  for (uint64_t scanned = 1; end < info_.virtual_size && scanned < kMaxExtentClusters; ++scanned) {
    uint64_t next = end / cs;
    if (next >= bat_.size()) {
      if (!stored) end = info_.virtual_size;
      break;
    }
    if ((bat_[next] != 0) != stored) break;
    end += cs;
  }
  return Extent{off, std::min(end, info_.virtual_size) - off,
                stored ? Extent::Kind::kData : Extent::Kind::kHole};
}

}  // namespace glancefs::format
