#include "fs/base/file_io.h"

#include <unistd.h>

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

}  // namespace glancefs
