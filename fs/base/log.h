// Process-wide logging: one line per event, to stderr (foreground) or syslog (daemon).
//
// Thread-safe. The sink and level are set once by the composition root (tools/glancefs) before
// any worker thread starts; every layer may log. Messages never carry secrets: callers pass ids,
// names and offsets, not tokens or URLs with credentials.
#pragma once

#include <cstdarg>

namespace glancefs {

enum class LogLevel { kError = 0, kWarning = 1, kInfo = 2, kDebug = 3 };

enum class LogSink { kStderr, kSyslog };

// REQUIRES: called before other threads log.
void SetLogSink(LogSink sink);
void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
// Parses "error", "warning", "info" or "debug". Returns false on anything else.
bool ParseLogLevel(const char* text, LogLevel* level);

void Logf(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace glancefs

#define GLANCEFS_LOG_(level, ...)                                               \
  do {                                                                          \
    if (static_cast<int>(level) <= static_cast<int>(::glancefs::GetLogLevel())) \
      ::glancefs::Logf(level, __VA_ARGS__);                                     \
  } while (0)
#define LOG_ERROR(...) GLANCEFS_LOG_(::glancefs::LogLevel::kError, __VA_ARGS__)
#define LOG_WARNING(...) GLANCEFS_LOG_(::glancefs::LogLevel::kWarning, __VA_ARGS__)
#define LOG_INFO(...) GLANCEFS_LOG_(::glancefs::LogLevel::kInfo, __VA_ARGS__)
#define LOG_DEBUG(...) GLANCEFS_LOG_(::glancefs::LogLevel::kDebug, __VA_ARGS__)
