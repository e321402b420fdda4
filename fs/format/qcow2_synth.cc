#include "fs/format/qcow2_synth.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "fs/format/format.h"
#include "fs/format/runs.h"

namespace glancefs::format {
namespace {

// qcow2.rst "Header", big-endian fields.
constexpr uint32_t kMagic = 0x514649fb;  // "QFI\xfb"
constexpr uint32_t kVersion = 3;
constexpr uint32_t kRefcountOrder = 4;  // 16-bit refcounts
constexpr uint32_t kHeaderLength = 104;
constexpr uint64_t kRefcountBytes = 2;  // 1 << kRefcountOrder bits
constexpr uint64_t kTableEntryBytes = 8;
constexpr uint64_t kSectorBytes = 512;    // qemu's unit of virtual size
constexpr uint32_t kMinClusterBits = 9;   // 512 B
constexpr uint32_t kMaxClusterBits = 21;  // 2 MiB
// qemu's limits (block/qcow2.h QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE): it refuses to open
// an image whose tables are larger.
constexpr uint64_t kMaxL1Bytes = 32 << 20;
constexpr uint64_t kMaxRefcountTableBytes = 8 << 20;
// L1/L2 entries hold host offsets in bits 9..55.
constexpr uint64_t kMaxFileBytes = uint64_t{1} << 56;
// QCOW_OFLAG_COPIED: the cluster's refcount is exactly 1 (all of ours are).
constexpr uint64_t kCopied = uint64_t{1} << 63;

uint64_t CeilDiv(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

void PutBE(unsigned char* p, uint64_t v, unsigned width) {
  for (unsigned i = 0; i < width; ++i) {
    p[i] = static_cast<unsigned char>(v >> (8 * (width - 1 - i)));
  }
}

// Fills dst with bytes [rel, rel + n) of a table of big-endian entries of `width` bytes, entry
// i being value_of(i). value_of is called once per entry, in increasing order, so it may keep
// a cursor.
template <typename ValueOf>
void FillEntries(uint64_t rel, size_t n, char* dst, unsigned width, ValueOf&& value_of) {
  const uint64_t end = rel + n;
  for (uint64_t i = rel / width; i * width < end; ++i) {
    unsigned char be[8];
    PutBE(be, value_of(i), width);
    uint64_t from = std::max(i * width, rel);
    uint64_t to = std::min((i + 1) * width, end);
    std::memcpy(dst + (from - rel), be + (from - i * width), to - from);
  }
}

}  // namespace

Result<std::shared_ptr<Qcow2Synth>> Qcow2Synth::Open(std::shared_ptr<ByteSource> raw,
                                                     const Qcow2SynthOptions& options) {
  if (!raw) return Status::InvalidArgument("qcow2 synth: no raw source");
  const uint64_t c = options.cluster_size;
  if (c < (uint64_t{1} << kMinClusterBits) || c > (uint64_t{1} << kMaxClusterBits) ||
      (c & (c - 1)) != 0) {
    return Status::InvalidArgument("qcow2 synth: cluster size " + std::to_string(c) +
                                   " is not a power of two from 512 B to 2 MiB");
  }
  Qcow2SynthLayout l;
  l.cluster_size = c;
  l.cluster_bits = static_cast<uint32_t>(__builtin_ctzll(c));
  l.raw_size = raw->size();
  if (l.raw_size > (uint64_t{1} << 62)) {
    return Status::NotSupported("qcow2 synth: a raw size of " + std::to_string(l.raw_size) +
                                " bytes is beyond any qcow2 file");
  }
  l.virtual_size = CeilDiv(l.raw_size, kSectorBytes) * kSectorBytes;
  l.guest_clusters = CeilDiv(l.virtual_size, c);
  const uint64_t l2_entries = c / kTableEntryBytes;
  l.l1_entries = CeilDiv(l.guest_clusters, l2_entries);
  if (l.l1_entries > kMaxL1Bytes / kTableEntryBytes) {
    return Status::NotSupported(
        "qcow2 synth: a virtual size of " + std::to_string(l.virtual_size) + " bytes needs " +
        std::to_string(l.l1_entries) + " L1 entries at " + std::to_string(c) +
        "-byte clusters, above qemu's 32 MiB L1 limit; use larger clusters");
  }
  std::shared_ptr<Qcow2Synth> s(new Qcow2Synth(std::move(raw), l));
  s->l2_entries_ = l2_entries;
  GLANCEFS_RETURN_IF_ERROR(s->WalkAllocation(options.max_map_bytes / sizeof(Run)));
  GLANCEFS_RETURN_IF_ERROR(s->ComputeLayout());
  s->runs_.shrink_to_fit();
  return s;
}

// One pass over raw's extents, merging the clusters they touch into runs; then the prefix
// counts (rank, l2_ordinal) in a second pass over the runs.
Status Qcow2Synth::WalkAllocation(uint64_t max_runs) {
  const uint64_t size = layout_.raw_size;
  const uint32_t bits = layout_.cluster_bits;
  for (uint64_t off = 0; off < size;) {
    GLANCEFS_ASSIGN_OR_RETURN(Extent e, raw_->MapExtent(off));
    if (e.offset != off || e.length == 0) {
      return Status::Corruption("qcow2 synth: the raw source mapped offset " + Hex(off) +
                                " to an extent at " + Hex(e.offset) + " of " +
                                std::to_string(e.length) + " bytes");
    }
    const uint64_t len = std::min(e.length, size - off);
    if (e.kind == Extent::Kind::kData) {
      const uint64_t first = off >> bits;
      const uint64_t end = ((off + len - 1) >> bits) + 1;
      if (!runs_.empty() && first <= runs_.back().first + runs_.back().count) {
        Run& r = runs_.back();
        r.count = std::max(r.first + r.count, end) - r.first;
      } else {
        if (runs_.size() >= max_runs) {
          return Status::NotSupported("qcow2 synth: the raw allocation map has more than " +
                                      std::to_string(max_runs) + " runs of data clusters (at " +
                                      Hex(off) + "), above max_map_bytes");
        }
        if (runs_.size() == runs_.capacity()) {  // grow, but never past the limit
          runs_.reserve(std::min<uint64_t>(max_runs, std::max<uint64_t>(16, 2 * runs_.size())));
        }
        runs_.push_back(Run{first, end - first, 0, 0});
      }
    }
    off += len;
  }
  const uint32_t l2_bits = bits - 3;
  uint64_t rank = 0;
  uint64_t next_table = 0;
  uint64_t prev_last_l1 = UINT64_MAX;
  for (Run& r : runs_) {
    r.rank = rank;
    rank += r.count;
    const uint64_t first_l1 = r.first >> l2_bits;
    const uint64_t last_l1 = (r.first + r.count - 1) >> l2_bits;
    // A run may start in the L2 table where the previous one ended.
    r.l2_ordinal = first_l1 == prev_last_l1 ? next_table - 1 : next_table;
    next_table = r.l2_ordinal + (last_l1 - first_l1) + 1;
    prev_last_l1 = last_l1;
  }
  layout_.data_clusters = rank;
  layout_.l2_tables = next_table;
  return Status::Ok();
}

// Places the regions and solves the refcount fixed point: the refcount blocks must count every
// cluster of the file, themselves and the refcount table included.
Status Qcow2Synth::ComputeLayout() {
  Qcow2SynthLayout& l = layout_;
  const uint64_t c = l.cluster_size;
  l.l1_clusters = CeilDiv(l.l1_entries * kTableEntryBytes, c);
  const uint64_t fixed = 1 + l.l1_clusters + l.l2_tables + l.data_clusters;
  const uint64_t clusters_per_block = c / kRefcountBytes;
  const uint64_t blocks_per_table_cluster = c / kTableEntryBytes;
  // f(rt, rb) = (ceil(rb' / E), rb') with rb' = ceil((fixed + rt + rb) / (C / 2)) is monotone;
  // iterating from (0, 0) climbs to its least fixed point in a few steps (each block counts
  // C / 2 clusters, so one more block rarely needs another).
  uint64_t table_clusters = 0;
  uint64_t blocks = 0;
  for (;;) {
    const uint64_t total = fixed + table_clusters + blocks;
    const uint64_t need_blocks = CeilDiv(total, clusters_per_block);
    const uint64_t need_table = CeilDiv(need_blocks, blocks_per_table_cluster);
    if (need_blocks == blocks && need_table == table_clusters) break;
    blocks = need_blocks;
    table_clusters = need_table;
  }
  l.refcount_table_clusters = table_clusters;
  l.refcount_blocks = blocks;
  l.file_clusters = fixed + table_clusters + blocks;
  if (table_clusters * c > kMaxRefcountTableBytes) {
    return Status::NotSupported("qcow2 synth: a file of " + std::to_string(l.file_clusters) +
                                " clusters needs a refcount table above qemu's 8 MiB limit");
  }
  if (l.file_clusters > (kMaxFileBytes >> l.cluster_bits)) {
    return Status::NotSupported("qcow2 synth: a file of " + std::to_string(l.file_clusters) +
                                " clusters has offsets beyond qcow2's 2^56");
  }
  l.refcount_table_offset = c;
  l.refcount_blocks_offset = l.refcount_table_offset + table_clusters * c;
  const uint64_t l1_region = l.refcount_blocks_offset + blocks * c;
  l.l1_offset = l.l1_entries == 0 ? 0 : l1_region;
  l.l2_offset = l1_region + l.l1_clusters * c;
  l.data_offset = l.l2_offset + l.l2_tables * c;
  l.file_size = l.file_clusters * c;
  return Status::Ok();
}

size_t Qcow2Synth::RunEndingAfter(uint64_t g) const {
  auto it = std::partition_point(runs_.begin(), runs_.end(),
                                 [g](const Run& r) { return r.first + r.count <= g; });
  return static_cast<size_t>(it - runs_.begin());
}

uint64_t Qcow2Synth::L1IndexOfTable(uint64_t t) const {
  // The last run whose first table has ordinal <= t maps table t (ordinals are contiguous:
  // a run's tables are l2_ordinal .. l2_ordinal + its L1 span, the next run starts at the last
  // of them or just after).
  auto it = std::partition_point(runs_.begin(), runs_.end(),
                                 [t](const Run& r) { return r.l2_ordinal <= t; });
  const Run& r = *(it - 1);
  return (r.first >> (layout_.cluster_bits - 3)) + (t - r.l2_ordinal);
}

Status Qcow2Synth::ReadAt(uint64_t off, size_t n, char* dst) {
  const Qcow2SynthLayout& l = layout_;
  if (off > l.file_size || n > l.file_size - off) {
    return Status::OutOfRange("qcow2 synth: read of " + std::to_string(n) + " bytes at " +
                              Hex(off) + " past the end (" + std::to_string(l.file_size) + ")");
  }
  enum class Region { kHeader, kRefcountTable, kRefcountBlocks, kL1, kL2, kData };
  struct Span {
    Region region;
    uint64_t start;
    uint64_t end;
  };
  const uint64_t l1_region = l.refcount_blocks_offset + l.refcount_blocks * l.cluster_size;
  const Span spans[] = {
      {Region::kHeader, 0, l.refcount_table_offset},
      {Region::kRefcountTable, l.refcount_table_offset, l.refcount_blocks_offset},
      {Region::kRefcountBlocks, l.refcount_blocks_offset, l1_region},
      {Region::kL1, l1_region, l.l2_offset},
      {Region::kL2, l.l2_offset, l.data_offset},
      {Region::kData, l.data_offset, l.file_size},
  };
  for (const Span& s : spans) {
    if (n == 0) break;
    if (off >= s.end) continue;
    const uint64_t rel = off - s.start;
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, s.end - off));
    switch (s.region) {
      case Region::kHeader:
        ReadHeader(rel, chunk, dst);
        break;
      case Region::kRefcountTable:
        ReadRefcountTable(rel, chunk, dst);
        break;
      case Region::kRefcountBlocks:
        ReadRefcountBlocks(rel, chunk, dst);
        break;
      case Region::kL1:
        ReadL1(rel, chunk, dst);
        break;
      case Region::kL2:
        ReadL2(rel, chunk, dst);
        break;
      case Region::kData:
        GLANCEFS_RETURN_IF_ERROR(ReadData(rel, chunk, dst));
        break;
    }
    off += chunk;
    dst += chunk;
    n -= chunk;
  }
  return Status::Ok();
}

