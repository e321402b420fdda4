#include "fs/fuse/session.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>

#include "fs/base/log.h"
#include "fs/base/thread.h"

namespace glancefs::fuse {
namespace {

// The write end of the Session's reload pipe, for SIGHUP's handler; -1 when none.
std::atomic<int> g_reload_fd{-1};

void OnSighup(int) {
  int saved = errno;
  int fd = g_reload_fd.load();
  if (fd >= 0) {
    char c = 'H';
    (void)!::write(fd, &c, 1);  // a full pipe already holds a pending reload
  }
  errno = saved;
}

// Termination. libfuse 3.14's handlers for SIGINT and SIGTERM only set the session's exit flag,
// which its loop sees when the loop's own thread is interrupted or the next request arrives
// (libfuse issue 997, fixed in 3.18). A signal taken by any other thread (the refresher, a fetch
// thread: the kernel picks any that does not block it) left glancefs mounted, waiting for a
// request. So each of them also wakes the Session's stopper thread (gfs-stop), which interrupts
// the loop's thread until the loop has returned (a signal landing between the loop's check of
// the flag and its wait is lost: hence again every 50 ms).
constexpr int kTerminationSignals[] = {SIGINT, SIGTERM, SIGHUP};
struct sigaction g_libfuse_handler[std::size(kTerminationSignals)];  // chained to, then restored
bool g_chained[std::size(kTerminationSignals)] = {};
std::atomic<int> g_stop_fd{-1};  // the write end of the stopper's pipe; -1 when none
std::atomic<bool> g_terminating{false};  // the stopper was woken (once: it then keeps at it)

void OnTermination(int sig) {
  int saved = errno;
  for (size_t i = 0; i < std::size(kTerminationSignals); ++i) {
    if (kTerminationSignals[i] == sig && g_chained[i]) g_libfuse_handler[i].sa_handler(sig);
  }
  int fd = g_stop_fd.load();
  if (fd >= 0 && !g_terminating.exchange(true)) {
    char c = 'T';
    (void)!::write(fd, &c, 1);
  }
  errno = saved;
}

// Chains OnTermination in front of libfuse's handler of each termination signal it handles
// (SIGHUP only when the Session does not take it for reloads).
Status ChainTerminationHandlers(bool sighup_reloads) {
  for (size_t i = 0; i < std::size(kTerminationSignals); ++i) {
    const int sig = kTerminationSignals[i];
    if (sig == SIGHUP && sighup_reloads) continue;
    struct sigaction current;
    if (::sigaction(sig, nullptr, &current) != 0) return Status::FromErrno(errno, "sigaction");
    if ((current.sa_flags & SA_SIGINFO) || current.sa_handler == SIG_DFL ||
        current.sa_handler == SIG_IGN) {
      continue;  // not libfuse's: left alone
    }
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = OnTermination;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the loop's read or wait returns EINTR and sees the flag
    g_libfuse_handler[i] = current;
    g_chained[i] = true;
    if (::sigaction(sig, &sa, nullptr) != 0) return Status::FromErrno(errno, "sigaction");
  }
  return Status::Ok();
}

// Puts libfuse's handlers back, so that fuse_remove_signal_handlers finds and removes them.
void UnchainTerminationHandlers() {
  for (size_t i = 0; i < std::size(kTerminationSignals); ++i) {
    if (!g_chained[i]) continue;
    (void)::sigaction(kTerminationSignals[i], &g_libfuse_handler[i], nullptr);
    g_chained[i] = false;
  }
}

// Undoes the octal escapes of /proc/self/mountinfo ("\040" for a space).
std::string UnescapeMountinfo(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size()) {
      out.push_back(static_cast<char>(std::strtol(s.substr(i + 1, 3).c_str(), nullptr, 8)));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

struct MountEntry {
  std::string device;  // "major:minor"
  std::string fstype;
};

// The mount exactly at `path` (the last one, if stacked), read from /proc/self/mountinfo.
std::optional<MountEntry> FindMount(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  std::optional<MountEntry> found;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    std::istringstream fields(line);
    std::string id, parent, dev, root, mountpoint;
    fields >> id >> parent >> dev >> root >> mountpoint;
    size_t dash = line.find(" - ");
    if (dash == std::string::npos || UnescapeMountinfo(mountpoint) != path) continue;
    std::istringstream rest(line.substr(dash + 3));
    std::string fstype;
    rest >> fstype;
    found = MountEntry{dev, fstype};
  }
  return found;
}

std::string RealPath(const std::string& path) {
  char real[PATH_MAX];
  return ::realpath(path.c_str(), real) != nullptr ? std::string(real) : path;
}

Status CheckMountpoint(const std::string& mountpoint) {
  struct stat st;
  if (::stat(mountpoint.c_str(), &st) != 0) {
    int err = errno;
    if (err == ENOTCONN) {
      return Status::InvalidArgument("mountpoint " + mountpoint +
                                     " is a dead FUSE mount: run fusermount3 -u " + mountpoint);
    }
    return Status::FromErrno(err, "mountpoint " + mountpoint);
  }
  if (!S_ISDIR(st.st_mode)) {
    return Status::InvalidArgument("mountpoint " + mountpoint + " is not a directory");
  }
  auto existing = FindMount(RealPath(mountpoint));
  if (existing && existing->fstype == "fuse.glancefs") {
    return Status::InvalidArgument("mountpoint " + mountpoint +
                                   " is busy: a glancefs is already mounted there");
  }
  if (::access("/dev/fuse", R_OK | W_OK) != 0) {
    return Status::FromErrno(errno, "/dev/fuse (is the fuse module loaded? try modprobe fuse)");
  }
  return Status::Ok();
}

}  // namespace

Session::Session(core::FileSystem* fs, SessionOptions options)
    : fs_(fs), options_(std::move(options)), refresh_interval_s_(options_.refresh_interval_s) {
  ctx_.fs = fs_;
  ctx_.cache_timeout_s = options_.cache_timeout_s;
  ctx_.direct_io = options_.direct_io;
  ctx_.negative_timeout_s =
      options_.refresh_interval_s > 0
          ? std::min<double>(options_.cache_timeout_s, options_.refresh_interval_s)
          : options_.cache_timeout_s;
}

Result<std::unique_ptr<Session>> Session::Create(core::FileSystem* fs, SessionOptions options) {
  GLANCEFS_RETURN_IF_ERROR(CheckMountpoint(options.mountpoint));
  std::unique_ptr<Session> session(new Session(fs, std::move(options)));
  std::vector<char*> argv;
  for (const auto& arg : session->options_.fuse_args)
    argv.push_back(const_cast<char*>(arg.c_str()));
  struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  const auto& ops = LowLevelOps();
  session->se_ = fuse_session_new(&args, &ops, sizeof ops, &session->ctx_);
  fuse_opt_free_args(&args);  // libfuse may have grown it; the session keeps its own copies
  if (session->se_ == nullptr) {
    // libfuse has printed which option it did not understand.
    return Status::InvalidArgument("cannot create the FUSE session (see the message above)");
  }
  if (fuse_set_signal_handlers(session->se_) != 0) {
    return Status::IOError("cannot install signal handlers");
  }
  session->signals_ = true;
  if (::pipe2(session->stop_pipe_, O_CLOEXEC) != 0 ||
      ::fcntl(session->stop_pipe_[1], F_SETFL, O_NONBLOCK) != 0) {
    return Status::FromErrno(errno, "stop pipe");
  }
  g_terminating = false;
  g_stop_fd = session->stop_pipe_[1];
  GLANCEFS_RETURN_IF_ERROR(ChainTerminationHandlers(bool(session->options_.on_reload)));
  if (session->options_.on_reload) {
    if (::pipe2(session->reload_pipe_, O_CLOEXEC) != 0 ||
        ::fcntl(session->reload_pipe_[1], F_SETFL, O_NONBLOCK) != 0) {
      return Status::FromErrno(errno, "reload pipe");
    }
    g_reload_fd = session->reload_pipe_[1];
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = OnSighup;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (::sigaction(SIGHUP, &sa, nullptr) != 0) return Status::FromErrno(errno, "SIGHUP");
  }
  if (fuse_session_mount(session->se_, session->options_.mountpoint.c_str()) != 0) {
    return Status::IOError("cannot mount on " + session->options_.mountpoint +
                           " (see the message above)");
  }
  session->mounted_ = true;
  if (session->options_.read_ahead_kb > 0) {
    // The kernel's readahead window for this mount; applied after FUSE init (see OpsContext).
    auto mount = FindMount(RealPath(session->options_.mountpoint));
    if (mount) {
      session->ctx_.read_ahead_path = "/sys/class/bdi/" + mount->device + "/read_ahead_kb";
      session->ctx_.read_ahead_kb = session->options_.read_ahead_kb;
    }
  }
  return session;
}

Session::~Session() {
  StopThreads();
  if (se_ != nullptr) {
    UnchainTerminationHandlers();
    g_stop_fd = -1;
    if (signals_) fuse_remove_signal_handlers(se_);
    if (mounted_) fuse_session_unmount(se_);
  }
  // After the unmount: a stat still waiting for an answer has failed by now.
  if (ready_checker_.joinable()) ready_checker_.join();
  if (se_ != nullptr) fuse_session_destroy(se_);
  g_reload_fd = -1;
  for (int fd : reload_pipe_) {
    if (fd >= 0) ::close(fd);
  }
  for (int fd : stop_pipe_) {
    if (fd >= 0) ::close(fd);
  }
}

void Session::StopThreads() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  if (refresher_.joinable()) refresher_.join();
  if (stopper_.joinable()) {
    loop_running_ = false;
    char c = 'Q';  // a full pipe wakes the stopper too: it then sees the loop has returned
    (void)!::write(stop_pipe_[1], &c, 1);
    stopper_.join();
  }
  if (reloader_.joinable()) {
    char c = 'Q';
    while (::write(reload_pipe_[1], &c, 1) < 0 && errno == EINTR) {
    }
    reloader_.join();
  }
}

