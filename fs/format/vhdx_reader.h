// VhdxReader: the raw contents of a VHDX image (Glance and qemu disk_format "vhdx"), decoded on
// read from the ByteSource below it.
//
// Spec: Microsoft's "VHDX Format Specification" v1.00 ([MS-VHDX]); behaviour matched to qemu
// 7.2's block/vhdx.c and vhdx-log.c, the oracle (`qemu-img convert -O raw`).
//
// Layout: the file identifier ("vhdxfile" and a UTF-16 creator name) at 0; two headers at 64 KiB
// and 128 KiB ("head", CRC-32C over 4 KiB; the valid one with the higher sequence number is
// current, and two valid headers with the same sequence number must be identical -- Disk2VHD
// writes such pairs); two copies of the region table at 192 KiB and 256 KiB ("regi", CRC-32C
// over 64 KiB; the first valid copy is used) locating the BAT and the metadata region. The
// metadata table ("metadata") holds the file parameters (block size, leave_blocks_allocated,
// has_parent), the virtual disk size, the logical and physical sector sizes and the page 83
// data, all five required (as qemu requires them). The BAT interleaves one sector-bitmap entry
// after every chunk_ratio = 2^23 * logical_sector_size / block_size payload entries; a payload
// entry holds a state (bits 0-2) and a file offset in MiB (bits 20-63).
//
// Payload states: NOT_PRESENT (0), UNDEFINED (1), UNMAPPED (3, and 5, its value in the v0.95
// draft, which qemu also accepts) read as zeros and map as holes; ZERO (2) reads as zeros and
// maps as kZero; FULLY_PRESENT (6) is data at its file offset. PARTIALLY_PRESENT (7) only exists
// in differencing disks, and 4 is undefined: both are Corruption when read or mapped, as qemu
// fails such reads. Sector bitmap entries are not read (they only matter with a parent).
// qemu-img map reports every byte of a VHDX as data (its driver has no block status); this
// reader's extents are exact, and its data extents lie within qemu's.
//
// The log: when the current header's log GUID is non-zero, the file may carry metadata updates
// that were never written in place, and the image must not be read without them. qemu refuses a
// read-only open of such a file ("contains a log that needs to be replayed"); this reader
// replays the log in memory instead (vhdx_log.h says how), as an overlay over the file's bytes,
// before reading the region table, the metadata and the BAT through it (the file itself is
// never written). The log region must lie in the file, 1 MiB aligned. A log with no valid
// sequence is nothing to replay (qemu opens such files too).
//   Fact log: "clean" (no log, or no valid sequence) or "replayed".
//
// Code: the header section and the metadata are parsed in vhdx_layout.cc, the log replayed in
// vhdx_log.cc; this file holds the BAT and the reads.
//
// Refused: a differencing disk (has_parent), unknown required regions or metadata items, a BAT or
// a log over VhdxLimits. Corruption at Open: bad magics or checksums, no valid header, regions
// outside the file ("region table points outside the file") or overlapping each other, the log
// or the header section, metadata items outside their region, sizes out of the spec's ranges
// (block size 1-256 MiB power of two, logical sector 512 or 4096, virtual size up to 64 TiB), a
// BAT region too small for the virtual size. Corruption at read: a FULLY_PRESENT block in the
// header section or (partly) outside the file, an invalid state.
//
// Thread-safe: immutable after Open; ReadAt/MapExtent may run concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/base/byte_source.h"
#include "fs/format/crc32c.h"
#include "fs/format/format.h"

namespace glancefs::format {

// The "vhdx" decoder for the registry. Its facts: subformat (fixed when the file parameters say
// leave_blocks_allocated, else dynamic), block_size, logical_sector_size, physical_sector_size,
// creator_application (the file identifier's UTF-16 creator as UTF-8), log (clean | replayed).
extern const FormatSpec kVhdxFormat;

// Crc32c (crc32c.h), the checksum VHDX uses, comes with this header: for tests and tools too.

struct VhdxRegion;  // vhdx_layout.h

struct VhdxLimits {
  // Largest BAT loaded (8 bytes per payload block, plus the bitmap entries). 64 MiB maps 8 M
  // blocks: 8 TiB in 1 MiB blocks, the whole 64 TiB maximum with 8 MiB blocks or larger
  // (Hyper-V's default block is 32 MiB).
  uint64_t max_bat_bytes = 64 << 20;
  // Largest log replayed (read whole into memory, with the data it carries). Hyper-V and qemu
  // create 1 MiB logs.
  uint64_t max_log_bytes = 32 << 20;
};

struct VhdxInfo {
  std::string creator;  // UTF-8
  uint64_t virtual_size = 0;
  uint32_t block_size = 0;
  uint32_t logical_sector_size = 0;
  uint32_t physical_sector_size = 0;
  bool leave_blocks_allocated = false;
  bool log_replayed = false;
  uint32_t log_entries_replayed = 0;
};

class VhdxReader final : public ByteSource {
 public:
  static Result<std::shared_ptr<VhdxReader>> Open(std::shared_ptr<ByteSource> file,
                                                  const VhdxLimits& limits = VhdxLimits());

  uint64_t size() const override { return info_.virtual_size; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  // Without a copy when the file pins and no log was replayed: data as pieces of its buffers,
  // zeros from a static zero page. NotSupported (read with ReadAt) otherwise.
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override;
  Result<Extent> MapExtent(uint64_t off) override;
  uint64_t allocated_bytes() const override { return file_->allocated_bytes(); }

  const VhdxInfo& info() const { return info_; }
  // The registry's facts (see kVhdxFormat).
  std::vector<std::pair<std::string, std::string>> Facts() const;

 private:
  enum class Kind { kHole, kZero, kData };
  struct Mapping {
    Kind kind;
    uint64_t host_offset;  // kData: where the first byte is
    uint64_t length;       // guest bytes from the requested offset, within one block
  };

  explicit VhdxReader(std::shared_ptr<ByteSource> file) : file_(std::move(file)) {}
  // Loads the BAT from region `bat`, sized for the virtual size and block size in info_.
  Status LoadBat(const VhdxRegion& bat, const VhdxLimits& limits);
  // The mapping of guest offset `off` (< size()), at most `max_len` bytes, within one block.
  Result<Mapping> Map(uint64_t off, uint64_t max_len) const;

  // The file as read: the image file, or the image file with its log replayed over it.
  std::shared_ptr<ByteSource> file_;
  VhdxInfo info_;
  // Constant after Open.
  uint64_t chunk_ratio_ = 0;
  std::vector<uint64_t> bat_;  // host byte order, bitmap entries included
};

}  // namespace glancefs::format
