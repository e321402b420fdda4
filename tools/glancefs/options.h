// glancefs's options: the one table that the command line, the config file, --help, a reload
// and the man page's test all read (kept in the composition root, so that a backend's option
// never touches the FUSE adapter).
//
// The command line is shaped like every FUSE file system's, so that fstab and
// `mount -t fuse.glancefs SOURCE DIR -o opts` work:
//   glancefs SOURCE MOUNTPOINT [-o opt[,opt...]] [-f] [-d] [-s] [-h|--help] [-V|--version]
// Options of the table are taken out of -o; the rest go to libfuse (allow_other, max_threads=...).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "fs/base/log.h"
#include "fs/base/status.h"
#include "fs/fuse/cmdline.h"

namespace glancefs::tools {

// What the command line gives: SOURCE, MOUNTPOINT, libfuse's flags and the table's options as
// given (`given`, name → value; a reload diffs two of these), then each option's value.
struct Options : fuse::SplitCommandLine {
  unsigned refresh_s = 30;
  // Every change the refresher sees is invalidated explicitly, so the timeout only bounds the
  // cost of a missed invalidation.
  unsigned cache_timeout_s = 3600;
  // Measured (bench/foundation.sh) at about twice the sequential throughput of the kernel's
  // 128 KiB.
  unsigned read_ahead_kb = 4096;
  // Image views bypass the kernel's page cache (docs/CACHE.md, "Speed").
  bool direct_io = false;
  LogLevel log_level = LogLevel::kInfo;
  std::string token_file;
  std::string cacert;
  bool insecure = false;
  std::string spool_dir = "/var/tmp";
  unsigned page_limit = 1000;
  unsigned relist = 10;
  std::string interface;
  std::string region;
  std::string cloud;
  std::string metrics_listen;
  std::string cert_dir;  // signing certificates, DIR/<uuid>.pem
  bool require_signature = false;
  std::string trusted_certs;                 // the file
  std::vector<std::string> trusted_cert_ids;  // its uuids
  // The block cache (docs/CACHE.md).
  bool cache = true;
  std::string cache_dir;  // default: DefaultCacheDir(source)
  uint64_t cache_size = 10ULL << 30;
  uint64_t cache_min_free = 1ULL << 30;
  uint64_t cache_memory = 256ULL << 20;
  uint64_t cache_block = 64ULL << 10;
  uint64_t fetch_size = 64ULL << 20;
  uint64_t readahead_max = 64ULL << 20;
  unsigned fetch_threads = 8;
  unsigned prefetch_workers = 2;
  uint64_t prefetch_rate = 0;
  unsigned prefetch_interval_s = 0;
  // Ceph RBD (docs/RBD.md).
  bool rbd = true;
  std::string ceph_conf_dir = "/etc/ceph";
  std::string rbd_user = "glance";
  unsigned rbd_timeout_s = 30;
  unsigned rbd_retry_s = 30;
  std::string store;

};

enum class OptionGroup { kGlancefs, kCeph, kCache };

struct OptionSpec {
  std::string name;  // "cache_size"
  std::string arg;   // "SIZE"; empty for a flag
  std::string help;  // --help's text; '\n' starts a continuation line
  OptionGroup group;
  bool live;  // a reload (SIGHUP) applies a change without unmounting
  std::function<Status(Options*, const std::string& value)> set;
};

// In --help's order.
const std::vector<OptionSpec>& OptionTable();
const OptionSpec* FindOption(const std::string& name);

// Parses argv (after --config expansion). -d turns log_level to debug unless it is given.
Result<Options> ParseOptions(const std::vector<std::string>& argv);

// "10G" → 10 GiB; plain numbers are bytes. InvalidArgument for anything else.
Result<uint64_t> ParseSize(const std::string& text);

// /var/cache/glancefs/<hash of SOURCE> for root, else $XDG_CACHE_HOME (or ~/.cache)/glancefs/...
// One directory per source: two mounts of different catalogs never share a cache.
std::string DefaultCacheDir(const std::string& source);

// Prints the usage, the table's options and libfuse's.
void PrintHelp(const char* program);
void PrintVersion();

}  // namespace glancefs::tools
