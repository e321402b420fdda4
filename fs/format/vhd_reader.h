// VhdReader: the raw contents of a VHD image (Glance disk_format "vhd", qemu's "vpc"), decoded on
// read from the ByteSource below it.
//
// Spec: Microsoft's "Virtual Hard Disk Image Format Specification" 1.0 (Oct 2006); behaviour
// matched to qemu 7.2's block/vpc.c, the oracle (`qemu-img convert -O raw`).
//
// Layout: a 512-byte footer ("conectix") at the end of the file; dynamic and differencing disks
// also keep a copy at offset 0, followed by a dynamic header ("cxsparse") that locates the block
// allocation table (BAT: big-endian uint32 sector numbers, 0xFFFFFFFF = not allocated). Each
// allocated block is a sector bitmap (block_size / 4096 bytes rounded up to 512) followed by the
// block's data.
//
// Which footer: a valid fixed-disk footer (disk type 2) in the last 512 bytes makes a fixed disk,
// whose raw view is the bytes before it. Otherwise the copy at offset 0 is used (as qemu does:
// it only looks at the end when offset 0 lacks the magic). This differs from qemu in one case
// only: a fixed VHD whose guest data itself starts with "conectix" (a VHD stored inside a fixed
// VHD) is read as the outer fixed disk, as the spec says; qemu would decode the inner image.
//
// The footer checksum (one's complement of the byte sum) is verified: qemu 7.2 refuses a
// mismatch ("Incorrect header checksum"), so Corruption here. The dynamic header's checksum is
// not (qemu does not either).
//
// Size rule (qemu 7.2 vpc_open, autodetect mode; the one glancefs uses):
//   CHS = cylinders * heads * sectors_per_track * 512 bytes, from the footer's geometry field;
//   current_size = the footer's "current size" field.
//   If the creator application is "win " (Hyper-V), "qem2" (qemu with force_size=on), "d2v "
//   (Disk2VHD), "CTXS" (XenConverter) or "tap\0" (XenServer), the size is current_size
//   (size_rule "current_size"). Otherwise -- "vpc " (Virtual PC), "qemu", and every other
//   creator -- it is the CHS size (size_rule "chs"), unless the geometry is the maximum
//   65535/16/255, which means the size did not fit CHS: then current_size. current_size is
//   rounded down to whole 512-byte sectors. Sizes over 0xff000000 sectors (2040 GiB) are
//   Corruption, as qemu refuses them.
//   Checked against qemu 7.2 on every VHD of the sample corpus: Disk2VHD writes "d2v\0" (not
//   "d2v ") but the maximum geometry, hence current_size; Hyper-V "win " current_size; Virtual
//   PC "vpc " CHS (2 MB less than its current_size).
//
// Reads match qemu: a block's sector bitmap is ignored (qemu 7.2 reads every sector of an
// allocated block from the file, whatever its bitmap bit says, and so does this reader), an
// unallocated block reads as zeros and maps as a hole, an allocated block maps as data. A fixed
// disk's extents are those of the file below (qemu-img map recurses into the file too).
//
// Refused: differencing disks (type 4; they name a parent file), and a BAT larger than
// VhdLimits::max_bat_bytes. Corruption at Open: a bad magic or footer checksum, an unknown disk
// type, a fixed-disk footer only at offset 0 or a dynamic one only at the end, a dynamic header
// or BAT outside the file, a block size that is not a power of two >= 512, a BAT too small for
// the virtual size, a fixed disk larger than the bytes before its footer.
// Corruption at read: a BAT entry whose block lies (partly) outside the file, naming the block
// and the offsets. The BAT entries past the virtual size are never loaded, so memory is
// 4 bytes per block of the virtual size, bounded by the file's own size.
//
// Thread-safe: immutable after Open; ReadAt/MapExtent may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/base/byte_source.h"
#include "fs/format/format.h"

namespace glancefs::format {

// The "vhd" decoder for the registry. Its facts: subformat (fixed | dynamic),
// creator_application (4 characters, trailing spaces and NULs trimmed), creator_version
// ("major.minor"), creator_os, block_size (dynamic only), disk_geometry ("C/H/S"), size_rule
// (current_size | chs).
extern const FormatSpec kVhdFormat;

struct VhdLimits {
  // Largest BAT loaded (4 bytes per block of the virtual size). 64 MiB maps 16 M blocks: the
  // 2040 GiB maximum with 128 KiB blocks or larger (the spec's default block is 2 MiB).
  uint64_t max_bat_bytes = 64 << 20;
};

// What the footer and the dynamic header say.
struct VhdInfo {
  bool fixed = false;       // else dynamic
  std::string creator_app;  // raw 4 bytes
  uint16_t creator_major = 0, creator_minor = 0;
  std::string creator_os;  // raw 4 bytes
  uint16_t cylinders = 0;
  uint8_t heads = 0, sectors_per_track = 0;
  uint64_t current_size = 0;   // the footer's field, bytes
  bool size_from_chs = false;  // the size rule picked CHS
  uint64_t virtual_size = 0;
  uint32_t block_size = 0;  // dynamic only
};

class VhdReader final : public ByteSource {
 public:
  static Result<std::shared_ptr<VhdReader>> Open(std::shared_ptr<ByteSource> file,
                                                 const VhdLimits& limits = VhdLimits());

  uint64_t size() const override { return info_.virtual_size; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  // Without a copy when the file pins: data as pieces of its buffers, unallocated blocks from a
  // static zero page. NotSupported (read with ReadAt) otherwise.
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override;
  Result<Extent> MapExtent(uint64_t off) override;
  uint64_t allocated_bytes() const override { return file_->allocated_bytes(); }

  const VhdInfo& info() const { return info_; }
  // The registry's facts (see kVhdFormat).
  std::vector<std::pair<std::string, std::string>> Facts() const;

 private:
  // One run of guest bytes inside one block (dynamic) or the whole disk (fixed).
  struct Mapping {
    bool allocated;
    uint64_t host_offset;  // where the first byte is, when allocated
    uint64_t length;
  };

  // The footer Open goes by: its 512 bytes and where they are in the file.
  struct Footer {
    const char* bytes;
    uint64_t offset;
  };

  VhdReader(std::shared_ptr<ByteSource> file) : file_(std::move(file)) {}
  static Result<Footer> PickFooter(const char* head, const char* tail, uint64_t file_size);
  // OK for a fixed disk whose footer ends the file, or a dynamic disk with a footer copy at
  // offset 0; Refused for a differencing disk (naming its parent when it can); else Corruption.
  Status CheckDiskType(const Footer& footer) const;
  // The disk type, the creator, the geometry and the virtual size (the size rule) into info_.
  Status ParseFooter(const char* footer);
  Status OpenDynamic(uint64_t data_offset, const VhdLimits& limits);
  // The mapping of guest offset `off` (< size()), at most `max_len` bytes, within one block.
  // Corruption when an allocated block runs past the end of the file.
  Result<Mapping> Map(uint64_t off, uint64_t max_len) const;

  const std::shared_ptr<ByteSource> file_;
  VhdInfo info_;
  // Dynamic disks, constant after Open.
  uint64_t bitmap_bytes_ = 0;
  std::vector<uint32_t> bat_;  // host byte order, one entry per block of the virtual size
};

}  // namespace glancefs::format
