#include "fs/format/vmdk_reader.h"

#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string_view>

#include "fs/format/runs.h"
#include "fs/format/vmdk_descriptor.h"

namespace glancefs::format {
namespace {

// The hosted sparse extent header (VMware "Virtual Disk Format" 5.0, SparseExtentHeader;
// qemu's VMDK4Header after the magic), little-endian, in the first sector.
constexpr uint64_t kSector = 512;
constexpr uint64_t kHdrVersion = 4, kHdrFlags = 8, kHdrCapacity = 12, kHdrGrain = 20,
                   kHdrDescOffset = 28, kHdrDescSize = 36, kHdrGtes = 44, kHdrGdOffset = 56,
                   kHdrGrainOffset = 64, kHdrCheckBytes = 73, kHdrCompress = 77;
constexpr uint32_t kFlagNlDetect = 1 << 0;
constexpr uint32_t kFlagZeroGrain = 1 << 2;
constexpr uint32_t kFlagMarkers = 1 << 17;
constexpr uint16_t kCompressDeflate = 1;
constexpr uint64_t kGdAtEnd = ~uint64_t{0};
constexpr uint32_t kMarkerEos = 0, kMarkerFooter = 3;
constexpr uint64_t kGrainMarkerBytes = 12;  // lba (8) + size (4), then the zlib stream
constexpr uint64_t kGtEntries = 512;
constexpr uint64_t kGtBytes = kGtEntries * 4;
constexpr uint32_t kZeroedGte = 1;
constexpr uint64_t kMaxGrainSectors = 4096;              // 2 MiB
constexpr uint64_t kMaxCapacitySectors = 1ULL << 54;     // 8 EiB: capacity * 512 cannot wrap
constexpr uint64_t kMaxDescriptorSectors = 2048;         // 1 MiB, Glance's and qemu's bound
constexpr uint64_t kQemuDescriptorBytes = 20 * kSector;  // what qemu searches for a parent
constexpr uint64_t kProbeBytes = 2048;

// Per-thread buffers for compressed grains: no allocation once a thread has read one. The
// inflated grain stays valid across reads: (reader id, marker offset) names it for good.
struct GrainBuffers {
  std::vector<char> in;
  std::vector<char> out;
  uint64_t owner = 0;  // VmdkReader id; 0: nothing
  uint64_t host_offset = 0;
};
thread_local GrainBuffers t_buffers;
std::atomic<uint64_t> g_next_id{1};

// A zlib stream (RFC 1950, as qemu's compress() and VMware write it) into `out`; returns the
// number of bytes it inflated to, or Corruption when it does not end within `out_len`.
Result<uint64_t> InflateGrain(const char* in, size_t in_len, char* out, size_t out_len) {
  z_stream z;
  std::memset(&z, 0, sizeof z);
  if (inflateInit(&z) != Z_OK) return Status::IOError("zlib: cannot initialize");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in));
  z.avail_in = static_cast<uInt>(in_len);
  z.next_out = reinterpret_cast<Bytef*>(out);
  z.avail_out = static_cast<uInt>(out_len);
  int ret = inflate(&z, Z_FINISH);
  uint64_t produced = out_len - z.avail_out;
  inflateEnd(&z);
  if (ret != Z_STREAM_END) return Status::Corruption("deflate stream does not end in its grain");
  return produced;
}

}  // namespace

VmdkReader::VmdkReader(std::shared_ptr<ByteSource> file, const VmdkLimits& limits)
    : file_(std::move(file)), limits_(limits), id_(g_next_id.fetch_add(1)) {
  gt_cache_.set_capacity(std::max<uint64_t>(1, limits_.gt_cache_bytes / kGtBytes));
}