void Qcow2Synth::ReadHeader(uint64_t rel, size_t n, char* dst) const {
  const Qcow2SynthLayout& l = layout_;
  // Bytes past header_length are the end-of-extensions marker (type 0, length 0) and zeros.
  unsigned char h[kHeaderLength] = {};
  PutBE(h + 0, kMagic, 4);
  PutBE(h + 4, kVersion, 4);
  // 8: backing_file_offset, 16: backing_file_size: 0.
  PutBE(h + 20, l.cluster_bits, 4);
  PutBE(h + 24, l.virtual_size, 8);
  // 32: crypt_method: 0.
  PutBE(h + 36, l.l1_entries, 4);
  PutBE(h + 40, l.l1_offset, 8);
  PutBE(h + 48, l.refcount_table_offset, 8);
  PutBE(h + 56, l.refcount_table_clusters, 4);
  // 60: nb_snapshots, 64: snapshots_offset, 72/80/88: incompatible, compatible and autoclear
  // features: 0.
  PutBE(h + 96, kRefcountOrder, 4);
  PutBE(h + 100, kHeaderLength, 4);
  std::memset(dst, 0, n);
  if (rel < kHeaderLength) std::memcpy(dst, h + rel, std::min<uint64_t>(n, kHeaderLength - rel));
}

