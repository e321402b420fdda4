// Qcow2Reader: the raw contents of a qcow2 image, decoded on read from the ByteSource below it.
//
// Spec: qemu's docs/interop/qcow2.rst. Supported: versions 2 and 3; cluster sizes 512 B to
// 2 MiB; unallocated and zero clusters; compressed clusters (deflate, zstd); extended L2
// entries with subclusters; internal snapshots (the active L1 is read, snapshots ignored);
// any virtual size the L1 table can address.
//
// Refused at Open, each with its own message (Status::Refused), as Glance's and Nova's format
// inspector refuse them: a backing file, an external data file, encryption, the corrupt bit,
// unknown incompatible features, versions other than 2 and 3, tables outside the file or over
// the header, and sizes that would make it allocate without bound. Corrupt metadata met while
// reading (an L2 table or data cluster that points outside the file, a bad compressed stream)
// is a Corruption status naming the offsets. The reader never opens anything: all it touches
// is the ByteSource it was given.
//
// Thread-safe: ReadAt/MapExtent may run concurrently. L2 tables are cached (bounded by
// Limits::l2_cache_bytes, least recently used evicted); a compressed cluster is inflated once
// per ReadAt that touches it, into a per-thread buffer, so reads allocate nothing once warm.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/base/byte_source.h"
#include "fs/format/table_cache.h"

namespace glancefs::format {

struct Qcow2Limits {
  // Largest L1 table accepted: qemu's own limit (QCOW_MAX_L1_SIZE), 32 MiB.
  uint64_t max_l1_bytes = 32 << 20;
  // Memory for cached L2 tables. Default 32 MiB: with 64 KiB clusters that maps 256 GiB.
  uint64_t l2_cache_bytes = 32 << 20;
};

// What the header says, for xattrs and logs.
struct Qcow2Info {
  uint32_t version = 0;
  uint32_t cluster_bits = 0;
  uint64_t virtual_size = 0;
  bool extended_l2 = false;
  std::string compression;  // "zlib" or "zstd"
  uint32_t snapshots = 0;
};

class Qcow2Reader final : public ByteSource {
 public:
  // Reads and checks the header, its extensions and the L1 table.
  static Result<std::shared_ptr<Qcow2Reader>> Open(std::shared_ptr<ByteSource> file,
                                                   const Qcow2Limits& limits = Qcow2Limits());

  uint64_t size() const override { return info_.virtual_size; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  // Without a copy when the file pins (the block cache): data clusters as pieces of its
  // buffers, zeros from a static zero page. NotSupported (read with ReadAt) for a compressed
  // cluster, a file that does not pin, or a read in too many pieces.
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override;
  Result<Extent> MapExtent(uint64_t off) override;
  // The qcow2 file's size: what the image occupies, holes and compression included.
  uint64_t allocated_bytes() const override { return file_->allocated_bytes(); }

  const Qcow2Info& info() const { return info_; }

 private:
  // How one run of guest bytes is stored (qcow2.rst "Cluster mapping"; qemu's
  // QCow2SubclusterType). kInvalid never leaves Map: it becomes a Corruption status.
  enum class Kind { kUnallocated, kZero, kNormal, kCompressed };
  struct Mapping {
    Kind kind;
    uint64_t host_offset;       // kNormal: where the first byte is; kCompressed: the stream
    uint64_t length;            // guest bytes from the requested offset with this kind
    uint64_t compressed_bytes;  // kCompressed only
  };
  using L2Table = TableCache<uint64_t>::Table;  // entries, host byte order

  Qcow2Reader(std::shared_ptr<ByteSource> file, const Qcow2Limits& limits)
      : file_(std::move(file)), limits_(limits) {}
  Status ParseHeader();
  // The version 3 fields of header `h` and the features they enable; *header_bytes is the
  // header's length (unchanged for version 2).
  Status ParseFeatures(const char* h, uint64_t file_size, uint64_t* header_bytes);
  Status ParseExtensions(uint64_t start, uint64_t end);
  Status LoadL1();

  // The mapping of guest offset `off`, covering at most `max_len` bytes, never crossing an L2
  // table: the longest run with one kind (and contiguous host bytes, for kNormal).
  Result<Mapping> Map(uint64_t off, uint64_t max_len);
  // Where the L2 entry of the cluster holding guest offset `g` is in its table (with extended
  // L2, its subcluster bitmap follows it).
  uint64_t L2EntryIndex(uint64_t g) const;
  // The kind of the unit (cluster, or subcluster with extended L2) holding guest offset `g`;
  // for kNormal, *host is where byte `g` is. Corruption for an entry qemu would reject.
  Result<Kind> Classify(const L2Table& l2, uint64_t g, uint64_t* host) const;
  Result<Kind> ClassifySubcluster(uint64_t cluster_host, uint64_t bitmap, uint64_t g,
                                  uint64_t* host) const;
  // The run of compressed cluster `entry` from guest `off`, at most `limit` bytes.
  Mapping CompressedRun(uint64_t entry, uint64_t off, uint64_t limit) const;
  Result<std::shared_ptr<const L2Table>> GetL2(uint64_t l2_offset);
  Status ReadCompressed(const Mapping& m, uint64_t cluster_off, char* dst, uint64_t n);
  // REQUIRES: `off`, `len` lie in [0, file size); Corruption otherwise.
  Status CheckHostRange(uint64_t off, uint64_t len, const char* what) const;

  const std::shared_ptr<ByteSource> file_;
  const Qcow2Limits limits_;
  Qcow2Info info_;
  // Constant after Open.
  uint64_t cluster_size_ = 0;
  uint64_t l1_offset_ = 0;
  uint64_t l1_entries_ = 0;
  uint32_t l2_bits_ = 0;  // log2 of entries per L2 table
  uint64_t subcluster_size_ = 0;
  bool zstd_ = false;
  std::vector<uint64_t> l1_;

  // By L2 table offset; capacity limits_.l2_cache_bytes / cluster_size_ (at least 1).
  TableCache<uint64_t> l2_cache_;
};

}  // namespace glancefs::format