Status Session::Run() {
  refresher_ = NamedThread("gfs-refresh", [this] { RefreshLoop(); });
  if (options_.on_reload) reloader_ = NamedThread("gfs-reload", [this] { ReloadLoop(); });
  if (options_.on_ready) ready_checker_ = NamedThread("gfs-ready", [this] { ReadyCheck(); });
  loop_thread_ = ::pthread_self();
  loop_running_ = true;
  stopper_ = NamedThread("gfs-stop", [this] { StopLoop(); });
  int rc;
  if (options_.single_thread) {
    rc = fuse_session_loop(se_);
  } else {
    struct fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(cfg, options_.clone_fd ? 1 : 0);
    fuse_loop_cfg_set_max_threads(cfg, options_.max_threads);
    rc = fuse_session_loop_mt(se_, cfg);
    fuse_loop_cfg_destroy(cfg);
  }
  loop_running_ = false;
  StopThreads();
  // rc is the signal number when a signal ended the loop: a clean stop.
  if (rc < 0) return Status::IOError(std::string("FUSE session ended: ") + std::strerror(-rc));
  return Status::Ok();
}

void Session::SetRefreshInterval(unsigned seconds) {
  {
    MutexLock lock(&mu_);
    refresh_interval_s_ = seconds;
  }
  cv_.SignalAll();
}

