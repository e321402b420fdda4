#include "fs/fuse/cmdline.h"

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cerrno>
#include <cstring>

#include <unistd.h>

#include "fs/base/hash.h"
#include "fs/fuse/fuse_version.h"

#ifndef GLANCEFS_VERSION
#define GLANCEFS_VERSION "unknown"
#endif

namespace glancefs::fuse {
namespace {

struct RawOptions {
  unsigned refresh_s = 30;
  unsigned cache_timeout_s = 3600;
  unsigned read_ahead_kb = 4096;
  char* log_level = nullptr;
  char* token_file = nullptr;
  char* cacert = nullptr;
  char* spool_dir = nullptr;
  int insecure = 0;
  unsigned page_limit = 1000;
  unsigned relist = 10;
  char* interface = nullptr;
  char* region = nullptr;
  char* cloud = nullptr;
  char* source = nullptr;
  int extra_nonopts = 0;
  int nocache = 0;
  char* cache_dir = nullptr;
  char* cache_size = nullptr;
  char* cache_min_free = nullptr;
  char* cache_memory = nullptr;
  char* cache_block = nullptr;
  char* fetch_size = nullptr;
  char* readahead_max = nullptr;
  unsigned fetch_threads = 8;
  unsigned prefetch_workers = 2;
  char* prefetch_rate = nullptr;
  unsigned prefetch_interval_s = 0;
  int norbd = 0;
  char* ceph_conf_dir = nullptr;
  char* rbd_user = nullptr;
  unsigned rbd_timeout_s = 30;
  unsigned rbd_retry_s = 30;
  char* store = nullptr;
  char* metrics_listen = nullptr;
};

#define GLANCEFS_OPT(t, p) \
  { t, offsetof(RawOptions, p), 1 }
const struct fuse_opt kOptions[] = {
    GLANCEFS_OPT("refresh=%u", refresh_s),
    GLANCEFS_OPT("cache_timeout=%u", cache_timeout_s),
    GLANCEFS_OPT("log_level=%s", log_level),
    GLANCEFS_OPT("read_ahead_kb=%u", read_ahead_kb),
    GLANCEFS_OPT("token_file=%s", token_file),
    GLANCEFS_OPT("cacert=%s", cacert),
    GLANCEFS_OPT("spool_dir=%s", spool_dir),
    GLANCEFS_OPT("page_limit=%u", page_limit),
    GLANCEFS_OPT("relist=%u", relist),
    GLANCEFS_OPT("interface=%s", interface),
    GLANCEFS_OPT("region=%s", region),
    GLANCEFS_OPT("cloud=%s", cloud),
    GLANCEFS_OPT("cache_dir=%s", cache_dir),
    GLANCEFS_OPT("cache_size=%s", cache_size),
    GLANCEFS_OPT("cache_min_free=%s", cache_min_free),
    GLANCEFS_OPT("cache_memory=%s", cache_memory),
    GLANCEFS_OPT("cache_block=%s", cache_block),
    GLANCEFS_OPT("fetch_size=%s", fetch_size),
    GLANCEFS_OPT("readahead_max=%s", readahead_max),
    GLANCEFS_OPT("fetch_threads=%u", fetch_threads),
    GLANCEFS_OPT("prefetch_workers=%u", prefetch_workers),
    GLANCEFS_OPT("prefetch_rate=%s", prefetch_rate),
    GLANCEFS_OPT("prefetch_interval=%u", prefetch_interval_s),
    GLANCEFS_OPT("ceph_conf_dir=%s", ceph_conf_dir),
    GLANCEFS_OPT("rbd_user=%s", rbd_user),
    GLANCEFS_OPT("rbd_timeout=%u", rbd_timeout_s),
    GLANCEFS_OPT("rbd_retry=%u", rbd_retry_s),
    GLANCEFS_OPT("store=%s", store),
    GLANCEFS_OPT("metrics_listen=%s", metrics_listen),
    {"norbd", offsetof(RawOptions, norbd), 1},
    {"nocache", offsetof(RawOptions, nocache), 1},
    {"insecure", offsetof(RawOptions, insecure), 1},
    FUSE_OPT_END,
};

// Takes SOURCE (the first non-option) out of the arguments; keeps MOUNTPOINT for libfuse.
int TakeSource(void* data, const char* arg, int key, struct fuse_args* outargs) {
  (void)outargs;
  auto* raw = static_cast<RawOptions*>(data);
  if (key != FUSE_OPT_KEY_NONOPT) return 1;
  if (raw->source == nullptr) {
    raw->source = ::strdup(arg);
    return 0;
  }
  return 1;
}

// fsname goes into the mount table; ',' and '\' must be escaped for libfuse's option parser.
std::string EscapeOption(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

}  // namespace

Result<CommandLine> ParseCommandLine(int argc, char** argv) {
  struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
  RawOptions raw;
  CommandLine cl;
  auto cleanup = [&] {
    std::free(raw.token_file);
    std::free(raw.interface);
    std::free(raw.region);
    std::free(raw.cloud);
    std::free(raw.cacert);
    std::free(raw.spool_dir);
    std::free(raw.log_level);
    std::free(raw.source);
    for (char* p : {raw.ceph_conf_dir, raw.rbd_user, raw.store, raw.metrics_listen,
                    raw.cache_dir, raw.cache_size, raw.cache_min_free, raw.cache_memory,
                    raw.cache_block, raw.fetch_size, raw.readahead_max, raw.prefetch_rate}) {
      std::free(p);
    }
    fuse_opt_free_args(&args);
  };
  if (fuse_opt_parse(&args, &raw, kOptions, TakeSource) != 0) {
    cleanup();
    return Status::InvalidArgument("cannot parse the options");
  }
  struct fuse_cmdline_opts opts;
  std::memset(&opts, 0, sizeof opts);
  if (fuse_parse_cmdline(&args, &opts) != 0) {
    cleanup();
    return Status::InvalidArgument("cannot parse the command line (see the message above)");
  }
  cl.show_help = opts.show_help;
  cl.show_version = opts.show_version;
  cl.foreground = opts.foreground;
  cl.debug = opts.debug;
  cl.single_thread = opts.singlethread;
  cl.max_threads = opts.max_threads;
  cl.clone_fd = opts.clone_fd;
  if (opts.mountpoint) cl.mountpoint = opts.mountpoint;
  std::free(opts.mountpoint);
  if (raw.source) cl.source = raw.source;
  cl.refresh_s = raw.refresh_s;
  cl.cache_timeout_s = raw.cache_timeout_s;
  cl.read_ahead_kb = raw.read_ahead_kb;
  if (raw.token_file) cl.token_file = raw.token_file;
  if (raw.cacert) cl.cacert = raw.cacert;
  if (raw.spool_dir) cl.spool_dir = raw.spool_dir;
  cl.insecure = raw.insecure != 0;
  cl.page_limit = raw.page_limit;
  cl.relist = raw.relist;
  if (raw.interface) cl.interface = raw.interface;
  if (raw.region) cl.region = raw.region;
  if (raw.cloud) cl.cloud = raw.cloud;
  cl.cache = raw.nocache == 0;
  if (raw.cache_dir) cl.cache_dir = raw.cache_dir;
  cl.fetch_threads = raw.fetch_threads;
  cl.prefetch_workers = raw.prefetch_workers;
  cl.prefetch_interval_s = raw.prefetch_interval_s;
  cl.rbd = raw.norbd == 0;
  if (raw.ceph_conf_dir) cl.ceph_conf_dir = raw.ceph_conf_dir;
  if (raw.rbd_user) cl.rbd_user = raw.rbd_user;
  if (raw.store) cl.store = raw.store;
  if (raw.metrics_listen) cl.metrics_listen = raw.metrics_listen;
  cl.rbd_timeout_s = raw.rbd_timeout_s;
  cl.rbd_retry_s = raw.rbd_retry_s;
  struct SizeOption {
    const char* name;
    char* text;
    uint64_t* out;
  } sizes[] = {{"cache_size", raw.cache_size, &cl.cache_size},
               {"cache_min_free", raw.cache_min_free, &cl.cache_min_free},
               {"cache_memory", raw.cache_memory, &cl.cache_memory},
               {"cache_block", raw.cache_block, &cl.cache_block},
               {"fetch_size", raw.fetch_size, &cl.fetch_size},
               {"readahead_max", raw.readahead_max, &cl.readahead_max},
               {"prefetch_rate", raw.prefetch_rate, &cl.prefetch_rate}};
  for (const SizeOption& o : sizes) {
    if (!o.text) continue;
    auto v = ParseSize(o.text);
    if (!v.ok()) {
      std::string message = std::string(o.name) + ": " + v.status().message();
      cleanup();
      return Status::InvalidArgument(message);
    }
    *o.out = *v;
  }
  if (cl.fetch_threads == 0 || cl.fetch_threads > 64) {
    cleanup();
    return Status::InvalidArgument("fetch_threads must be 1 to 64");
  }
  if (cl.cache_block < 4096 || cl.cache_block > (16 << 20) ||
      (cl.cache_block & (cl.cache_block - 1)) != 0) {
    cleanup();
    return Status::InvalidArgument("cache_block must be a power of two, 4K to 16M");
  }
  if (cl.fetch_size < (64 << 10) || cl.fetch_size > (256 << 20)) {
    cleanup();
    return Status::InvalidArgument("fetch_size must be 64K to 256M");
  }
  if (cl.page_limit == 0 || cl.page_limit > 1000) {
    cleanup();
    return Status::InvalidArgument("page_limit must be 1 to 1000");
  }
  if (cl.rbd_timeout_s == 0 || cl.rbd_timeout_s > 3600) {
    cleanup();
    return Status::InvalidArgument("rbd_timeout must be 1 to 3600 seconds");
  }
  if (cl.relist == 0) {
    cleanup();
    return Status::InvalidArgument("relist must be at least 1");
  }
  if (cl.debug) cl.log_level = LogLevel::kDebug;
  if (raw.log_level && !ParseLogLevel(raw.log_level, &cl.log_level)) {
    std::string bad = raw.log_level;
    cleanup();
    return Status::InvalidArgument("log_level must be error, warning, info or debug, not '" + bad +
                                   "'");
  }
  for (int i = 0; i < args.argc; ++i) cl.fuse_args.emplace_back(args.argv[i]);
  cleanup();
  if (cl.show_help || cl.show_version) return cl;
  if (cl.source.empty()) return Status::InvalidArgument("missing SOURCE (try --help)");
  if (cl.mountpoint.empty()) return Status::InvalidArgument("missing MOUNTPOINT (try --help)");
  cl.fuse_args.push_back("-o");
  cl.fuse_args.push_back("default_permissions,subtype=glancefs,fsname=" +
                         EscapeOption("glancefs:" + cl.source));
  return cl;
}

Result<uint64_t> ParseSize(const std::string& text) {
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 10);
  if (end == text.c_str() || errno != 0 || text[0] == '-') {
    return Status::InvalidArgument("'" + text + "' is not a size (e.g. 512M, 10G)");
  }
  std::string suffix(end);
  int shift = 0;
  if (suffix == "" || suffix == "B") {
    shift = 0;
  } else if (suffix == "K" || suffix == "k" || suffix == "KiB") {
    shift = 10;
  } else if (suffix == "M" || suffix == "MiB") {
    shift = 20;
  } else if (suffix == "G" || suffix == "GiB") {
    shift = 30;
  } else if (suffix == "T" || suffix == "TiB") {
    shift = 40;
  } else {
    return Status::InvalidArgument("'" + text + "' has an unknown unit (K, M, G or T)");
  }
  if (shift && v > (UINT64_MAX >> shift)) return Status::InvalidArgument("'" + text + "' is too big");
  return static_cast<uint64_t>(v) << shift;
}

std::string DefaultCacheDir(const std::string& source) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx",
                static_cast<unsigned long long>(StableHash64(source)));
  if (::geteuid() == 0) return std::string("/var/cache/glancefs/") + name;
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::string base = xdg && *xdg ? xdg : std::string(home ? home : "/tmp") + "/.cache";
  return base + "/glancefs/" + name;
}