void Qcow2Synth::ReadRefcountTable(uint64_t rel, size_t n, char* dst) const {
  const Qcow2SynthLayout& l = layout_;
  FillEntries(rel, n, dst, kTableEntryBytes, [&](uint64_t i) -> uint64_t {
    return i < l.refcount_blocks ? l.refcount_blocks_offset + i * l.cluster_size : 0;
  });
}

void Qcow2Synth::ReadRefcountBlocks(uint64_t rel, size_t n, char* dst) const {
  // The blocks are consecutive, so entry i of the region is the refcount of host cluster i.
  const uint64_t used = layout_.file_clusters;
  FillEntries(rel, n, dst, kRefcountBytes, [used](uint64_t i) -> uint64_t { return i < used; });
}

void Qcow2Synth::ReadL1(uint64_t rel, size_t n, char* dst) const {
  const Qcow2SynthLayout& l = layout_;
  const uint32_t l2_bits = l.cluster_bits - 3;
  const uint64_t first = std::min(rel / kTableEntryBytes, l.l1_entries);
  size_t k = RunEndingAfter(first << l2_bits);
  FillEntries(rel, n, dst, kTableEntryBytes, [&](uint64_t i) -> uint64_t {
    if (i >= l.l1_entries) return 0;  // padding to the end of the cluster
    const uint64_t g = i << l2_bits;  // the first guest cluster table i maps
    while (k < runs_.size() && runs_[k].first + runs_[k].count <= g) ++k;
    if (k == runs_.size() || runs_[k].first >= g + l2_entries_) return 0;
    const uint64_t ordinal = runs_[k].l2_ordinal + (i - (runs_[k].first >> l2_bits));
    return (l.l2_offset + ordinal * l.cluster_size) | kCopied;
  });
}

