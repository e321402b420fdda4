#include "fs/format/qcow2_reader.h"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "fs/format/format.h"
#include "fs/format/runs.h"

namespace glancefs::format {
namespace {

// Header fields (qcow2.rst "Header"), big-endian.
constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
constexpr uint64_t kV2HeaderBytes = 72;
constexpr uint64_t kV3MinHeaderBytes = 104;
constexpr uint32_t kMinClusterBits = 9;   // 512 B
constexpr uint32_t kMaxClusterBits = 21;  // 2 MiB
constexpr uint32_t kMinExtendedL2ClusterBits = 14;

// Incompatible feature bits.
constexpr uint64_t kIncompatDirty = 1 << 0;
constexpr uint64_t kIncompatCorrupt = 1 << 1;
constexpr uint64_t kIncompatDataFile = 1 << 2;
constexpr uint64_t kIncompatCompression = 1 << 3;
constexpr uint64_t kIncompatExtendedL2 = 1 << 4;
constexpr uint64_t kIncompatKnown = kIncompatDirty | kIncompatCorrupt | kIncompatDataFile |
                                    kIncompatCompression | kIncompatExtendedL2;

// Header extension types.
constexpr uint32_t kExtEnd = 0;
constexpr uint32_t kExtDataFile = 0x44415441;
constexpr uint32_t kExtEncryption = 0x0537be77;

// Table entries.
constexpr uint64_t kL1OffsetMask = 0x00fffffffffffe00ULL;
constexpr uint64_t kL2OffsetMask = 0x00fffffffffffe00ULL;
constexpr uint64_t kL2Compressed = 1ULL << 62;
constexpr uint64_t kL2Zero = 1ULL << 0;
constexpr uint64_t kSubclusters = 32;
constexpr uint64_t kCompressedSectorBytes = 512;

// Per-thread buffers for compressed clusters: no allocation once a thread has read one.
struct CompressedBuffers {
  std::vector<char> in;
  std::vector<char> out;
  uint64_t out_host_offset = UINT64_MAX;  // which stream `out` holds, for this ReadAt only
  const void* out_owner = nullptr;
};
thread_local CompressedBuffers t_buffers;

Status InflateZlib(const char* in, size_t in_len, char* out, size_t out_len) {
  z_stream z;
  std::memset(&z, 0, sizeof z);
  // Raw deflate with a 4 KiB window, as qemu writes and reads it (qcow2-threads.c).
  if (inflateInit2(&z, -12) != Z_OK) return Status::IOError("zlib: cannot initialize");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in));
  z.avail_in = static_cast<uInt>(in_len);
  z.next_out = reinterpret_cast<Bytef*>(out);
  z.avail_out = static_cast<uInt>(out_len);
  int ret = inflate(&z, Z_FINISH);
  bool ok = (ret == Z_STREAM_END || ret == Z_BUF_ERROR) && z.avail_out == 0;
  inflateEnd(&z);
  return ok ? Status::Ok() : Status::Corruption("deflate stream does not fill its cluster");
}

Status InflateZstd(const char* in, size_t in_len, char* out, size_t out_len) {
  thread_local std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)> dctx(ZSTD_createDCtx(),
                                                                       ZSTD_freeDCtx);
  if (!dctx) return Status::IOError("zstd: cannot initialize");
  ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_only);
  ZSTD_inBuffer input{in, in_len, 0};
  ZSTD_outBuffer output{out, out_len, 0};
  size_t ret = 0;
  // As qemu: streams of one or more frames, until the cluster is full.
  while (output.pos < output.size) {
    size_t in_pos = input.pos, out_pos = output.pos;
    ret = ZSTD_decompressStream(dctx.get(), &output, &input);
    if (ZSTD_isError(ret)) {
      return Status::Corruption(std::string("zstd: ") + ZSTD_getErrorName(ret));
    }
    if (input.pos <= in_pos && output.pos <= out_pos) {
      return Status::Corruption("zstd stream does not fill its cluster");
    }
  }
  if (ret > 0) return Status::Corruption("zstd frame is not complete");
  return Status::Ok();
}

}  // namespace

