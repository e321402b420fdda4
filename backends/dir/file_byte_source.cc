#include "backends/dir/file_byte_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <optional>

#include "fs/base/file_io.h"

namespace glancefs::backends {

FileByteSource::FileByteSource(int fd, uint64_t size, uint64_t allocated_bytes, std::string label)
    : fd_(fd), size_(size), allocated_bytes_(allocated_bytes), label_(std::move(label)) {}

FileByteSource::~FileByteSource() { ::close(fd_); }

Result<std::shared_ptr<FileByteSource>> FileByteSource::Open(const std::string& path,
                                                             std::optional<uint64_t> expected_size,
                                                             const std::string& label) {
  // O_NONBLOCK: a FIFO or device in the catalog must not block a worker; it is refused below.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return Status::FromErrno(errno, label + ": data file " + path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    return Status::FromErrno(err, label + ": data file " + path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::Corruption(label + ": data file " + path + " is not a regular file");
  }
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (expected_size && size != *expected_size) {
    ::close(fd);
    return Status::Corruption(label + ": data file " + path + " is " + std::to_string(size) +
                              " bytes but the record says " + std::to_string(*expected_size));
  }
  return std::make_shared<FileByteSource>(fd, size, static_cast<uint64_t>(st.st_blocks) * 512,
                                          label);
}

Status FileByteSource::ReadAt(uint64_t off, size_t n, char* dst) {
  if (off > size_ || n > size_ - off) {
    return Status::OutOfRange(label_ + ": read past the end");
  }
  ssize_t got = ReadFullyAt(fd_, dst, n, off);
  if (got < 0) return Status::FromErrno(static_cast<int>(-got), label_ + ": read at " + std::to_string(off));
  if (static_cast<size_t>(got) < n) {
    return Status::Corruption(label_ + ": data file ended at " + std::to_string(off + got) +
                              ", before its recorded size " + std::to_string(size_));
  }
  return Status::Ok();
}

Result<Extent> FileByteSource::MapExtent(uint64_t off) {
  if (off >= size_) return Status::OutOfRange(label_ + ": extent past the end");
  off_t data = ::lseek(fd_, static_cast<off_t>(off), SEEK_DATA);
  if (data < 0) {
    if (errno == ENXIO) return Extent{off, size_ - off, Extent::Kind::kHole};  // hole to EOF
    return Extent{off, size_ - off, Extent::Kind::kData};  // no SEEK_DATA: all data
  }
  uint64_t data_off = std::min<uint64_t>(static_cast<uint64_t>(data), size_);
  if (data_off > off) return Extent{off, data_off - off, Extent::Kind::kHole};
  off_t hole = ::lseek(fd_, static_cast<off_t>(off), SEEK_HOLE);
  uint64_t end = hole < 0 ? size_ : std::min<uint64_t>(static_cast<uint64_t>(hole), size_);
  if (end <= off) end = size_;
  return Extent{off, end - off, Extent::Kind::kData};
}

}  // namespace glancefs::backends
