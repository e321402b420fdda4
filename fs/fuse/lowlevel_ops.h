// The FUSE low-level operation table: a thin adapter from FUSE requests to core::FileSystem.
//
// Each handler decodes the request, calls FileSystem, and replies; errors go through
// LogFailure (errno.h). Handlers hold no lock while replying. Lookup counts: every reply that
// hands an inode to the kernel was preceded by one FileSystem acquire; when the reply cannot be
// delivered (interrupted request), the handler forgets what it acquired.
#pragma once

#include <memory>
#include <string>
#include <unordered_map>

#include "fs/base/mutex.h"
#include "fs/core/file_system.h"
#include "fs/fuse/fuse_version.h"

namespace glancefs::fuse {

struct OpsContext {
  core::FileSystem* fs = nullptr;
  // How long the kernel may cache entries, negative entries and attributes. Long by default
  // because the refresher invalidates explicitly whatever changes.
  double cache_timeout_s = 3600;
  // How long the kernel caches a miss. At most the refresh interval: a lookup that races a
  // refresh could otherwise keep a new image invisible for cache_timeout_s.
  double negative_timeout_s = 30;
  // Image views bypass the kernel's page cache (FOPEN_DIRECT_IO): each read is a request here,
  // and a cached image's bytes are kept once (the cache's own files), not twice.
  bool direct_io = false;

  // The kernel reads ahead at most 128 KiB on a FUSE mount unless told otherwise, which caps a
  // sequential reader at a few 128 KiB requests in flight. The window is the mount's bdi
  // setting (/sys/class/bdi/MAJ:MIN/read_ahead_kb); the FUSE init reply clamps it, so it is
  // written once after init, on the first open. Empty path: leave it alone.
  std::string read_ahead_path;
  unsigned read_ahead_kb = 0;
  std::once_flag read_ahead_once;

  // Open files, owned here and not by the kernel's file handle alone: a RELEASE still queued
  // when the session ends never comes, and the files (with their sources and connections)
  // would leak. What is left is freed by the destroy operation, while the file system lives.
  Mutex files_mu;
  std::unordered_map<uint64_t, std::unique_ptr<core::OpenFile>> files GUARDED_BY(files_mu);
};

// The operation table; userdata passed to fuse_session_new must be an OpsContext*.
const struct fuse_lowlevel_ops& LowLevelOps();

}  // namespace glancefs::fuse
