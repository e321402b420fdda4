// Session: one mounted glancefs, from fuse_session_new to unmount.
//
// Owns the FUSE session, the signal handlers (SIGINT and SIGTERM unmount cleanly, in bounded time
// whichever thread takes them; SIGHUP calls
// on_reload on a thread of its own and the mount stays), the refresher thread that re-reads the
// catalog every refresh interval and tells the kernel what to forget, and the thread that calls
// on_ready once the mount has answered a request. Construction order: Create (checks, mount) →
// Run → destructor (stops the threads, unmounts, destroys the session). One Session per process
// (SIGHUP's handler is process-wide).
#pragma once

#include <pthread.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fs/base/mutex.h"
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
  bool direct_io = false;            // image views bypass the page cache (OpsContext)
  // Called once the mount has answered its first request (a stat of its root), from a thread of
  // the Session's: a service manager's readiness.
  std::function<void()> on_ready;
  // Called after each refresh, from the refresher thread (a service manager's STATUS=).
  std::function<void()> on_refreshed;
  // Called on SIGHUP, one call at a time, from a thread of the Session's. Unset: SIGHUP
  // unmounts, as libfuse's handlers do.
  std::function<void()> on_reload;
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

  // The refresher's period from now on; 0 stops refreshing. Thread-safe.
  void SetRefreshInterval(unsigned seconds);

 private:
  Session(core::FileSystem* fs, SessionOptions options);
  void RefreshLoop();
  void ReloadLoop();
  void StopLoop();
  void ReadyCheck();
  void StopThreads();
  void Notify(const std::vector<core::Invalidation>& invalidations);

  core::FileSystem* const fs_;
  const SessionOptions options_;
  OpsContext ctx_;
  struct fuse_session* se_ = nullptr;
  bool mounted_ = false;
  bool signals_ = false;

  Mutex mu_;
  CondVar cv_;
  bool stopping_ GUARDED_BY(mu_) = false;
  unsigned refresh_interval_s_ GUARDED_BY(mu_);
  std::thread refresher_;
  std::thread reloader_;
  std::thread ready_checker_;
  int reload_pipe_[2] = {-1, -1};  // SIGHUP's handler writes, reloader_ reads
  // A termination signal's handler writes, stopper_ reads and interrupts loop_thread_ until
  // the session loop has returned (session.cc, "Termination").
  int stop_pipe_[2] = {-1, -1};
  std::thread stopper_;
  pthread_t loop_thread_{};
  std::atomic<bool> loop_running_{false};
};

}  // namespace glancefs::fuse
