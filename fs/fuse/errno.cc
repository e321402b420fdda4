#include "fs/fuse/errno.h"

#include <cerrno>
#include <chrono>

#include "fs/base/log.h"
#include "fs/base/mutex.h"

namespace glancefs::fuse {
namespace {

// At most kBurst error lines per kWindow; the rest are counted and summarized.
constexpr int kBurst = 20;
constexpr auto kWindow = std::chrono::seconds(10);

Mutex g_limit_mu;
std::chrono::steady_clock::time_point g_window_start GUARDED_BY(g_limit_mu);
int g_in_window GUARDED_BY(g_limit_mu) = 0;
long g_suppressed GUARDED_BY(g_limit_mu) = 0;

// Returns false if this line must be dropped; *suppressed gets the count to report first.
bool Admit(long* suppressed) {
  MutexLock lock(&g_limit_mu);
  auto now = std::chrono::steady_clock::now();
  *suppressed = 0;
  if (now - g_window_start > kWindow) {
    g_window_start = now;
    g_in_window = 0;
    *suppressed = g_suppressed;
    g_suppressed = 0;
  }
  if (g_in_window >= kBurst) {
    ++g_suppressed;
    return false;
  }
  ++g_in_window;
  return true;
}

}  // namespace

int ToErrno(const Status& status) {
  using Code = Status::Code;
  switch (status.code()) {
    case Code::kOk:
      return 0;
    case Code::kNotFound:
      return ENOENT;
    case Code::kNotSupported:
      return ENOTSUP;
    case Code::kInvalidArgument:
      return EINVAL;
    case Code::kPermissionDenied:
      return EACCES;
    case Code::kReadOnly:
      return EROFS;
    case Code::kOutOfRange:
      return ENXIO;
    case Code::kTooBig:
      return ERANGE;
    case Code::kCorruption:
    case Code::kIOError:
    case Code::kUnavailable:
    case Code::kRefused:
      return EIO;
  }
  return EIO;
}

int LogFailure(const char* op, uint64_t ino, const Status& status) {
  int err = ToErrno(status);
  if (err == ENOENT || err == EROFS || err == ENXIO || err == EINVAL) {
    LOG_DEBUG("%s(ino %llu): %s", op, static_cast<unsigned long long>(ino),
              status.ToString().c_str());
    return err;
  }
  long suppressed = 0;
  if (!Admit(&suppressed)) return err;
  if (suppressed > 0) LOG_WARNING("%ld similar error lines suppressed", suppressed);
  LOG_ERROR("%s(ino %llu): %s", op, static_cast<unsigned long long>(ino),
            status.ToString().c_str());
  return err;
}

}  // namespace glancefs::fuse
