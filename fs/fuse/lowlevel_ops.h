// The FUSE low-level operation table: a thin adapter from FUSE requests to core::FileSystem.
//
// Each handler decodes the request, calls FileSystem, and replies; errors go through
// LogFailure (errno.h). Handlers hold no lock while replying. Lookup counts: every reply that
// hands an inode to the kernel was preceded by one FileSystem acquire; when the reply cannot be
// delivered (interrupted request), the handler forgets what it acquired.
#pragma once

#include "fs/core/file_system.h"
#include "fs/fuse/fuse_version.h"

namespace glancefs::fuse {

struct OpsContext {
  core::FileSystem* fs = nullptr;
  // How long the kernel may cache entries, negative entries and attributes. Long by default
  // because the refresher invalidates explicitly whatever changes.
  double cache_timeout_s = 3600;
};

// The operation table; userdata passed to fuse_session_new must be an OpsContext*.
const struct fuse_lowlevel_ops& LowLevelOps();

}  // namespace glancefs::fuse
