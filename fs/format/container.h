// Container: the disk inside an image's container_format, read in place.
//
//   bare, ovf, aki, ari, ami (and unset)   the image's bytes are the disk
//   ova                                    a tar archive: one OVF descriptor and one disk
//   anything else (docker, compressed)     Refused: glancefs does not open it
//
// An OVA is walked header by header (POSIX ustar, pax and GNU long-name records), never
// extracted: the disk is a window onto the archive's bytes. As Glance's OVA import, it must hold
// exactly one .ovf descriptor (which names the disk with ovf:href) and one disk file, plus at most
// a manifest (.mf) and a certificate (.cert). Refused, each with its own message: a member whose
// name has a directory part or "..", a member that is not a regular file (links, devices,
// directories), two disks, no descriptor, a descriptor that does not name the disk, more than
// kMaxMembers members. Corruption: a bad header checksum, a member running past the end.
// Pure: reads only through the ByteSource it is given.
#pragma once

#include <memory>
#include <string>

#include "fs/base/byte_source.h"

namespace glancefs::format {

// Returns the disk inside `stored`; `facts` (if given) says where it was found.
Result<std::shared_ptr<ByteSource>> OpenContainer(std::shared_ptr<ByteSource> stored,
                                                  const std::string& container_format,
                                                  std::string* facts = nullptr);

// A window of `length` bytes at `offset` of another source (holes mapped through).
class SliceByteSource final : public ByteSource {
 public:
  SliceByteSource(std::shared_ptr<ByteSource> base, uint64_t offset, uint64_t length)
      : base_(std::move(base)), offset_(offset), length_(length) {}
  uint64_t size() const override { return length_; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override {
    return base_->ReadAt(offset_ + off, n, dst);
  }
  Result<Extent> MapExtent(uint64_t off) override;
  void WillNeed(uint64_t off, uint64_t n) override { base_->WillNeed(offset_ + off, n); }
  uint64_t allocated_bytes() const override { return length_; }

 private:
  const std::shared_ptr<ByteSource> base_;
  const uint64_t offset_, length_;
};

}  // namespace glancefs::format
