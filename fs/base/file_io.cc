#include "fs/base/file_io.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace glancefs {

ssize_t ReadFullyAt(int fd, char* dst, size_t n, uint64_t off) {
  size_t done = 0;
  while (done < n) {
    ssize_t got = ::pread(fd, dst + done, n - done, static_cast<off_t>(off + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return -errno;
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return static_cast<ssize_t>(done);
}

ssize_t ReadvFullyAt(int fd, const struct iovec* iov, int count, uint64_t off) {
  size_t done = 0;
  int i = 0;
  size_t in = 0;  // bytes of iov[i] already read
  while (i < count) {
    if (in > 0) {  // finish a buffer a short read left half full
      ssize_t got = ReadFullyAt(fd, static_cast<char*>(iov[i].iov_base) + in, iov[i].iov_len - in,
                                off + done);
      if (got < 0) return got;
      done += static_cast<size_t>(got);
      if (static_cast<size_t>(got) < iov[i].iov_len - in) break;  // end of file
      ++i;
      in = 0;
      continue;
    }
    ssize_t got = ::preadv(fd, iov + i, std::min(count - i, IOV_MAX), static_cast<off_t>(off + done));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return -errno;
    if (got == 0) break;
    done += static_cast<size_t>(got);
    for (size_t left = static_cast<size_t>(got); left > 0 && i < count;) {
      size_t take = std::min(left, iov[i].iov_len - in);
      left -= take;
      in += take;
      if (in == iov[i].iov_len) {
        ++i;
        in = 0;
      }
    }
  }
  return static_cast<ssize_t>(done);
}

int WriteFullyAt(int fd, const char* src, size_t n, uint64_t off) {
  for (size_t done = 0; done < n;) {
    ssize_t put = ::pwrite(fd, src + done, n - done, static_cast<off_t>(off + done));
    if (put < 0 && errno == EINTR) continue;
    if (put < 0) return errno;
    if (put == 0) return EIO;
    done += static_cast<size_t>(put);
  }
  return 0;
}

Result<std::string> ReadSmallFileAt(int dirfd, const std::string& name, size_t max_bytes) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) return Status::FromErrno(errno, name);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return Status::Corruption(name + " is not a regular file");
  }
  std::string text;
  char buf[64 * 1024];
  for (;;) {
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      int err = errno;
      ::close(fd);
      return Status::FromErrno(err, name);
    }
    if (got == 0) break;
    text.append(buf, static_cast<size_t>(got));
    if (text.size() > max_bytes) {
      ::close(fd);
      return Status::Corruption(name + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
  }
  ::close(fd);
  return text;
}

}  // namespace glancefs
