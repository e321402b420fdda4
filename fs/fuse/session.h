// Session: one mounted glancefs, from fuse_session_new to unmount.
//
// Owns the FUSE session, the signal handlers (SIGINT, SIGTERM, SIGHUP unmount cleanly) and the
// refresher thread that re-reads the catalog every refresh interval and tells the kernel what to
// forget. Construction order: Create (checks, mount) → Run → destructor (stops the
// refresher, unmounts, destroys the session).
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fs/core/file_system.h"
#include "fs/fuse/lowlevel_ops.h"

namespace glancefs::fuse {

struct SessionOptions {
  std::string mountpoint;
  // Options for fuse_session_new, argv style ("glancefs", "-o", "allow_other", ...).
  std::vector<std::string> fuse_args;
  unsigned max_threads = 10;  // libfuse's default
  bool clone_fd = false;
  bool single_thread = false;
  double cache_timeout_s = 3600;
  unsigned refresh_interval_s = 30;  // 0: never refresh
  unsigned read_ahead_kb = 4096;     // 0: leave the kernel's default (128 KiB)
};

class Session {
 public:
  // Checks the mount point and /dev/fuse, then mounts. `fs` must outlive the Session.
  static Result<std::unique_ptr<Session>> Create(core::FileSystem* fs, SessionOptions options);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Serves requests until unmounted or signalled.
  Status Run();

 private:
  Session(core::FileSystem* fs, SessionOptions options);
  void RefreshLoop();
  void Notify(const std::vector<core::Invalidation>& invalidations);

  core::FileSystem* const fs_;
  const SessionOptions options_;
  OpsContext ctx_;
  struct fuse_session* se_ = nullptr;
  bool mounted_ = false;
  bool signals_ = false;

  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // GUARDED_BY(mu_)
  std::thread refresher_;
};

}  // namespace glancefs::fuse