void PrintHelp(const char* program) {
  std::printf(
      "usage: %s SOURCE MOUNTPOINT [-o opt[,opt...]] [-f] [-d]\n"
      "       %s --config FILE [MOUNTPOINT] [-o opt[,opt...]] [-f] [-d]\n"
      "\n"
      "Mounts an OpenStack Glance image catalog as a read-only file system.\n"
      "\n"
      "SOURCE:\n"
      "    dir:PATH               a local catalog: PATH/<id>.json records and PATH/<id> data\n"
      "    http(s)://HOST:PORT    a Glance v2 endpoint; token from -o token_file= or\n"
      "                           $OS_AUTH_TOKEN (none: an unauthenticated Glance)\n"
      "    keystone               Glance found in Keystone's catalog; credentials from OS_*\n"
      "                           (password, v3applicationcredential or v3token), or the\n"
      "                           clouds.yaml entry of -o cloud= or $OS_CLOUD\n"
      "\n"
      "glancefs options:\n"
      "    -o refresh=SECONDS     re-read the catalog this often (default 30, 0 = never)\n"
      "    -o cache_timeout=SECONDS\n"
      "                           kernel name/attribute cache lifetime (default 3600)\n"
      "    -o log_level=LEVEL     error, warning, info (default) or debug\n"
      "    -o read_ahead_kb=KIB   kernel readahead window (default 4096, 0 = kernel's)\n"
      "    -o token_file=PATH     Glance token, first line (refused if world-readable)\n"
      "    -o cacert=PATH         CA bundle for https; -o insecure skips verification\n"
      "    -o page_limit=N        images per Glance listing page (default 1000)\n"
      "    -o relist=N            every Nth refresh lists everything; the others ask only\n"
      "                           for images updated since (default 10, 1 = always all)\n"
      "    -o cloud=NAME          keystone: clouds.yaml entry (default $OS_CLOUD)\n"
      "    -o interface=NAME      keystone: endpoint interface (default OS_INTERFACE, public)\n"
      "    -o region=NAME         keystone: endpoint region (default OS_REGION_NAME)\n"
      "    -o spool_dir=DIR       with nocache: where images whose store refuses Range\n"
      "                           are streamed (default /var/tmp)\n"
      "    -o metrics_listen=[HOST:]PORT\n"
      "                           serve metrics.prom at http://HOST:PORT/metrics for\n"
      "                           Prometheus (HOST default 127.0.0.1)\n"
      "\n"
      "Ceph RBD options (docs/RBD.md):\n"
      "    -o norbd               never read from Ceph: rbd:// images through the SOURCE\n"
      "    -o ceph_conf_dir=DIR   one <cluster>.conf per cluster (default /etc/ceph)\n"
      "    -o rbd_user=NAME       Ceph client id, client.NAME (default glance)\n"
      "    -o rbd_timeout=SECONDS bound on every Ceph wait (default 30)\n"
      "    -o rbd_retry=SECONDS   leave a failed cluster or location alone (default 30)\n"
      "    -o store=NAME          prefer this Glance store's locations\n"
      "\n"
      "cache options (sizes take K, M, G, T):\n"
      "    -o nocache             no block cache: every read goes to the source\n"
      "    -o cache_dir=DIR       the cache's RocksDB (default /var/cache/glancefs/<hash>)\n"
      "    -o cache_size=SIZE     soft limit on cached bytes (default 10G, 0 = none)\n"
      "    -o cache_min_free=SIZE free disk space to keep (default 1G)\n"
      "    -o cache_memory=SIZE   in-memory block budget (default 256M)\n"
      "    -o cache_block=SIZE    block size of a new cache (default 64K; an existing\n"
      "                           cache keeps its own)\n"
      "    -o fetch_size=SIZE     largest Range request (default 64M)\n"
      "    -o fetch_threads=N     fetches in flight for read-ahead and pre-fetch (default 8)\n"
      "    -o readahead_max=SIZE  largest read-ahead window (default 64M, 0 = off)\n"
      "    -o prefetch_workers=N  images pre-fetched at once (default 2)\n"
      "    -o prefetch_rate=SIZE  bytes/s per pre-fetch worker (default 0 = no cap)\n"
      "    -o prefetch_interval=SECONDS\n"
      "                           start queued images every SECONDS (default 0 = at once)\n"
      "\n"
      "--config FILE: an INI file whose [glancefs] section sets source, mountpoint and\n"
      "any option above (key = value; flags: key = true); the command line wins.\n"
      "See glancefs(8) for the layout of the mount.\n"
      "\n",
      program, program);
  std::printf("FUSE options:\n");
  fuse_cmdline_help();
  fuse_lowlevel_help();
}

void PrintVersion() {
  std::printf("glancefs version %s\nlibfuse version %s\n", GLANCEFS_VERSION, fuse_pkgversion());
  fuse_lowlevel_version();
}

}  // namespace glancefs::fuse
