// Qcow2Synth: any raw ByteSource presented as a valid qcow2 v3 file, synthesized on read.
//
// The file is a pure function of (raw size, raw allocation map, cluster size): Open walks
// raw->MapExtent over the whole source (metadata only, never a data byte) and keeps the
// allocated guest clusters as a sorted list of runs. Every byte of the file is then computed
// on demand: the header, refcount table, refcount blocks, L1 and L2 tables from the runs (binary
// search, prefix counts), data clusters by reading the raw source at the guest offset (one
// ReadAt per contiguous run, or ReadPinned: pieces of the source's own buffers). Nothing is cached and nothing changes after Open, so reads are
// thread-safe without a lock and the size is known at stat time.
//
// Layout, in host clusters (docs/FORMATS-qcow2-synth.md has the proof of validity):
//   0                     header (version 3, refcount_order 4, header_length 104, then the
//                         end-of-extensions marker; no backing file, no features)
//   1 ..                  refcount table (refcount_table_clusters clusters)
//   ..                    refcount blocks (16-bit refcounts; all used clusters have refcount 1)
//   ..                    L1 table (l1_size = ceil(guest clusters / (cluster_size / 8)))
//   ..                    L2 tables, one per L1 entry that maps at least one data cluster
//   data_offset ..        data clusters, the n-th allocated guest cluster at data_offset + n*C
// A guest cluster is allocated iff some byte of it is kData in the raw map; clusters wholly in
// kHole/kZero extents are unallocated (L2 entry 0; L1 entry 0 for an L2 range with none) and
// read as zeros. Every L1/L2 entry that points somewhere carries QCOW_OFLAG_COPIED (bit 63),
// as qemu expects of clusters whose refcount is 1. The last data cluster is padded with zeros
// when the raw size is not cluster aligned.
//
// The virtual size is raw->size() rounded up to a multiple of 512, the padding reading as
// zeros: qemu reads a qcow2 size in whole sectors, rounding down (qcow2_do_open), and a raw
// file's size rounding up, so only the rounded-up size makes `qemu-img compare` find the two
// identical -- and it is the size `qemu-img convert -O qcow2` itself writes for such a file.
//
// Refused at Open (NotSupported, with the numbers): a virtual size whose L1 table would exceed
// qemu's 32 MiB limit, a file whose refcount table would exceed qemu's 8 MiB limit or whose
// offsets would not fit in an L2 entry, and an allocation map whose runs would take more than
// Qcow2SynthOptions::max_map_bytes. A bad cluster size is InvalidArgument; a raw MapExtent that
// breaks its contract (an extent that does not start at the offset asked, or is empty) is
// Corruption; other errors from `raw` pass through.
//
// Memory: 32 bytes per run of contiguous allocated guest clusters, nothing per L1 entry, per
// L2 table or per data cluster. One run for a fully allocated source of any size; a 16 TiB
// sparse source with a few scattered extents takes a few hundred bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "fs/base/byte_source.h"

