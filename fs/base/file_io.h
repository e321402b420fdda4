// Whole-buffer positional I/O on file descriptors: pread/pwrite repeated until done, EINTR
// retried. One copy for every layer (the dir backend, the Glance spool, the cache's data files).
#pragma once

#include <sys/types.h>
#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fs/base/status.h"

namespace glancefs {

// Reads up to n bytes at off into dst. Returns the bytes read (fewer than n only at end of
// file), or -errno.
ssize_t ReadFullyAt(int fd, char* dst, size_t n, uint64_t off);

// Reads the bytes at off into the buffers in order (preadv, continued after a short read).
// Returns the bytes read (fewer than their total only at end of file), or -errno.
ssize_t ReadvFullyAt(int fd, const struct iovec* iov, int count, uint64_t off);

// Writes n bytes at off. Returns 0, or the errno of the failed write.
int WriteFullyAt(int fd, const char* src, size_t n, uint64_t off);

// The whole of a small regular file `name` under `dirfd`, opened without blocking (a FIFO or
// device is refused, Corruption) and refused past max_bytes (Corruption). Errors name `name`.
Result<std::string> ReadSmallFileAt(int dirfd, const std::string& name, size_t max_bytes);

}  // namespace glancefs
