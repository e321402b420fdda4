// The glancefs command line, shaped like every FUSE file system's so that fstab and
// `mount -t fuse.glancefs SOURCE DIR -o opts` work:
//   glancefs SOURCE MOUNTPOINT [-o opt[,opt...]] [-f] [-d] [-s] [-h|--help] [-V|--version]
// glancefs options are taken out of -o; the rest go to libfuse (allow_other, max_threads=...).
#pragma once

#include <string>
#include <vector>

#include "fs/base/log.h"
#include "fs/base/status.h"

namespace glancefs::fuse {

struct CommandLine {
  std::string source;
  std::string mountpoint;
  bool foreground = false;
  bool debug = false;
  bool single_thread = false;
  bool show_help = false;
  bool show_version = false;
  unsigned max_threads = 10;
  bool clone_fd = false;
  // -o refresh=SECONDS: how often the catalog is re-read. Default 30 s (0: never).
  unsigned refresh_s = 30;
  // -o cache_timeout=SECONDS: how long the kernel caches names and attributes. Default 3600 s:
  // every change the refresher sees is invalidated explicitly, so the timeout only bounds the
  // cost of a missed invalidation.
  unsigned cache_timeout_s = 3600;
  // -o read_ahead_kb=KIB: the kernel's readahead window for the mount. Default 4096: measured
  // (bench/foundation.sh) at about twice the sequential throughput of the kernel's 128 KiB.
  unsigned read_ahead_kb = 4096;
  LogLevel log_level = LogLevel::kInfo;  // -o log_level=error|warning|info|debug
  // Options for the source, passed through to the backend the composition root builds:
  std::string token_file;              // -o token_file=PATH: a Glance token (never world-readable)
  std::string cacert;                  // -o cacert=PATH: CA bundle for https
  bool insecure = false;               // -o insecure: do not verify TLS certificates
  std::string spool_dir = "/var/tmp";  // -o spool_dir=DIR: for images whose store refuses Range
  unsigned page_limit = 1000;          // -o page_limit=N: images per Glance listing page
  unsigned relist = 10;                // -o relist=N: every Nth refresh is a full listing
  std::string interface;  // -o interface=public|internal|admin (keystone; else OS_INTERFACE)
  std::string region;     // -o region=NAME (keystone; else OS_REGION_NAME)
  std::string cloud;      // -o cloud=NAME: clouds.yaml entry (not read yet: a clear error)
  // The block cache (docs/CACHE.md). Sizes take K, M, G, T suffixes (powers of 1024).
  bool cache = true;               // -o nocache: read straight from the source
  std::string cache_dir;           // -o cache_dir=DIR (default: see DefaultCacheDir)
  uint64_t cache_size = 10ULL << 30;      // -o cache_size=SIZE: soft limit (0: none)
  uint64_t cache_min_free = 1ULL << 30;   // -o cache_min_free=SIZE: free disk to keep
  uint64_t cache_memory = 256ULL << 20;   // -o cache_memory=SIZE: in-memory block budget
  uint64_t cache_block = 64ULL << 10;     // -o cache_block=SIZE: block size of a new cache
  uint64_t fetch_size = 64ULL << 20;      // -o fetch_size=SIZE: largest Range request
  uint64_t readahead_max = 64ULL << 20;   // -o readahead_max=SIZE: 0 turns read-ahead off
  unsigned fetch_threads = 8;             // -o fetch_threads=N
  unsigned prefetch_workers = 2;          // -o prefetch_workers=N: images pre-fetched at once
  uint64_t prefetch_rate = 0;             // -o prefetch_rate=SIZE: bytes/s per worker (0: any)
  unsigned prefetch_interval_s = 0;       // -o prefetch_interval=SECONDS (0: at once)
  // Ceph RBD (docs/RBD.md): images with rbd:// locations are read straight from Ceph.
  bool rbd = true;                          // -o norbd: never read from Ceph directly
  std::string ceph_conf_dir = "/etc/ceph";  // -o ceph_conf_dir=DIR: one <cluster>.conf each
  std::string rbd_user = "glance";          // -o rbd_user=NAME: the client id (client.NAME)
  unsigned rbd_timeout_s = 30;              // -o rbd_timeout=SECONDS: every Ceph wait
  unsigned rbd_retry_s = 30;                // -o rbd_retry=SECONDS: after a failed location
  std::string store;                        // -o store=NAME: the node's preferred store
  std::string metrics_listen;  // -o metrics_listen=[HOST:]PORT: serve /metrics over HTTP
  std::vector<std::string> fuse_args;  // for fuse_session_new, argv[0] first
};

Result<CommandLine> ParseCommandLine(int argc, char** argv);

// "10G" → 10 GiB; plain numbers are bytes. InvalidArgument for anything else.
Result<uint64_t> ParseSize(const std::string& text);

// /var/cache/glancefs/<hash of SOURCE> for root, else $XDG_CACHE_HOME (or ~/.cache)/glancefs/...
// One directory per source: two mounts of different catalogs never share a cache.
std::string DefaultCacheDir(const std::string& source);

// Prints the usage, glancefs's options and libfuse's.
void PrintHelp(const char* program);
void PrintVersion();

}  // namespace glancefs::fuse
