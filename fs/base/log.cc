#include "fs/base/log.h"

#include <syslog.h>

#include <atomic>
#include <cstdio>
#include <cstring>

#include "fs/base/mutex.h"

namespace glancefs {
namespace {

std::atomic<LogLevel> g_level{LogLevel::kInfo};
std::atomic<LogSink> g_sink{LogSink::kStderr};
// Keeps lines whole when several threads write to stderr. A leaf: held for one fprintf.
Mutex g_stderr_mu;

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return "error";
    case LogLevel::kWarning:
      return "warning";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kDebug:
      return "debug";
  }
  return "?";
}

int SyslogPriority(LogLevel level) {
  switch (level) {
    case LogLevel::kError:
      return LOG_ERR;
    case LogLevel::kWarning:
      return LOG_WARNING;
    case LogLevel::kInfo:
      return LOG_INFO;
    case LogLevel::kDebug:
      return LOG_DEBUG;
  }
  return LOG_INFO;
}

}  // namespace

void SetLogSink(LogSink sink) {
  if (sink == LogSink::kSyslog) openlog("glancefs", LOG_PID, LOG_DAEMON);
  g_sink = sink;
}

void SetLogLevel(LogLevel level) { g_level = level; }
LogLevel GetLogLevel() { return g_level; }

bool ParseLogLevel(const char* text, LogLevel* level) {
  for (LogLevel l : {LogLevel::kError, LogLevel::kWarning, LogLevel::kInfo, LogLevel::kDebug}) {
    if (std::strcmp(text, LevelName(l)) == 0) {
      *level = l;
      return true;
    }
  }
  return false;
}

void Logf(LogLevel level, const char* fmt, ...) {
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  // Untrusted text (image names, server bodies) may end up in a message: keep one event on one
  // line and no terminal control characters.
  for (char* p = line; *p; ++p) {
    if (static_cast<unsigned char>(*p) < 0x20 || *p == 0x7f) *p = '?';
  }
  if (g_sink.load() == LogSink::kSyslog) {
    syslog(SyslogPriority(level), "%s", line);
    return;
  }
  MutexLock lock(&g_stderr_mu);
  std::fprintf(stderr, "glancefs: %s: %s\n", LevelName(level), line);
}

}  // namespace glancefs
