// VdiReader: the raw contents of a VirtualBox VDI image, decoded on read from the ByteSource
// below it. Glance's disk_format "vdi".
//
// Layout (VirtualBox's VDICore.h; qemu's block/vdi.c): a 512-byte header (a text line, the
// signature 0xbeda107f at 0x40, version 1.1), a block map of little-endian uint32 entries at
// offset_bmap, one per block of the disk, and the data area at offset_data. Entry E < 0xfffffffe
// means the block is stored at offset_data + E * block_size; 0xffffffff is a block never
// written (a hole) and 0xfffffffe one discarded (declared zero, kZero). Both read as zeros, as
// in qemu and VirtualBox.
//
// Supported: version 1.1, dynamic (type 1) and static/fixed (type 2) images, block sizes that
// are powers of two from 512 B to 256 MiB (VirtualBox writes 1 MiB), disk sizes that are not a
// multiple of the block size (an odd disk size is rounded up to whole sectors, as qemu does).
//
// Refused at Open (Status::Refused), each with its own message: undo and differencing images
// (types 3 and 4: their holes are in a parent image), a non-null parent or link UUID, versions
// other than 1.1, sector sizes other than 512, unaligned table offsets, per-block extra data
// (qemu and VirtualBox disagree on it), sizes past qemu's limits, and a block map larger than
// VdiLimits::max_map_bytes. Corruption at Open: a bad signature, a disk size larger than the
// blocks can hold, a block map larger than the file (checked before anything is allocated),
// a data area overlapping the block map. A block whose map entry points past the end of the
// file is a Corruption status when it is read (qemu would read zeros there; glancefs never
// serves bytes the file does not hold). The reader opens nothing: all it touches is the
// ByteSource it was given.
//
// Thread-safe: everything is constant after Open; ReadAt/MapExtent/ReadPinned keep no state.
// The block map entries that cover the disk are held in memory (4 bytes per block).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/base/byte_source.h"
#include "fs/format/format.h"

namespace glancefs::format {

// Glance's "vdi": probe (signature at 0x40) and decoder.
extern const FormatSpec kVdiFormat;

struct VdiLimits {
  // Largest block map held in memory. Default 64 MiB: 16 Mi blocks, 16 TiB at 1 MiB blocks.
  uint64_t max_map_bytes = 64 << 20;
};

// What the header says, for xattrs and logs.
struct VdiInfo {
  std::string subformat;  // "dynamic" or "static"
  uint32_t block_size = 0;
  uint64_t virtual_size = 0;  // the header's disk size, rounded up to whole sectors
  std::string uuid;           // the image UUID as VirtualBox shows it; empty when null
};

class VdiReader final : public ByteSource {
 public:
  // Reads and checks the header and the block map.
  static Result<std::shared_ptr<VdiReader>> Open(std::shared_ptr<ByteSource> file,
                                                 const VdiLimits& limits = VdiLimits());

  uint64_t size() const override { return info_.virtual_size; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  // Without a copy when the file pins (the block cache): stored blocks as pieces of its
  // buffers, holes and zero blocks from a static zero page. NotSupported (read with ReadAt)
  // for a file that does not pin or a read in too many pieces.
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override;
  // From the block map alone: kData for stored blocks, kHole for unallocated ones, kZero for
  // discarded ones.
  Result<Extent> MapExtent(uint64_t off) override;
  // The VDI file's size: what the image occupies.
  uint64_t allocated_bytes() const override { return file_->allocated_bytes(); }

  const VdiInfo& info() const { return info_; }

 private:
  enum class Kind { kHole, kZero, kData };
  // A run of guest bytes from one offset with one kind (and, for kData, contiguous in the file).
  struct Mapping {
    Kind kind;
    uint64_t host_offset;  // kData: where the first byte is
    uint64_t length;
  };

  VdiReader(std::shared_ptr<ByteSource> file, const VdiLimits& limits)
      : file_(std::move(file)), limits_(limits) {}
  Status ParseHeader();
  // Sector and block sizes, table offsets, disk size: from the 512-byte header `h`.
  Status ParseLayout(const char* h);
  Status LoadMap();
  // The mapping at guest `off` (< virtual size), at most `max_len` bytes long.
  Mapping Map(uint64_t off, uint64_t max_len) const;
  // Corruption, naming the block, when stored run `m` (at guest `off`) is not all in the file.
  Status CheckStored(uint64_t off, const Mapping& m) const;

  const std::shared_ptr<ByteSource> file_;
  const VdiLimits limits_;
  // Constant after Open.
  VdiInfo info_;
  uint32_t block_bits_ = 0;
  uint64_t offset_bmap_ = 0;
  uint64_t offset_data_ = 0;
  uint64_t blocks_in_image_ = 0;
  std::vector<uint32_t> map_;  // the entries of the blocks that cover the virtual size
};

}  // namespace glancefs::format
