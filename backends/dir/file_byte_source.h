// FileByteSource: a ByteSource over a local regular file, read with pread(2).
//
// Holes in the file are reported through SEEK_DATA/SEEK_HOLE, so a sparse raw image stays sparse
// through the mount. Thread-safe (pread and lseek with SEEK_DATA/SEEK_HOLE do not move a shared
// file offset that anyone relies on). Owns its descriptor.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "fs/base/byte_source.h"

namespace glancefs::backends {

class FileByteSource final : public ByteSource {
 public:
  // Takes ownership of `fd`. `size` is the size the caller expects (checked by Open).
  FileByteSource(int fd, uint64_t size, uint64_t allocated_bytes, std::string label);
  ~FileByteSource() override;
  FileByteSource(const FileByteSource&) = delete;
  FileByteSource& operator=(const FileByteSource&) = delete;

  // Opens `path` read-only; fails with Corruption unless it is a regular file of exactly
  // `expected_size` bytes (when given).
  static Result<std::shared_ptr<FileByteSource>> Open(const std::string& path,
                                                      std::optional<uint64_t> expected_size,
                                                      const std::string& label);

  uint64_t size() const override { return size_; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  Result<Extent> MapExtent(uint64_t off) override;
  uint64_t allocated_bytes() const override { return allocated_bytes_; }

 private:
  const int fd_;
  const uint64_t size_;
  const uint64_t allocated_bytes_;
  const std::string label_;  // for messages: "image <id>"
};

}  // namespace glancefs::backends