Result<std::shared_ptr<Qcow2Reader>> Qcow2Reader::Open(std::shared_ptr<ByteSource> file,
                                                       const Qcow2Limits& limits) {
  std::shared_ptr<Qcow2Reader> r(new Qcow2Reader(std::move(file), limits));
  GLANCEFS_RETURN_IF_ERROR(r->ParseHeader());
  GLANCEFS_RETURN_IF_ERROR(r->LoadL1());
  r->l2_cache_.set_capacity(std::max<uint64_t>(1, limits.l2_cache_bytes / r->cluster_size_));
  return r;
}

Status Qcow2Reader::CheckHostRange(uint64_t off, uint64_t len, const char* what) const {
  return CheckInFile(*file_, "qcow2", what, off, len);
}

Status Qcow2Reader::ParseHeader() {
  char h[kV3MinHeaderBytes + 8] = {};
  uint64_t file_size = file_->size();
  if (file_size < kV2HeaderBytes) return Status::Refused("qcow2: file too short for a header");
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(0, std::min<uint64_t>(sizeof h, file_size), h));
  if (LoadBE32(h) != kMagic) return Status::Refused("qcow2: bad magic");
  info_.version = LoadBE32(h + 4);
  if (info_.version != 2 && info_.version != 3) {
    return Status::Refused("qcow2: version " + std::to_string(info_.version) +
                           " is not supported (only 2 and 3)");
  }
  uint64_t backing_offset = LoadBE64(h + 8);
  if (backing_offset != 0 || LoadBE32(h + 16) != 0) {
    return Status::Refused("qcow2: has a backing file (backing_file_offset " + Hex(backing_offset) +
                           "); images with backing files are refused");
  }
  info_.cluster_bits = LoadBE32(h + 20);
  if (info_.cluster_bits < kMinClusterBits || info_.cluster_bits > kMaxClusterBits) {
    return Status::Refused("qcow2: cluster_bits " + std::to_string(info_.cluster_bits) +
                           " is outside 9..21");
  }
  cluster_size_ = uint64_t{1} << info_.cluster_bits;
  info_.virtual_size = LoadBE64(h + 24);
  if (LoadBE32(h + 32) != 0) return Status::Refused("qcow2: encrypted images are refused");
  l1_entries_ = LoadBE32(h + 36);
  l1_offset_ = LoadBE64(h + 40);
  info_.snapshots = LoadBE32(h + 60);

  uint64_t header_bytes = kV2HeaderBytes;
  GLANCEFS_RETURN_IF_ERROR(ParseFeatures(h, file_size, &header_bytes));
  return ParseExtensions(header_bytes, std::min(cluster_size_, file_size));
}

Status Qcow2Reader::ParseFeatures(const char* h, uint64_t file_size, uint64_t* header_bytes) {
  uint64_t incompatible = 0;
  uint8_t compression_type = 0;
  if (info_.version == 3) {
    if (file_size < kV3MinHeaderBytes) return Status::Refused("qcow2: v3 header is truncated");
    incompatible = LoadBE64(h + 72);
    uint32_t refcount_order = LoadBE32(h + 96);
    *header_bytes = LoadBE32(h + 100);
    if (refcount_order > 6) return Status::Refused("qcow2: refcount_order above 6");
    if (*header_bytes < kV3MinHeaderBytes || *header_bytes > cluster_size_ ||
        *header_bytes > file_size) {
      return Status::Refused("qcow2: bad header_length " + std::to_string(*header_bytes));
    }
    if (*header_bytes > kV3MinHeaderBytes) compression_type = static_cast<uint8_t>(h[104]);
  }
  if (incompatible & kIncompatCorrupt) {
    return Status::Refused("qcow2: the image is marked corrupt");
  }
  if (incompatible & kIncompatDataFile) {
    return Status::Refused("qcow2: uses an external data file; such images are refused");
  }
  if (incompatible & ~kIncompatKnown) {
    return Status::Refused("qcow2: unknown incompatible features " +
                           Hex(incompatible & ~kIncompatKnown));
  }
  if (!(incompatible & kIncompatCompression) && compression_type != 0) {
    return Status::Refused("qcow2: compression_type set without its feature bit");
  }
  if (compression_type > 1) {
    return Status::Refused("qcow2: unknown compression type " + std::to_string(compression_type));
  }
  zstd_ = compression_type == 1;
  info_.compression = zstd_ ? "zstd" : "zlib";
  info_.extended_l2 = incompatible & kIncompatExtendedL2;
  if (info_.extended_l2 && info_.cluster_bits < kMinExtendedL2ClusterBits) {
    return Status::Refused("qcow2: extended L2 entries need clusters of 16 KiB or more");
  }
  l2_bits_ = info_.cluster_bits - (info_.extended_l2 ? 4 : 3);
  subcluster_size_ = info_.extended_l2 ? cluster_size_ / kSubclusters : cluster_size_;
  return Status::Ok();
}