Result<std::shared_ptr<VmdkReader>> VmdkReader::Open(std::shared_ptr<ByteSource> file,
                                                     const VmdkLimits& limits) {
  std::shared_ptr<VmdkReader> r(new VmdkReader(std::move(file), limits));
  uint64_t file_size = r->file_->size();
  if (file_size < 4) return Status::Refused("vmdk: file too short for a header");
  unsigned char h[kSector] = {};
  GLANCEFS_RETURN_IF_ERROR(
      r->file_->ReadAt(0, std::min(kSector, file_size), reinterpret_cast<char*>(h)));
  if (std::memcmp(h, "COWD", 4) == 0) {
    return Status::Refused("vmdk: COWD (VMDK3, vmfsSparse) extents are not supported");
  }
  if (std::memcmp(h, "KDMV", 4) != 0) return RefuseVmdkDescriptorFile(*r->file_);
  if (file_size < kSector) return Status::Corruption("vmdk: file too short for its header");
  GLANCEFS_RETURN_IF_ERROR(r->ParseHeader(h));
  if (LoadLE64(reinterpret_cast<const char*>(h) + kHdrGdOffset) == kGdAtEnd) {
    unsigned char footer_header[kSector];
    GLANCEFS_RETURN_IF_ERROR(r->ReadFooter(h, footer_header));
    GLANCEFS_RETURN_IF_ERROR(r->ParseHeader(footer_header));
    r->info_.gd_at_end = true;
  }
  GLANCEFS_RETURN_IF_ERROR(r->CheckDescriptor());
  GLANCEFS_RETURN_IF_ERROR(r->LoadGrainDirectory());
  return r;
}

Status VmdkReader::CheckHostRange(uint64_t off, uint64_t len, const char* what) const {
  return CheckInFile(*file_, "vmdk", what, off, len);
}

Status VmdkReader::ParseHeader(const unsigned char* h) {
  const char* p = reinterpret_cast<const char*>(h);
  info_.version = LoadLE32(p + kHdrVersion);
  if (info_.version < 1 || info_.version > 3) {
    return Status::Refused("vmdk: version " + std::to_string(info_.version) +
                           " is not supported (only 1, 2 and 3)");
  }
  info_.flags = LoadLE32(p + kHdrFlags);
  capacity_sectors_ = LoadLE64(p + kHdrCapacity);
  if (capacity_sectors_ == 0) {
    return Status::Refused("vmdk: capacity 0 (qemu would follow the descriptor's extents)");
  }
  if (capacity_sectors_ > kMaxCapacitySectors) {
    return Status::Refused("vmdk: capacity of " + std::to_string(capacity_sectors_) +
                           " sectors is too large");
  }
  grain_sectors_ = LoadLE64(p + kHdrGrain);
  if (grain_sectors_ == 0 || grain_sectors_ > kMaxGrainSectors ||
      (grain_sectors_ & (grain_sectors_ - 1)) != 0) {
    return Status::Refused("vmdk: grain of " + std::to_string(grain_sectors_) +
                           " sectors is not a power of two from 1 sector to 2 MiB");
  }
  uint32_t gtes = LoadLE32(p + kHdrGtes);
  if (gtes != kGtEntries) {
    return Status::Refused("vmdk: numGTEsPerGT " + std::to_string(gtes) +
                           " is not supported (only 512)");
  }
  uint64_t desc_offset = LoadLE64(p + kHdrDescOffset);
  desc_sectors_ = LoadLE64(p + kHdrDescSize);
  if (desc_offset != 1 || desc_sectors_ == 0 || desc_sectors_ > kMaxDescriptorSectors) {
    return Status::Refused("vmdk: embedded descriptor at sector " + std::to_string(desc_offset) +
                           " (" + std::to_string(desc_sectors_) +
                           " sectors); it must start at sector 1 and be at most 1 MiB");
  }
  uint16_t compress = LoadLE16(p + kHdrCompress);
  if (compress > kCompressDeflate) {
    return Status::Refused("vmdk: compression algorithm " + std::to_string(compress) +
                           " is not supported (only deflate)");
  }
  if ((info_.flags & kFlagNlDetect) && std::memcmp(p + kHdrCheckBytes, "\n \r\n", 4) != 0) {
    return Status::Corruption("vmdk: newline check bytes are mangled (a text-mode transfer?)");
  }
  info_.compressed = compress == kCompressDeflate;
  info_.markers = info_.flags & kFlagMarkers;
  info_.zeroed_grain = info_.flags & kFlagZeroGrain;
  info_.grain_bytes = grain_sectors_ * kSector;
  info_.virtual_size = capacity_sectors_ * kSector;
  gd_sector_ = LoadLE64(p + kHdrGdOffset);
  grain_offset_sectors_ = LoadLE64(p + kHdrGrainOffset);
  return Status::Ok();
}

