#include "fs/fuse/cmdline.h"

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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
  char* interface = nullptr;
  char* region = nullptr;
  char* cloud = nullptr;
  char* source = nullptr;
  int extra_nonopts = 0;
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
    GLANCEFS_OPT("interface=%s", interface),
    GLANCEFS_OPT("region=%s", region),
    GLANCEFS_OPT("cloud=%s", cloud),
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
  if (raw.interface) cl.interface = raw.interface;
  if (raw.region) cl.region = raw.region;
  if (raw.cloud) cl.cloud = raw.cloud;
  if (cl.page_limit == 0 || cl.page_limit > 1000) {
    cleanup();
    return Status::InvalidArgument("page_limit must be 1 to 1000");
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

void PrintHelp(const char* program) {
  std::printf(
      "usage: %s SOURCE MOUNTPOINT [-o opt[,opt...]] [-f] [-d]\n"
      "\n"
      "Mounts an OpenStack Glance image catalog as a read-only file system.\n"
      "\n"
      "SOURCE:\n"
      "    dir:PATH               a local catalog: PATH/<id>.json records and PATH/<id> data\n"
      "    http(s)://HOST:PORT    a Glance v2 endpoint; token from -o token_file= or\n"
      "                           $OS_AUTH_TOKEN (none: an unauthenticated Glance)\n"
      "    keystone               Glance found in Keystone's catalog; credentials from OS_*\n"
      "                           (password, v3applicationcredential or v3token)\n"
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
      "    -o interface=NAME      keystone: endpoint interface (default OS_INTERFACE, public)\n"
      "    -o region=NAME         keystone: endpoint region (default OS_REGION_NAME)\n"
      "    -o spool_dir=DIR       where images whose store refuses Range are streamed\n"
      "                           (default /var/tmp)\n"
      "\n"
      "See glancefs(8) for the layout of the mount.\n"
      "\n",
      program);
  std::printf("FUSE options:\n");
  fuse_cmdline_help();
  fuse_lowlevel_help();
}

void PrintVersion() {
  std::printf("glancefs version %s\nlibfuse version %s\n", GLANCEFS_VERSION, fuse_pkgversion());
  fuse_lowlevel_version();
}

}  // namespace glancefs::fuse