Status Qcow2Reader::ParseExtensions(uint64_t start, uint64_t end) {
  uint64_t pos = start;
  while (pos + 8 <= end) {
    char e[8];
    GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(pos, sizeof e, e));
    uint32_t type = LoadBE32(e);
    uint64_t len = LoadBE32(e + 4);
    if (type == kExtEnd) return Status::Ok();
    if (type == kExtDataFile) {
      return Status::Refused("qcow2: names an external data file; such images are refused");
    }
    if (type == kExtEncryption) return Status::Refused("qcow2: encrypted images are refused");
    uint64_t next = pos + 8 + ((len + 7) & ~uint64_t{7});
    if (next > end) return Status::Refused("qcow2: header extension runs past the header cluster");
    pos = next;
  }
  // qemu accepts a header cluster that ends without an end marker.
  return Status::Ok();
}

Status Qcow2Reader::LoadL1() {
  // The L1 table must cover the virtual size, and stay within qemu's limits.
  uint64_t l2_span_bits = info_.cluster_bits + l2_bits_;
  if (l2_span_bits >= 63 || info_.virtual_size > (uint64_t{1} << 62)) {
    return Status::Refused("qcow2: virtual size " + std::to_string(info_.virtual_size) +
                           " is too large");
  }
  uint64_t needed = (info_.virtual_size + (uint64_t{1} << l2_span_bits) - 1) >> l2_span_bits;
  if (l1_entries_ < needed) {
    return Status::Refused("qcow2: L1 table has " + std::to_string(l1_entries_) +
                           " entries, the virtual size needs " + std::to_string(needed));
  }
  if (l1_entries_ * 8 > limits_.max_l1_bytes) {
    return Status::Refused("qcow2: L1 table of " + std::to_string(l1_entries_ * 8) +
                           " bytes is larger than the limit");
  }
  l1_entries_ = needed;  // entries past the virtual size are never read
  if (l1_entries_ == 0) return Status::Ok();
  if (l1_offset_ % cluster_size_ != 0 || l1_offset_ < cluster_size_) {
    return Status::Refused("qcow2: L1 table offset " + Hex(l1_offset_) +
                           " is unaligned or overlaps the header");
  }
  Status range = CheckHostRange(l1_offset_, l1_entries_ * 8, "L1 table");
  if (!range.ok()) return Status::Refused(range.message());
  std::vector<char> raw(l1_entries_ * 8);
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(l1_offset_, raw.size(), raw.data()));
  l1_.resize(l1_entries_);
  for (uint64_t i = 0; i < l1_entries_; ++i) l1_[i] = LoadBE64(&raw[i * 8]);
  return Status::Ok();
}

Result<std::shared_ptr<const Qcow2Reader::L2Table>> Qcow2Reader::GetL2(uint64_t l2_offset) {
  return l2_cache_.Get(l2_offset, [&]() -> Result<std::shared_ptr<L2Table>> {
    if (l2_offset % cluster_size_ != 0 || l2_offset < cluster_size_) {
      return Status::Corruption("qcow2: L2 table offset " + Hex(l2_offset) +
                                " is unaligned or overlaps the header");
    }
    GLANCEFS_RETURN_IF_ERROR(CheckHostRange(l2_offset, cluster_size_, "L2 table"));
    std::vector<char> raw(cluster_size_);
    GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(l2_offset, raw.size(), raw.data()));
    auto table = std::make_shared<L2Table>(cluster_size_ / 8);
    for (size_t i = 0; i < table->size(); ++i) (*table)[i] = LoadBE64(&raw[i * 8]);
    return table;
  });
}

uint64_t Qcow2Reader::L2EntryIndex(uint64_t g) const {
  const uint64_t entries_mask = (uint64_t{1} << l2_bits_) - 1;
  const uint64_t stride = info_.extended_l2 ? 2 : 1;
  return ((g >> info_.cluster_bits) & entries_mask) * stride;
}