// The footer (stream-optimized): a footer marker sector, a copy of the header, an
// end-of-stream marker sector, at the very end of the file. qemu's checks, and Glance's.
Status VmdkReader::ReadFooter(const unsigned char* h, unsigned char* footer_header) {
  uint64_t file_size = file_->size();
  if (file_size < 4 * kSector) return Status::Corruption("vmdk: file too short for a footer");
  uint64_t at = file_size - 3 * kSector;
  std::vector<char> f(3 * kSector);
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(at, f.size(), f.data()));
  auto marker_ok = [&](const char* m, uint32_t type, bool zero_val) {
    if ((zero_val && LoadLE64(m) != 0) || LoadLE32(m + 8) != 0 || LoadLE32(m + 12) != type) {
      return false;
    }
    return std::all_of(m + 16, m + kSector, [](char c) { return c == 0; });
  };
  const char* fh = f.data() + kSector;
  const char* hp = reinterpret_cast<const char*>(h);
  std::string why;
  if (!marker_ok(f.data(), kMarkerFooter, false)) why = "no footer marker";
  if (why.empty() && !marker_ok(fh + kSector, kMarkerEos, true)) why = "no end-of-stream marker";
  if (why.empty() && std::memcmp(fh, "KDMV", 4) != 0) why = "bad magic";
  if (why.empty() && LoadLE32(fh + kHdrVersion) != LoadLE32(hp + kHdrVersion)) {
    why = "a version other than the header's";
  }
  if (why.empty() && (LoadLE64(fh + kHdrDescOffset) != LoadLE64(hp + kHdrDescOffset) ||
                      LoadLE64(fh + kHdrDescSize) != LoadLE64(hp + kHdrDescSize))) {
    why = "a descriptor other than the header's";
  }
  if (why.empty() && LoadLE64(fh + kHdrGdOffset) == kGdAtEnd) why = "another footer";
  if (!why.empty()) {
    return Status::Corruption(
        "vmdk: the header says the footer holds the grain directory, "
        "but the footer at " +
        Hex(at) + " has " + why);
  }
  std::memcpy(footer_header, fh, kSector);
  return Status::Ok();
}

Status VmdkReader::CheckDescriptor() {
  uint64_t file_size = file_->size();
  uint64_t desc_bytes = desc_sectors_ * kSector;
  GLANCEFS_RETURN_IF_ERROR(CheckHostRange(kSector, desc_bytes, "descriptor"));
  uint64_t view_bytes = std::min(std::max(desc_bytes, kQemuDescriptorBytes), file_size - kSector);
  std::string buf(view_bytes, '\0');
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(kSector, buf.size(), buf.data()));
  std::string_view qemu_view(buf.data(), std::min(buf.size(), buf.find('\0')));
  std::string_view text = qemu_view.substr(0, std::min<uint64_t>(qemu_view.size(), desc_bytes));
  return CheckVmdkDescriptor(text, qemu_view, capacity_sectors_, &info_);
}

Status VmdkReader::LoadGrainDirectory() {
  uint64_t file_size = file_->size();
  if (grain_offset_sectors_ > file_size / kSector) {
    return Status::Corruption("vmdk: grainOffset sector " + std::to_string(grain_offset_sectors_) +
                              " is past the end of the file: truncated?");
  }
  uint64_t span = grain_sectors_ * kGtEntries;  // sectors one grain table maps
  uint64_t entries = (capacity_sectors_ + span - 1) / span;
  if (entries * 4 > limits_.max_gd_bytes) {
    return Status::Refused("vmdk: grain directory of " + std::to_string(entries * 4) +
                           " bytes is larger than the limit");
  }
  if (gd_sector_ == 0) return Status::Corruption("vmdk: the grain directory is over the header");
  if (gd_sector_ > file_size / kSector) {
    return Status::Corruption("vmdk: grain directory at sector " + std::to_string(gd_sector_) +
                              " is outside the file (" + std::to_string(file_size) + " bytes)");
  }
  GLANCEFS_RETURN_IF_ERROR(CheckHostRange(gd_sector_ * kSector, entries * 4, "grain directory"));
  std::vector<char> raw(entries * 4);
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(gd_sector_ * kSector, raw.size(), raw.data()));
  gd_.resize(entries);
  for (uint64_t i = 0; i < entries; ++i) gd_[i] = LoadLE32(&raw[i * 4]);
  return Status::Ok();
}

