#include "tools/glancefs/reloader.h"

#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <set>

#include "backends/dir/cert_dir.h"
#include "fs/base/log.h"
#include "tools/glancefs/config_file.h"

namespace glancefs::tools {

Result<std::string> ReadToken(const std::string& token_file) {
  if (token_file.empty()) {
    const char* env = std::getenv("OS_AUTH_TOKEN");
    return std::string(env ? env : "");
  }
  struct stat st;
  if (::stat(token_file.c_str(), &st) != 0) {
    return Status::FromErrno(errno, "token_file " + token_file);
  }
  if (st.st_mode & S_IROTH) {
    return Status::PermissionDenied("token_file " + token_file +
                                    " is world-readable: chmod o-r it first");
  }
  std::ifstream in(token_file);
  std::string token;
  std::getline(in, token);
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) return Status::InvalidArgument("token_file " + token_file + " is empty");
  return token;
}

cache::ServiceOptions CacheOptionsOf(const Options& o) {
  cache::ServiceOptions s;
  s.dir = o.cache_dir.empty() ? DefaultCacheDir(o.source) : o.cache_dir;
  s.cache.max_bytes = o.cache_size;
  s.cache.min_free_bytes = o.cache_min_free;
  s.cache.memory_bytes = o.cache_memory;
  s.cache.block_size = static_cast<uint32_t>(o.cache_block);
  s.cache.request_bytes = static_cast<uint32_t>(o.fetch_size);
  s.cache.readahead_max = o.readahead_max;
  s.cache.readahead_initial = std::min<uint64_t>(o.readahead_max, 4ULL << 20);
  s.cache.fetch_threads = static_cast<int>(o.fetch_threads);
  s.prefetch.workers = static_cast<int>(o.prefetch_workers);
  s.prefetch.bytes_per_s = o.prefetch_rate;
  s.prefetch.interval_s = static_cast<int>(o.prefetch_interval_s);
  if (!o.cert_dir.empty()) {
    s.cache.certificates = std::make_shared<backends::DirCertificateStore>(o.cert_dir);
  }
  s.cache.trusted_certificates = o.trusted_cert_ids;
  return s;
}

void NotifyServiceManager(const std::string& state, const core::FileSystem& fs) {
  std::string status = fs.StatusLine();
  std::replace(status.begin(), status.end(), '\n', ' ');
  ::sd_notify(0, ((state.empty() ? "" : state + "\n") + "STATUS=" + status).c_str());
}

Reloader::Reloader(std::vector<std::string> argv, Options running, ReloadTargets targets)
    : argv_(std::move(argv)), running_(std::move(running)), targets_(std::move(targets)) {}

void Reloader::Reload() {
  ::sd_notify(0, "RELOADING=1\nSTATUS=reloading the configuration");
  LOG_INFO("reload: re-reading the configuration");
  auto args = ExpandConfig(argv_);
  Result<Options> next = args.ok() ? ParseOptions(*args) : Result<Options>(args.status());
  if (!next.ok()) {
    LOG_ERROR("reload: %s; nothing changed", next.status().message().c_str());
    NotifyServiceManager("READY=1", *targets_.fs);
    return;
  }
  if (next->source != running_.source || next->mountpoint != running_.mountpoint) {
    LOG_WARNING("reload: source and mountpoint cannot change without a remount; still %s on %s",
                running_.source.c_str(), running_.mountpoint.c_str());
  }
  std::set<std::string> names;
  for (const auto& [name, value] : running_.given) names.insert(name);
  for (const auto& [name, value] : next->given) names.insert(name);
  std::vector<std::string> changed;
  for (const std::string& name : names) {
    auto before = running_.given.find(name);
    auto after = next->given.find(name);
    bool had = before != running_.given.end(), has = after != next->given.end();
    if (had == has && (!had || before->second == after->second)) continue;
    if (!FindOption(name)->live) {
      LOG_WARNING("reload: %s cannot change without a remount; keeping %s", name.c_str(),
                  had ? ("'" + before->second + "'").c_str() : "its default");
      continue;
    }
    changed.push_back(name);
    if (has) {
      running_.given[name] = after->second;
    } else {
      running_.given.erase(name);
    }
  }
  Apply(*next, changed);
  LOG_INFO("reload: done, %zu option%s changed", changed.size(), changed.size() == 1 ? "" : "s");
  NotifyServiceManager("READY=1", *targets_.fs);
}

void Reloader::Apply(const Options& next, const std::vector<std::string>& changed) {
  auto changes = [&](std::initializer_list<const char*> names) {
    for (const char* n : names) {
      if (std::find(changed.begin(), changed.end(), n) != changed.end()) return true;
    }
    return false;
  };
  if (changes({"log_level"})) {
    LOG_INFO("reload: log_level %s", next.given.count("log_level")
                                         ? next.given.at("log_level").c_str()
                                         : "back to its default");
    running_.log_level = next.log_level;
    SetLogLevel(next.log_level);
  }
  if (changes({"refresh"})) {
    running_.refresh_s = next.refresh_s;
    targets_.session->SetRefreshInterval(next.refresh_s);
    LOG_INFO("reload: refresh every %u s", next.refresh_s);
  }
  if (targets_.cache && changes({"cache_size", "cache_min_free"})) {
    running_.cache_size = next.cache_size;
    running_.cache_min_free = next.cache_min_free;
    targets_.cache->SetLimits(next.cache_size, next.cache_min_free);
    LOG_INFO("reload: cache_size %llu bytes, cache_min_free %llu bytes",
             static_cast<unsigned long long>(next.cache_size),
             static_cast<unsigned long long>(next.cache_min_free));
  }
  if (targets_.cache && changes({"prefetch_workers", "prefetch_rate", "prefetch_interval"})) {
    running_.prefetch_workers = next.prefetch_workers;
    running_.prefetch_rate = next.prefetch_rate;
    running_.prefetch_interval_s = next.prefetch_interval_s;
    targets_.cache->SetPrefetch(CacheOptionsOf(running_).prefetch);
    LOG_INFO("reload: %u pre-fetch workers, %llu bytes/s each, interval %u s",
             next.prefetch_workers, static_cast<unsigned long long>(next.prefetch_rate),
             next.prefetch_interval_s);
  }
  if (targets_.credentials) {  // re-read whether or not their file's name changed
    running_.token_file = next.token_file;
    running_.cloud = next.cloud;
    auto read = targets_.credentials(next);
    if (read.ok()) {
      LOG_INFO("reload: %s", read->c_str());
    } else {
      LOG_ERROR("reload: %s; keeping the credentials in use", read.status().message().c_str());
    }
  }
}

}  // namespace glancefs::tools