Result<Qcow2Reader::Kind> Qcow2Reader::Classify(const L2Table& l2, uint64_t g,
                                                uint64_t* host) const {
  const uint64_t index = L2EntryIndex(g);
  const uint64_t entry = l2[index];
  const uint64_t cluster_host = entry & kL2OffsetMask;
  *host = 0;
  if (entry & kL2Compressed) {
    if (info_.extended_l2 && l2[index + 1] != 0) {
      return Status::Corruption("qcow2: compressed cluster with a subcluster bitmap at guest " +
                                Hex(g));
    }
    return Kind::kCompressed;
  }
  if (info_.extended_l2) return ClassifySubcluster(cluster_host, l2[index + 1], g, host);
  if (entry & kL2Zero) return Kind::kZero;
  if (cluster_host == 0) return Kind::kUnallocated;
  if (cluster_host & (cluster_size_ - 1)) {
    return Status::Corruption("qcow2: data cluster offset " + Hex(cluster_host) +
                              " is unaligned (guest " + Hex(g) + ")");
  }
  *host = cluster_host + (g & (cluster_size_ - 1));
  return Kind::kNormal;
}

Result<Qcow2Reader::Kind> Qcow2Reader::ClassifySubcluster(uint64_t cluster_host, uint64_t bitmap,
                                                          uint64_t g, uint64_t* host) const {
  uint64_t sc = (g & (cluster_size_ - 1)) / subcluster_size_;
  bool alloc = (bitmap >> sc) & 1, zero = (bitmap >> (32 + sc)) & 1;
  if (cluster_host == 0) {
    if (bitmap & 0xffffffffULL) {
      return Status::Corruption(
          "qcow2: unallocated cluster with allocated subclusters at "
          "guest " +
          Hex(g));
    }
    return zero ? Kind::kZero : Kind::kUnallocated;
  }
  if ((bitmap >> 32) & bitmap) {
    return Status::Corruption("qcow2: subcluster both allocated and zero at guest " + Hex(g));
  }
  if (cluster_host & (cluster_size_ - 1)) {
    return Status::Corruption("qcow2: data cluster offset " + Hex(cluster_host) +
                              " is unaligned (guest " + Hex(g) + ")");
  }
  if (zero) return Kind::kZero;
  if (!alloc) return Kind::kUnallocated;
  *host = cluster_host + (g & (cluster_size_ - 1));
  return Kind::kNormal;
}

Qcow2Reader::Mapping Qcow2Reader::CompressedRun(uint64_t entry, uint64_t off,
                                                uint64_t limit) const {
  uint32_t shift = 62 - (info_.cluster_bits - 8);
  uint64_t coffset = entry & ((uint64_t{1} << shift) - 1);
  uint64_t sectors = ((entry >> shift) & ((uint64_t{1} << (info_.cluster_bits - 8)) - 1)) + 1;
  uint64_t csize = sectors * kCompressedSectorBytes - (coffset & (kCompressedSectorBytes - 1));
  uint64_t len = std::min(limit, cluster_size_ - (off & (cluster_size_ - 1)));
  return Mapping{Kind::kCompressed, coffset, len, csize};
}

Result<Qcow2Reader::Mapping> Qcow2Reader::Map(uint64_t off, uint64_t max_len) {
  const uint64_t span_bits = info_.cluster_bits + l2_bits_;
  const uint64_t span = uint64_t{1} << span_bits;
  uint64_t limit = std::min({max_len, span - (off & (span - 1)), info_.virtual_size - off});
  uint64_t l2_offset = l1_[off >> span_bits] & kL1OffsetMask;
  if (l2_offset == 0) return Mapping{Kind::kUnallocated, 0, limit, 0};
  GLANCEFS_ASSIGN_OR_RETURN(auto l2, GetL2(l2_offset));

  uint64_t host = 0;
  GLANCEFS_ASSIGN_OR_RETURN(Kind kind, Classify(*l2, off, &host));
  if (kind == Kind::kCompressed) return CompressedRun((*l2)[L2EntryIndex(off)], off, limit);
  const uint64_t unit = subcluster_size_;
  uint64_t len = std::min(limit, unit - (off & (unit - 1)));
  uint64_t expected_host = host + len;
  while (len < limit) {
    uint64_t next_host = 0;
    GLANCEFS_ASSIGN_OR_RETURN(Kind next, Classify(*l2, off + len, &next_host));
    if (next != kind || (kind == Kind::kNormal && next_host != expected_host)) break;
    uint64_t step = std::min(unit, limit - len);
    len += step;
    expected_host += step;
  }
  return Mapping{kind, host, len, 0};
}