namespace glancefs::format {

struct Qcow2SynthOptions {
  // Bytes per cluster: a power of two from 512 B to 2 MiB. Default 64 KiB: qemu-img's default,
  // and the size at which the L1 and refcount limits allow 2 PiB.
  uint64_t cluster_size = 64 << 10;
  // Most bytes the allocation map (32 bytes per run of allocated clusters) may take. Default
  // 64 MiB: two million runs, far more than any real image's extent map at 64 KiB clusters.
  uint64_t max_map_bytes = 64 << 20;
};

// Where everything is, in bytes (offsets) and clusters (counts). Constant after Open.
struct Qcow2SynthLayout {
  uint64_t cluster_size = 0;
  uint32_t cluster_bits = 0;
  uint64_t raw_size = 0;        // raw->size()
  uint64_t virtual_size = 0;    // the header's size: raw_size rounded up to 512
  uint64_t guest_clusters = 0;  // ceil(virtual_size / cluster_size)
  uint64_t l1_entries = 0;      // ceil(guest_clusters / (cluster_size / 8))
  uint64_t refcount_table_offset = 0;
  uint64_t refcount_table_clusters = 0;
  uint64_t refcount_blocks_offset = 0;
  uint64_t refcount_blocks = 0;
  uint64_t l1_offset = 0;  // 0 when l1_entries is 0, as qemu-img create writes it
  uint64_t l1_clusters = 0;
  uint64_t l2_offset = 0;
  uint64_t l2_tables = 0;
  uint64_t data_offset = 0;
  uint64_t data_clusters = 0;
  uint64_t file_clusters = 0;  // every cluster of the file, each with refcount 1
  uint64_t file_size = 0;      // file_clusters * cluster_size
};

class Qcow2Synth final : public ByteSource {
 public:
  // Walks raw's allocation map and computes the layout. Reads no data.
  static Result<std::shared_ptr<Qcow2Synth>> Open(std::shared_ptr<ByteSource> raw,
                                                  const Qcow2SynthOptions& options = {});

  uint64_t size() const override { return layout_.file_size; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  // Data clusters as pieces of the raw source's own buffers (where it has them: the block
  // cache) and zeros; NotSupported for a read that touches the metadata, which ReadAt makes.
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override;
  // The whole file is data: every cluster is metadata or a data cluster, none is a hole.
  Result<Extent> MapExtent(uint64_t off) override;
  uint64_t allocated_bytes() const override { return layout_.file_size; }

  const Qcow2SynthLayout& layout() const { return layout_; }
  // Runs of allocated guest clusters held in memory (for tests and logs).
  size_t runs() const { return runs_.size(); }

 private:
  // Guest clusters [first, first + count), all allocated; rank: allocated clusters before
  // `first` (so its data sits at data_offset + rank * C); l2_ordinal: which allocated L2 table
  // maps `first` (0-based, in L2 region order).
  struct Run {
    uint64_t first;
    uint64_t count;
    uint64_t rank;
    uint64_t l2_ordinal;
  };

  Qcow2Synth(std::shared_ptr<ByteSource> raw, Qcow2SynthLayout layout)
      : raw_(std::move(raw)), layout_(layout) {}
  Status WalkAllocation(uint64_t max_runs);
  Status ComputeLayout();

  // Each fills dst with n bytes at offset `rel` into its region. REQUIRES: inside the region.
  void ReadHeader(uint64_t rel, size_t n, char* dst) const;
  void ReadRefcountTable(uint64_t rel, size_t n, char* dst) const;
  void ReadRefcountBlocks(uint64_t rel, size_t n, char* dst) const;
  void ReadL1(uint64_t rel, size_t n, char* dst) const;
  void ReadL2(uint64_t rel, size_t n, char* dst) const;
  Status ReadData(uint64_t rel, size_t n, char* dst) const;
  // The data region's bytes from `rel` (at most `max`, > 0) to the end of their run of
  // clusters: `len` bytes of the raw source at `guest`, then `zeros` zeros (a last cluster past
  // the raw size).
  struct DataPiece {
    uint64_t guest;
    size_t len;
    size_t zeros;
  };
  DataPiece DataPieceAt(uint64_t rel, uint64_t max) const;

  // The first run that ends after guest cluster g (runs_.size() if none).
  size_t RunEndingAfter(uint64_t g) const;
  // The L1 index the L2 table of ordinal t maps. REQUIRES: t < l2_tables.
  uint64_t L1IndexOfTable(uint64_t t) const;

  // Constant after Open.
  const std::shared_ptr<ByteSource> raw_;
  Qcow2SynthLayout layout_;
  uint64_t l2_entries_ = 0;  // entries per L2 table: cluster_size / 8
  std::vector<Run> runs_;    // sorted, disjoint, never adjacent
};

}  // namespace glancefs::format