Result<std::shared_ptr<const VmdkReader::GrainTable>> VmdkReader::GetGrainTable(
    uint64_t gt_sector) {
  return gt_cache_.Get(gt_sector, [&]() -> Result<std::shared_ptr<GrainTable>> {
    GLANCEFS_RETURN_IF_ERROR(CheckHostRange(gt_sector * kSector, kGtBytes, "grain table"));
    char raw[kGtBytes];
    GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(gt_sector * kSector, kGtBytes, raw));
    auto table = std::make_shared<GrainTable>(kGtEntries);
    for (size_t i = 0; i < kGtEntries; ++i) (*table)[i] = LoadLE32(raw + i * 4);
    return table;
  });
}

Result<VmdkReader::Mapping> VmdkReader::Map(uint64_t off, uint64_t max_len) {
  const uint64_t grain = info_.grain_bytes;
  const uint64_t span = grain * kGtEntries;
  uint64_t limit = std::min({max_len, span - off % span, info_.virtual_size - off});
  uint64_t gt_sector = gd_[off / span];
  if (gt_sector == 0) return Mapping{Kind::kUnallocated, 0, limit};
  GLANCEFS_ASSIGN_OR_RETURN(auto gt, GetGrainTable(gt_sector));
  // Classifies the grain holding guest offset `g`; *host is where byte `g` (or its marker) is.
  auto classify = [&](uint64_t g, uint64_t* host) {
    uint32_t entry = (*gt)[(g / grain) % kGtEntries];
    *host = 0;
    if (entry == 0) return Kind::kUnallocated;
    if (entry == kZeroedGte && info_.zeroed_grain) return Kind::kZero;
    *host = uint64_t{entry} * kSector;
    if (info_.compressed) return Kind::kCompressed;
    *host += g % grain;
    return Kind::kData;
  };
  uint64_t host = 0;
  Kind kind = classify(off, &host);
  uint64_t len = std::min(limit, grain - off % grain);
  if (kind == Kind::kCompressed) return Mapping{kind, host, len};
  uint64_t expected_host = host + len;
  while (len < limit) {
    uint64_t next_host = 0;
    Kind next = classify(off + len, &next_host);
    if (next != kind || (kind == Kind::kData && next_host != expected_host)) break;
    uint64_t step = std::min(grain, limit - len);
    len += step;
    expected_host += step;
  }
  return Mapping{kind, host, len};
}

Status VmdkReader::ReadCompressed(const Mapping& m, uint64_t off, char* dst, uint64_t n) {
  GrainBuffers& b = t_buffers;
  const uint64_t grain = info_.grain_bytes;
  const uint64_t grain_start = off - off % grain;
  if (b.owner != id_ || b.host_offset != m.host_offset) {
    b.owner = 0;
    uint64_t data_off = m.host_offset, data_len = 0;
    if (info_.markers) {
      char marker[kGrainMarkerBytes];
      GLANCEFS_RETURN_IF_ERROR(CheckHostRange(m.host_offset, sizeof marker, "grain marker"));
      GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(m.host_offset, sizeof marker, marker));
      uint64_t lba = LoadLE64(marker);
      data_len = LoadLE32(marker + 8);
      if (lba != grain_start / kSector) {
        return Status::Corruption("vmdk: grain marker at " + Hex(m.host_offset) + " is for lba " +
                                  std::to_string(lba) + ", the grain table says " +
                                  std::to_string(grain_start / kSector));
      }
      if (data_len == 0 || data_len > 2 * grain) {
        return Status::Corruption("vmdk: compressed grain at " + Hex(m.host_offset) + " of " +
                                  std::to_string(data_len) + " bytes");
      }
      data_off += kGrainMarkerBytes;
      GLANCEFS_RETURN_IF_ERROR(CheckHostRange(data_off, data_len, "compressed grain"));
    } else {
      // No marker: the stream starts at the entry and ends within one grain, as qemu reads it.
      GLANCEFS_RETURN_IF_ERROR(CheckHostRange(data_off, 1, "compressed grain"));
      data_len = std::min(grain, file_->size() - data_off);
    }
    if (b.in.size() < data_len) b.in.resize(data_len);
    if (b.out.size() < grain) b.out.resize(grain);
    GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(data_off, data_len, b.in.data()));
    auto produced = InflateGrain(b.in.data(), data_len, b.out.data(), grain);
    if (!produced.ok()) {
      return produced.status().WithContext("vmdk: compressed grain at " + Hex(m.host_offset));
    }
    // The last grain of a disk whose size is not a multiple of grains may be shorter.
    if (*produced < std::min(grain, info_.virtual_size - grain_start)) {
      return Status::Corruption("vmdk: compressed grain at " + Hex(m.host_offset) +
                                " inflates to " + std::to_string(*produced) + " bytes only");
    }
    std::memset(b.out.data() + *produced, 0, grain - *produced);
    b.owner = id_;
    b.host_offset = m.host_offset;
  }
  std::memcpy(dst, b.out.data() + (off - grain_start), n);
  return Status::Ok();
}

