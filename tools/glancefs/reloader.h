// Reloader: what SIGHUP (and `systemctl reload`) does to a running mount. It re-reads the
// config file and the command line it came from, and the token file, and applies without
// unmounting what can change live (OptionSpec::live: log_level, refresh, cache_size,
// cache_min_free, prefetch_workers, prefetch_rate, prefetch_interval, token_file), and the
// source's credentials (the token file's token; keystone's clouds.yaml entry). A changed
// option that cannot is named in the log and keeps its running value; a config that does not
// parse changes nothing. Tells the service manager RELOADING=1, then READY=1 with a STATUS=.
// Reload is called from the Session's reload thread, one call at a time.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cache/cache_service.h"
#include "fs/core/file_system.h"
#include "fs/fuse/session.h"
#include "tools/glancefs/options.h"

namespace glancefs::tools {

// Re-reads the source's credentials from the options' files and puts them in force; says what it
// read, for the log.
using CredentialsReader = std::function<Result<std::string>(const Options&)>;

struct ReloadTargets {
  fuse::Session* session = nullptr;
  cache::CacheService* cache = nullptr;  // null with -o nocache
  const core::FileSystem* fs = nullptr;  // for STATUS=
  CredentialsReader credentials;         // null: a source without credentials (dir:)
};

// The token: the first line of `token_file` (which must not be world-readable), else
// $OS_AUTH_TOKEN, else none.
Result<std::string> ReadToken(const std::string& token_file);

// The cache's and pre-fetcher's settings of `o`.
cache::ServiceOptions CacheOptionsOf(const Options& o);

// Sends `state` (e.g. "READY=1"; empty: none) with a STATUS= line to the service manager, if
// any (no-op without $NOTIFY_SOCKET).
void NotifyServiceManager(const std::string& state, const core::FileSystem& fs);

class Reloader {
 public:
  // `argv`: the command line as given (before --config expansion); `running`: what it gave.
  Reloader(std::vector<std::string> argv, Options running, ReloadTargets targets);
  void Reload();

 private:
  void Apply(const Options& next, const std::vector<std::string>& changed);

  const std::vector<std::string> argv_;
  Options running_;
  const ReloadTargets targets_;
};

}  // namespace glancefs::tools
