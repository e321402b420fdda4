#include "tools/glancefs/options.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "fs/base/hash.h"
#include "fs/fuse/cmdline.h"

#ifndef GLANCEFS_VERSION
#define GLANCEFS_VERSION "unknown"
#endif

namespace glancefs::tools {
namespace {

using Setter = std::function<Status(Options*, const std::string&)>;

Setter Text(std::string Options::*field) {
  return [field](Options* o, const std::string& v) {
    o->*field = v;
    return Status::Ok();
  };
}

Setter Flag(bool Options::*field, bool value) {
  return [field, value](Options* o, const std::string&) {
    o->*field = value;
    return Status::Ok();
  };
}

Setter Number(unsigned Options::*field, unsigned min, unsigned max) {
  return [field, min, max](Options* o, const std::string& v) {
    char* end = nullptr;
    errno = 0;
    unsigned long n = std::strtoul(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || v[0] == '-' || n < min || n > max) {
      return Status::InvalidArgument("'" + v + "' is not a number from " + std::to_string(min) +
                                     " to " + std::to_string(max));
    }
    o->*field = static_cast<unsigned>(n);
    return Status::Ok();
  };
}

Setter Size(uint64_t Options::*field, uint64_t min = 0, uint64_t max = UINT64_MAX,
            bool power_of_two = false) {
  return [=](Options* o, const std::string& v) -> Status {
    GLANCEFS_ASSIGN_OR_RETURN(uint64_t n, ParseSize(v));
    if (n < min || n > max || (power_of_two && (n & (n - 1)) != 0)) {
      return Status::InvalidArgument("'" + v + "' is out of range" +
                                     (power_of_two ? " (a power of two, " : " (") +
                                     std::to_string(min) + " to " + std::to_string(max) + " bytes)");
    }
    o->*field = n;
    return Status::Ok();
  };
}

// One certificate uuid per line; blank lines and '#' comments are skipped.
Status SetTrustedCerts(Options* o, const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::FromErrno(errno, path);
  o->trusted_certs = path;
  o->trusted_cert_ids.clear();
  std::string line;
  while (std::getline(in, line)) {
    line.erase(0, line.find_first_not_of(" \t"));
    line.erase(line.find_last_not_of(" \t\r") + 1);
    if (!line.empty() && line[0] != '#') o->trusted_cert_ids.push_back(line);
  }
  if (o->trusted_cert_ids.empty()) return Status::InvalidArgument(path + " names no certificate");
  return Status::Ok();
}

Status SetLogLevelOption(Options* o, const std::string& v) {
  if (!ParseLogLevel(v.c_str(), &o->log_level)) {
    return Status::InvalidArgument("must be error, warning, info or debug, not '" + v + "'");
  }
  return Status::Ok();
}

std::vector<OptionSpec> MakeTable() {
  using G = OptionGroup;
  constexpr bool kLive = true, kRemount = false;
  constexpr unsigned kMaxU = 0xffffffffu;
  return {
      {"refresh", "SECONDS", "re-read the catalog this often (default 30, 0 = never)", G::kGlancefs,
       kLive, Number(&Options::refresh_s, 0, 86400)},
      {"cache_timeout", "SECONDS", "kernel name/attribute cache lifetime (default 3600)",
       G::kGlancefs, kRemount, Number(&Options::cache_timeout_s, 0, kMaxU)},
      {"log_level", "LEVEL", "error, warning, info (default) or debug", G::kGlancefs, kLive,
       SetLogLevelOption},
      {"read_ahead_kb", "KIB", "kernel readahead window (default 4096, 0 = kernel's)",
       G::kGlancefs, kRemount, Number(&Options::read_ahead_kb, 0, 1 << 20)},
      {"direct_io", "",
       "image views bypass the kernel's page cache: bytes kept\nonce, not twice; mmap(MAP_SHARED) "
       "of a view is refused",
       G::kGlancefs, kRemount, Flag(&Options::direct_io, true)},
      {"token_file", "PATH", "Glance token, first line (refused if world-readable);\nre-read on reload",
       G::kGlancefs, kLive, Text(&Options::token_file)},
      {"cacert", "PATH", "CA bundle for https", G::kGlancefs, kRemount, Text(&Options::cacert)},
      {"insecure", "", "do not verify TLS certificates", G::kGlancefs, kRemount,
       Flag(&Options::insecure, true)},
      {"page_limit", "N", "images per Glance listing page (default 1000)", G::kGlancefs, kRemount,
       Number(&Options::page_limit, 1, 1000)},
      {"relist", "N",
       "every Nth refresh lists everything; the others ask only\nfor images updated since "
       "(default 10, 1 = always all)",
       G::kGlancefs, kRemount, Number(&Options::relist, 1, kMaxU)},
      {"cloud", "NAME", "keystone: clouds.yaml entry (default $OS_CLOUD);\nre-read on reload",
       G::kGlancefs, kLive, Text(&Options::cloud)},
      {"interface", "NAME", "keystone: endpoint interface (default OS_INTERFACE, public)",
       G::kGlancefs, kRemount, Text(&Options::interface)},
      {"region", "NAME", "keystone: endpoint region (default OS_REGION_NAME)", G::kGlancefs,
       kRemount, Text(&Options::region)},
      {"spool_dir", "DIR",
       "with nocache: where images whose store refuses Range\nare streamed (default /var/tmp)",
       G::kGlancefs, kRemount, Text(&Options::spool_dir)},
      {"cert_dir", "DIR",
       "signing certificates as DIR/<uuid>.pem: image signatures\n(img_signature*) are checked "
       "as the cache verifies images\n(keystone: else from Barbican)",
       G::kGlancefs, kRemount, Text(&Options::cert_dir)},
      {"trusted_certs", "FILE",
       "validate signing certificates as Nova does: each must chain\nto a CA whose uuid FILE "
       "lists (one per line), within dates",
       G::kGlancefs, kRemount, SetTrustedCerts},
      {"require_signature", "",
       "serve an image's data only once its signature is verified\n(opening fetches and checks "
       "it first; else EACCES)",
       G::kGlancefs, kRemount, Flag(&Options::require_signature, true)},
      {"metrics_listen", "[HOST:]PORT",
       "serve metrics.prom at http://HOST:PORT/metrics for\nPrometheus (HOST default 127.0.0.1)",
       G::kGlancefs, kRemount, Text(&Options::metrics_listen)},

      {"norbd", "", "never read from Ceph: rbd:// images through the SOURCE", G::kCeph, kRemount,
       Flag(&Options::rbd, false)},
      {"ceph_conf_dir", "DIR", "one <cluster>.conf per cluster (default /etc/ceph)", G::kCeph,
       kRemount, Text(&Options::ceph_conf_dir)},
      {"rbd_user", "NAME", "Ceph client id, client.NAME (default glance)", G::kCeph, kRemount,
       Text(&Options::rbd_user)},
      {"rbd_timeout", "SECONDS", "bound on every Ceph wait (default 30)", G::kCeph, kRemount,
       Number(&Options::rbd_timeout_s, 1, 3600)},
      {"rbd_retry", "SECONDS", "leave a failed cluster or location alone (default 30)", G::kCeph,
       kRemount, Number(&Options::rbd_retry_s, 0, 86400)},
      {"store", "NAME", "prefer this Glance store's locations", G::kCeph, kRemount,
       Text(&Options::store)},

      {"nocache", "", "no block cache: every read goes to the source", G::kCache, kRemount,
       Flag(&Options::cache, false)},
      {"cache_dir", "DIR", "the cache's RocksDB (default /var/cache/glancefs/<hash>)", G::kCache,
       kRemount, Text(&Options::cache_dir)},
      {"cache_size", "SIZE", "soft limit on cached bytes (default 10G, 0 = none)", G::kCache, kLive,
       Size(&Options::cache_size)},
      {"cache_min_free", "SIZE", "free disk space to keep (default 1G)", G::kCache, kLive,
       Size(&Options::cache_min_free)},
      {"cache_memory", "SIZE", "in-memory block budget (default 256M)", G::kCache, kRemount,
       Size(&Options::cache_memory)},
      {"cache_block", "SIZE",
       "block size of a new cache (default 64K; an existing\ncache keeps its own)", G::kCache,
       kRemount, Size(&Options::cache_block, 4096, 16 << 20, true)},
      {"fetch_size", "SIZE", "largest Range request (default 64M)", G::kCache, kRemount,
       Size(&Options::fetch_size, 64 << 10, 256 << 20)},
      {"fetch_threads", "N", "fetches in flight for read-ahead and pre-fetch (default 8)",
       G::kCache, kRemount, Number(&Options::fetch_threads, 1, 64)},
      {"readahead_max", "SIZE", "largest read-ahead window (default 64M, 0 = off)", G::kCache,
       kRemount, Size(&Options::readahead_max)},
      {"prefetch_workers", "N", "images pre-fetched at once (default 2)", G::kCache, kLive,
       Number(&Options::prefetch_workers, 1, 64)},
      {"prefetch_rate", "SIZE", "bytes/s per pre-fetch worker (default 0 = no cap)", G::kCache,
       kLive, Size(&Options::prefetch_rate)},
      {"prefetch_interval", "SECONDS", "start queued images every SECONDS (default 0 = at once)",
       G::kCache, kLive, Number(&Options::prefetch_interval_s, 0, 86400)},
  };
}

void PrintGroup(OptionGroup group) {
  for (const OptionSpec& spec : OptionTable()) {
    if (spec.group != group) continue;
    std::string head = "    -o " + spec.name + (spec.arg.empty() ? "" : "=" + spec.arg);
    std::string help = spec.help;
    if (head.size() < 27) {
      head.resize(27, ' ');
    } else {
      head += "\n" + std::string(27, ' ');
    }
    for (size_t nl = help.find('\n'); nl != std::string::npos; nl = help.find('\n', nl + 1)) {
      help.insert(nl + 1, std::string(27, ' '));
    }
    std::printf("%s%s\n", head.c_str(), help.c_str());
  }
}

}  // namespace

const std::vector<OptionSpec>& OptionTable() {
  static const std::vector<OptionSpec> table = MakeTable();
  return table;
}

const OptionSpec* FindOption(const std::string& name) {
  for (const OptionSpec& spec : OptionTable()) {
    if (spec.name == name) return &spec;
  }
  return nullptr;
}

Result<Options> ParseOptions(const std::vector<std::string>& argv) {
  std::vector<fuse::OwnOption> own;
  for (const OptionSpec& spec : OptionTable()) own.push_back({spec.name, !spec.arg.empty()});
  GLANCEFS_ASSIGN_OR_RETURN(fuse::SplitCommandLine split, fuse::SplitFuseCommandLine(argv, own));
  Options o;
  static_cast<fuse::SplitCommandLine&>(o) = std::move(split);
  if (o.debug) o.log_level = LogLevel::kDebug;
  for (const auto& [name, value] : o.given) {
    if (Status s = FindOption(name)->set(&o, value); !s.ok()) {
      return Status::InvalidArgument(name + ": " + s.message());
    }
  }
  if (o.show_help || o.show_version) return o;
  if (o.source.empty()) return Status::InvalidArgument("missing SOURCE (try --help)");
  if (o.mountpoint.empty()) return Status::InvalidArgument("missing MOUNTPOINT (try --help)");
  if (!o.trusted_certs.empty() && o.cert_dir.empty() && o.source != "keystone") {
    return Status::InvalidArgument(
        "trusted_certs needs a certificate source: cert_dir, or keystone's Barbican");
  }
  if (o.require_signature && !o.cache) {
    return Status::InvalidArgument("require_signature needs the cache, which checks signatures: "
                                   "drop nocache");
  }
  o.fuse_args.push_back("-o");
  o.fuse_args.push_back("default_permissions,subtype=glancefs,fsname=" +
                        fuse::EscapeFuseOption("glancefs:" + o.source));
  return o;
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
      "\nglancefs options:\n",
      program, program);
  PrintGroup(OptionGroup::kGlancefs);
  std::printf("\nCeph RBD options (docs/RBD.md):\n");
  PrintGroup(OptionGroup::kCeph);
  std::printf("\ncache options (sizes take K, M, G, T):\n");
  PrintGroup(OptionGroup::kCache);
  std::printf(
      "\n"
      "--config FILE: an INI file whose [glancefs] section sets source, mountpoint and\n"
      "any option above (key = value; flags: key = true); the command line wins.\n"
      "SIGHUP re-reads it and the credentials (token_file; cloud's clouds.yaml entry) and\n"
      "applies log_level, refresh, cache_size, cache_min_free and the prefetch_* options\n"
      "without unmounting.\n"
      "See glancefs(8) for the layout of the mount.\n"
      "\n");
  fuse::PrintFuseHelp();
}

void PrintVersion() {
  std::printf("glancefs version %s\n", GLANCEFS_VERSION);
  fuse::PrintFuseVersion();
}

}  // namespace glancefs::tools