Status VmdkReader::ReadAt(uint64_t off, size_t n, char* dst) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("vmdk", off, n, info_.virtual_size));
  while (n > 0) {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(off, n));
    switch (m.kind) {
      case Kind::kUnallocated:
      case Kind::kZero:
        std::memset(dst, 0, m.length);
        break;
      case Kind::kData:
        GLANCEFS_RETURN_IF_ERROR(CheckHostRange(m.host_offset, m.length, "grain"));
        GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(m.host_offset, m.length, dst));
        break;
      case Kind::kCompressed:
        GLANCEFS_RETURN_IF_ERROR(ReadCompressed(m, off, dst, m.length));
        break;
    }
    off += m.length;
    dst += m.length;
    n -= m.length;
  }
  return Status::Ok();
}

Result<Extent> VmdkReader::MapExtent(uint64_t off) {
  if (off >= info_.virtual_size) return Status::OutOfRange("vmdk: extent past the end");
  return MergeRuns(off, info_.virtual_size, [&](uint64_t at, uint64_t max_len) -> Result<Extent> {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(at, max_len));
    switch (m.kind) {
      case Kind::kUnallocated:
        return Extent{at, m.length, Extent::Kind::kHole};
      case Kind::kZero:
        return Extent{at, m.length, Extent::Kind::kZero};
      case Kind::kData:
      case Kind::kCompressed:
        break;
    }
    return Extent{at, m.length, Extent::Kind::kData};
  });
}

namespace {

// KDMV and COWD sparse extents; descriptor text as Glance ("# Disk DescriptorFile") and qemu
// (blank and comment lines, then "version=1|2|3") recognize it.
Result<bool> ProbeVmdk(ByteSource& src) {
  std::string buf(std::min<uint64_t>(src.size(), kProbeBytes), '\0');
  GLANCEFS_RETURN_IF_ERROR(src.ReadAt(0, buf.size(), buf.data()));
  std::string_view p(buf);
  if (p.starts_with("KDMV") || p.starts_with("COWD") || p.starts_with("# Disk DescriptorFile")) {
    return true;
  }
  while (!p.empty()) {
    size_t nl = p.find('\n');
    std::string_view line = p.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (nl != std::string_view::npos &&
        (line == "version=1" || line == "version=2" || line == "version=3")) {
      return true;
    }
    bool blank = line.find_first_not_of(' ') == std::string_view::npos;
    if (nl == std::string_view::npos || (!blank && line[0] != '#')) return false;
    p.remove_prefix(nl + 1);
  }
  return false;
}

Result<Decoded> OpenVmdk(std::shared_ptr<ByteSource> file) {
  GLANCEFS_ASSIGN_OR_RETURN(auto reader, VmdkReader::Open(std::move(file)));
  const VmdkInfo& v = reader->info();
  Decoded d;
  d.info.format = "vmdk";
  d.info.virtual_size = v.virtual_size;
  d.info.facts = {{"subformat", v.subformat},
                  {"version", std::to_string(v.version)},
                  {"grain_size", std::to_string(v.grain_bytes)},
                  {"compression", v.compressed ? "deflate" : "none"}};
  if (!v.adapter_type.empty()) d.info.facts.emplace_back("adapter_type", v.adapter_type);
  if (!v.hardware_version.empty()) {
    d.info.facts.emplace_back("hardware_version", v.hardware_version);
  }
  d.info.facts.emplace_back("zeroed_grain", v.zeroed_grain ? "true" : "false");
  d.info.facts.emplace_back("footer", v.gd_at_end ? "true" : "false");
  if (!v.cid.empty()) d.info.facts.emplace_back("cid", v.cid);
  d.raw = std::move(reader);
  return d;
}

}  // namespace

const FormatSpec kVmdkFormat{"vmdk", ProbeVmdk, OpenVmdk};

}  // namespace glancefs::format