void Session::RefreshLoop() {
  MutexLock lock(&mu_);
  for (;;) {
    // A new interval restarts the wait.
    const unsigned interval = refresh_interval_s_;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(interval);
    while (!stopping_ && refresh_interval_s_ == interval) {
      if (interval == 0) {
        cv_.Wait(&mu_);
      } else if (!cv_.WaitUntil(&mu_, deadline)) {
        break;  // the interval passed
      }
    }
    if (stopping_) return;
    if (refresh_interval_s_ != interval) continue;
    lock.Unlock();
    std::vector<core::Invalidation> invalidations;
    if (fs_->Refresh(&invalidations).ok()) Notify(invalidations);
    if (options_.on_refreshed) options_.on_refreshed();
    lock.Lock();
  }
}

void Session::ReloadLoop() {
  for (;;) {
    char c;
    ssize_t n = ::read(reload_pipe_[0], &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1 || c == 'Q') return;
    {
      // Stopping: a 'Q' may not have fit behind a burst of SIGHUPs; reload no more.
      MutexLock lock(&mu_);
      if (stopping_) return;
    }
    options_.on_reload();
  }
}

void Session::StopLoop() {
  for (;;) {
    char c;
    ssize_t n = ::read(stop_pipe_[0], &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n != 1 || c == 'Q' || !loop_running_) return;
    // A termination signal: interrupt the loop's thread until its loop has returned.
    while (loop_running_) {
      ::pthread_kill(loop_thread_, SIGTERM);
      struct pollfd quit = {stop_pipe_[0], POLLIN, 0};
      ::poll(&quit, 1, 50);  // StopThreads's 'Q' ends the wait early
    }
  }
}

void Session::ReadyCheck() {
  struct stat st;
  // Answered by the session loop, so it returns once the mount serves requests.
  if (::stat(options_.mountpoint.c_str(), &st) != 0) return;
  {
    MutexLock lock(&mu_);
    if (stopping_) return;
  }
  options_.on_ready();
}

void Session::Notify(const std::vector<core::Invalidation>& invalidations) {
  using Kind = core::Invalidation::Kind;
  for (const auto& inv : invalidations) {
    {
      // Unmounting: a notify could wait on a directory lock held by a lookup that no worker
      // will ever answer.
      MutexLock lock(&mu_);
      if (stopping_) return;
    }
    int rc = 0;
    switch (inv.kind) {
      case Kind::kEntry:
        rc = fuse_lowlevel_notify_inval_entry(se_, inv.ino, inv.name.c_str(), inv.name.size());
        break;
      case Kind::kInode:
        rc = fuse_lowlevel_notify_inval_inode(se_, inv.ino, 0, 0);
        break;
      case Kind::kInodeAttrs:
        rc = fuse_lowlevel_notify_inval_inode(se_, inv.ino, -1, 0);
        break;
    }
    // ENOENT: the kernel had nothing cached for it, which is fine.
    if (rc != 0 && rc != -ENOENT) {
      LOG_DEBUG("invalidate ino %llu '%s': %s", static_cast<unsigned long long>(inv.ino),
                inv.name.c_str(), std::strerror(-rc));
    }
  }
}

}  // namespace glancefs::fuse
