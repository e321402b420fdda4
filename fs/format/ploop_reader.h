// PloopReader: the raw contents of a Parallels / OpenVZ ploop expandable image, decoded on read
// from the ByteSource below it. Glance's disk_format "ploop"; qemu's "parallels".
//
// Layout (qemu's docs/interop/parallels.txt and block/parallels.c): a 64-byte header, then the
// BAT, an array of bat_entries little-endian uint32, one per cluster of `tracks` sectors, then
// the data area. A zero entry is a cluster never written (a hole); any other entry E places the
// cluster at E sectors from the start of the file in "WithoutFreeSpace" images (version 1) and
// at E clusters in "WithouFreSpacExt" images (version 2). Clusters past the BAT read as zeros,
// as in qemu. The virtual size is nb_sectors * 512 (version 1: its low 32 bits only, as qemu).
//
// Supported: both magics, header version 2, any cluster size qemu opens (1 to INT32_MAX/513
// sectors, powers of two or not), images whose in_use field says they were not closed (qemu
// opens them read-only with no more than a warning; the fact in_use=true says so), and the
// Format Extension of version 2 images when it holds only dirty bitmaps, which are ignored
// (they say which clusters changed since a backup, not what they hold).
//
// Refused at Open (Status::Refused), each with its own message: header versions other than 2,
// clusters above qemu's limit, a Format Extension feature other than dirty bitmaps (it could
// name anything, a file included), sizes that would make it allocate without bound. Corruption
// at Open: a bad magic, zero sectors per cluster, a BAT larger than the file (checked before
// anything is allocated), a Format Extension outside the file or with a bad magic. A cluster
// whose BAT entry points past the end of the file is a Corruption status when it is read (qemu
// would read zeros there; glancefs never serves bytes the file does not hold). The Format
// Extension's MD5 is not checked: nothing in it is read. As in qemu, data_off and the flags
// (the "empty image" bit) play no part in reading. The reader opens nothing: all it touches is
// the ByteSource it was given.
//
// Thread-safe: everything is constant after Open; ReadAt/MapExtent/ReadPinned keep no state.
// The BAT entries that cover the virtual size are held in memory (4 bytes per cluster).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fs/base/byte_source.h"
#include "fs/format/format.h"

namespace glancefs::format {

// Glance's "ploop": probe (either magic at 0) and decoder.
extern const FormatSpec kPloopFormat;

struct PloopLimits {
  // Largest BAT held in memory. Default 64 MiB: 16 Mi clusters, 16 TiB at 1 MiB clusters.
  uint64_t max_bat_bytes = 64 << 20;
  // Most Format Extension features walked at Open.
  uint32_t max_extension_features = 1024;
};

// What the header says, for xattrs and logs.
struct PloopInfo {
  uint32_t version = 0;  // 1: "WithoutFreeSpace", 2: "WithouFreSpacExt"
  uint64_t cluster_size = 0;
  uint64_t virtual_size = 0;
  bool in_use = false;  // the image was open for writing when it was copied
  uint32_t dirty_bitmaps = 0;
};

class PloopReader final : public ByteSource {
 public:
  // Reads and checks the header, the Format Extension and the BAT.
  static Result<std::shared_ptr<PloopReader>> Open(std::shared_ptr<ByteSource> file,
                                                   const PloopLimits& limits = PloopLimits());

  uint64_t size() const override { return info_.virtual_size; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  // Without a copy when the file pins (the block cache): stored clusters as pieces of its
  // buffers, holes from a static zero page. NotSupported (read with ReadAt) for a file that
  // does not pin or a read in too many pieces.
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override;
  // From the BAT alone: kData for stored clusters, kHole for the others.
  Result<Extent> MapExtent(uint64_t off) override;
  // The image file's size: what the image occupies.
  uint64_t allocated_bytes() const override { return file_->allocated_bytes(); }

  const PloopInfo& info() const { return info_; }

 private:
  // A run of guest bytes from one offset: a hole, or stored contiguously in the file.
  struct Mapping {
    bool stored;
    uint64_t host_offset;  // stored: where the first byte is
    uint64_t length;
  };

  PloopReader(std::shared_ptr<ByteSource> file, const PloopLimits& limits)
      : file_(std::move(file)), limits_(limits) {}
  Status ParseHeader();
  Status ParseExtension(uint64_t ext_off);
  Status LoadBat();
  uint64_t HostOf(uint32_t entry) const { return uint64_t{entry} * off_unit_; }
  // The mapping at guest `off` (< virtual size), at most `max_len` bytes long.
  Mapping Map(uint64_t off, uint64_t max_len) const;
  // Corruption, naming the cluster, when stored run `m` (at guest `off`) is not all in the file.
  Status CheckStored(uint64_t off, const Mapping& m) const;

  const std::shared_ptr<ByteSource> file_;
  const PloopLimits limits_;
  // Constant after Open.
  PloopInfo info_;
  uint64_t bat_entries_ = 0;   // as the header says
  uint64_t off_unit_ = 0;      // bytes per unit of a BAT entry: 512, or the cluster size
  std::vector<uint32_t> bat_;  // the entries of the clusters that cover the virtual size
};

}  // namespace glancefs::format