Status Qcow2Reader::ReadCompressed(const Mapping& m, uint64_t cluster_off, char* dst, uint64_t n) {
  CompressedBuffers& b = t_buffers;
  if (b.out_owner != this || b.out_host_offset != m.host_offset) {
    if (m.compressed_bytes > 2 * cluster_size_ || m.host_offset >= file_->size()) {
      return Status::Corruption("qcow2: compressed cluster at " + Hex(m.host_offset) +
                                " is outside the file or too large");
    }
    // The stream may end within the last sector of the file: read what exists.
    uint64_t avail = std::min(m.compressed_bytes, file_->size() - m.host_offset);
    if (b.in.size() < m.compressed_bytes) b.in.resize(m.compressed_bytes);
    if (b.out.size() < cluster_size_) b.out.resize(cluster_size_);
    GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(m.host_offset, avail, b.in.data()));
    std::memset(b.in.data() + avail, 0, m.compressed_bytes - avail);
    b.out_owner = nullptr;
    Status s = zstd_ ? InflateZstd(b.in.data(), m.compressed_bytes, b.out.data(), cluster_size_)
                     : InflateZlib(b.in.data(), m.compressed_bytes, b.out.data(), cluster_size_);
    if (!s.ok()) return s.WithContext("qcow2: compressed cluster at " + Hex(m.host_offset));
    b.out_owner = this;
    b.out_host_offset = m.host_offset;
  }
  std::memcpy(dst, b.out.data() + cluster_off, n);
  return Status::Ok();
}

Status Qcow2Reader::ReadAt(uint64_t off, size_t n, char* dst) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("qcow2", off, n, info_.virtual_size));
  // A compressed cluster is inflated at most once per ReadAt (and per thread).
  t_buffers.out_owner = nullptr;
  while (n > 0) {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(off, n));
    switch (m.kind) {
      case Kind::kUnallocated:
      case Kind::kZero:
        std::memset(dst, 0, m.length);
        break;
      case Kind::kNormal: {
        GLANCEFS_RETURN_IF_ERROR(CheckHostRange(m.host_offset, m.length, "data cluster"));
        GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(m.host_offset, m.length, dst));
        break;
      }
      case Kind::kCompressed:
        GLANCEFS_RETURN_IF_ERROR(ReadCompressed(m, off & (cluster_size_ - 1), dst, m.length));
        break;
    }
    off += m.length;
    dst += m.length;
    n -= m.length;
  }
  return Status::Ok();
}

Status Qcow2Reader::ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
  GLANCEFS_RETURN_IF_ERROR(CheckRead("qcow2", off, n, info_.virtual_size));
  return PinRuns("qcow2", off, n, out, [&](uint64_t at, uint64_t max_len) -> Result<uint64_t> {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(at, max_len));
    switch (m.kind) {
      case Kind::kUnallocated:
      case Kind::kZero:
        PinZeros(m.length, out);
        break;
      case Kind::kNormal:
        GLANCEFS_RETURN_IF_ERROR(CheckHostRange(m.host_offset, m.length, "data cluster"));
        GLANCEFS_RETURN_IF_ERROR(file_->ReadPinned(m.host_offset, m.length, out));
        break;
      case Kind::kCompressed:
        return Status::NotSupported("qcow2: compressed clusters are inflated");
    }
    return m.length;
  });
}

Result<Extent> Qcow2Reader::MapExtent(uint64_t off) {
  if (off >= info_.virtual_size) return Status::OutOfRange("qcow2: extent past the end");
  return MergeRuns(off, info_.virtual_size, [&](uint64_t at, uint64_t max_len) -> Result<Extent> {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(at, max_len));
    switch (m.kind) {
      case Kind::kUnallocated:
        return Extent{at, m.length, Extent::Kind::kHole};
      case Kind::kZero:
        return Extent{at, m.length, Extent::Kind::kZero};
      case Kind::kNormal:
      case Kind::kCompressed:
        break;
    }
    return Extent{at, m.length, Extent::Kind::kData};
  });
}

}  // namespace glancefs::format