void Qcow2Synth::ReadL2(uint64_t rel, size_t n, char* dst) const {
  const Qcow2SynthLayout& l = layout_;
  const uint32_t bits = l.cluster_bits;
  while (n > 0) {
    const uint64_t table = rel >> bits;
    const uint64_t in = rel & (l.cluster_size - 1);
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, l.cluster_size - in));
    const uint64_t base = L1IndexOfTable(table) << (bits - 3);
    size_t k = RunEndingAfter(base + in / kTableEntryBytes);
    FillEntries(in, chunk, dst, kTableEntryBytes, [&](uint64_t j) -> uint64_t {
      const uint64_t g = base + j;
      while (k < runs_.size() && runs_[k].first + runs_[k].count <= g) ++k;
      if (k == runs_.size() || runs_[k].first > g) return 0;  // unallocated: reads as zeros
      const uint64_t data_cluster = runs_[k].rank + (g - runs_[k].first);
      return (l.data_offset + (data_cluster << bits)) | kCopied;
    });
    rel += chunk;
    dst += chunk;
    n -= chunk;
  }
}

Qcow2Synth::DataPiece Qcow2Synth::DataPieceAt(uint64_t rel, uint64_t max) const {
  const Qcow2SynthLayout& l = layout_;
  const uint32_t bits = l.cluster_bits;
  // The run holding data cluster rel / C; runs are consecutive in the data region.
  const uint64_t d = rel >> bits;
  const Run& r = *std::partition_point(runs_.begin(), runs_.end(),
                                       [d](const Run& run) { return run.rank + run.count <= d; });
  const uint64_t run_end = (r.rank + r.count) << bits;  // relative to data_offset
  const uint64_t chunk = std::min(max, run_end - rel);
  const uint64_t guest = (r.first << bits) + (rel - (r.rank << bits));
  // Only the last guest cluster may pass the raw size: its tail is zeros.
  const uint64_t len = guest < l.raw_size ? std::min(chunk, l.raw_size - guest) : 0;
  return {guest, static_cast<size_t>(len), static_cast<size_t>(chunk - len)};
}

Status Qcow2Synth::ReadData(uint64_t rel, size_t n, char* dst) const {
  while (n > 0) {
    const DataPiece p = DataPieceAt(rel, n);
    if (p.len > 0) GLANCEFS_RETURN_IF_ERROR(raw_->ReadAt(p.guest, p.len, dst));
    std::memset(dst + p.len, 0, p.zeros);
    rel += p.len + p.zeros;
    dst += p.len + p.zeros;
    n -= p.len + p.zeros;
  }
  return Status::Ok();
}

Status Qcow2Synth::ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
  const Qcow2SynthLayout& l = layout_;
  if (off < l.data_offset || off > l.file_size || n > l.file_size - off) {
    return Status::NotSupported("qcow2 synth: metadata is made into a buffer");
  }
  return PinRuns("qcow2 synth", off, n, out, [&](uint64_t at, uint64_t max) -> Result<uint64_t> {
    const DataPiece p = DataPieceAt(at - l.data_offset, max);
    if (p.len > 0) GLANCEFS_RETURN_IF_ERROR(raw_->ReadPinned(p.guest, p.len, out));
    PinZeros(p.zeros, out);
    return p.len + p.zeros;
  });
}

Result<Extent> Qcow2Synth::MapExtent(uint64_t off) {
  if (off >= layout_.file_size) {
    return Status::OutOfRange("qcow2 synth: extent at " + Hex(off) + " past the end");
  }
  return Extent{off, layout_.file_size - off, Extent::Kind::kData};
}

}  // namespace glancefs::format
