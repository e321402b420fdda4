// The one place where a Status becomes an errno (STYLE.md 7.3), and where a failed operation is
// logged: once, with the operation and inode, rate-limited so a reader looping on a broken image
// cannot flood the log.
#pragma once

#include <cstdint>

#include "fs/base/status.h"

namespace glancefs::fuse {

int ToErrno(const Status& status);

// Logs `status` for operation `op` on inode `ino` at a level fitting its errno
// (ENOENT/ENODATA/EROFS are normal and logged at debug only). Returns ToErrno(status).
int LogFailure(const char* op, uint64_t ino, const Status& status);

}  // namespace glancefs::fuse
