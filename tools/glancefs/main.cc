// glancefs: mounts an image catalog. The composition root: it alone names concrete classes
// (the catalog for SOURCE, the FileSystem, the FUSE session) and wires them together.
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backends/dir/dir_catalog.h"
#include "backends/glance/barbican.h"
#include "backends/glance/clouds_yaml.h"
#include "backends/glance/glance_catalog.h"
#include "backends/glance/keystone.h"
#include "backends/rbd/rbd_catalog.h"
#include "cache/cache_service.h"
#include "fs/base/log.h"
#include "fs/base/mutex.h"
#include "fs/core/file_system.h"
#include "fs/fuse/session.h"
#include "tools/glancefs/config_file.h"
#include "tools/glancefs/first_refresh.h"
#include "tools/glancefs/metrics_server.h"
#include "tools/glancefs/options.h"
#include "tools/glancefs/reloader.h"

namespace {

using glancefs::Catalog;
using glancefs::Result;
using glancefs::Status;

// A source whose catalog cannot be built until a service answers (Keystone, at boot): built at
// the first refresh that can build it. Until then refreshes fail (the cache serves its stored
// catalog) and image data reads fail with Unavailable (the cache serves what it holds).
class DeferredCatalog final : public Catalog {
 public:
  using Factory = std::function<Result<std::unique_ptr<Catalog>>()>;
  DeferredCatalog(std::string description, Factory factory)
      : description_(std::move(description)), factory_(std::move(factory)) {}

  std::string Describe() const override { return description_; }

  Result<std::shared_ptr<const glancefs::CatalogSnapshot>> Refresh() override {
    Catalog* inner = Inner();
    if (!inner) {
      auto built = factory_();
      if (!built.ok()) return built.status();
      LOG_INFO("%s answers: the catalog is live", description_.c_str());
      glancefs::MutexLock lock(&mu_);
      inner_ = std::move(built).value();
      inner = inner_.get();
    }
    return inner->Refresh();
  }

  Result<std::shared_ptr<glancefs::ByteSource>> OpenData(
      const glancefs::ImageRecord& record) override {
    if (Catalog* inner = Inner()) return inner->OpenData(record);
    return std::shared_ptr<glancefs::ByteSource>(
        std::make_shared<UnreachableSource>(record.size.value_or(0), description_));
  }

 private:
  // Reads fail: the source of the image's bytes has not been reached yet.
  class UnreachableSource final : public glancefs::ByteSource {
   public:
    UnreachableSource(uint64_t size, std::string what) : size_(size), what_(std::move(what)) {}
    uint64_t size() const override { return size_; }
    Status ReadAt(uint64_t, size_t, char*) override {
      return Status::Unavailable(what_ + " has not answered yet");
    }

   private:
    const uint64_t size_;
    const std::string what_;
  };

  Catalog* Inner() {
    glancefs::MutexLock lock(&mu_);
    return inner_.get();
  }

  const std::string description_;
  const Factory factory_;  // called by the refresher thread only
  glancefs::Mutex mu_;
  std::unique_ptr<Catalog> inner_ GUARDED_BY(mu_);  // set once, never reset
};

// Keystone credentials from clouds.yaml (-o cloud=, else $OS_CLOUD), else from OS_* variables;
// -o interface= and -o region= win.
struct KeystoneSettings {
  glancefs::backends::KeystoneCredentials creds;
  std::function<std::string(const char*)> setting;  // OS_* name → value
  std::string from;                                  // where they came from, for the log
};

Result<KeystoneSettings> ReadKeystoneSettings(const glancefs::tools::Options& cl) {
  std::string cloud = cl.cloud;
  if (cloud.empty() && std::getenv("OS_CLOUD")) cloud = std::getenv("OS_CLOUD");
  KeystoneSettings out;
  if (!cloud.empty()) {
    auto read = glancefs::backends::ReadCloud(cloud, glancefs::backends::DefaultCloudsYamlPaths());
    if (!read.ok()) return read.status().WithContext("cloud " + cloud);
    out.setting = [settings = std::move(read).value()](const char* name) {
      auto it = settings.find(name);
      return it == settings.end() ? std::string() : it->second;
    };
    out.from = "clouds.yaml entry " + cloud;
  } else {
    out.setting = [](const char* name) {
      const char* v = std::getenv(name);
      return std::string(v ? v : "");
    };
    out.from = "OS_* variables";
  }
  auto creds = glancefs::backends::KeystoneCredentialsFrom(out.setting);
  if (!creds.ok()) {
    return cloud.empty() ? creds.status() : creds.status().WithContext("cloud " + cloud);
  }
  out.creds = std::move(creds).value();
  if (!cl.interface.empty()) out.creds.interface = cl.interface;
  if (!cl.region.empty()) out.creds.region = cl.region;
  return out;
}

// What a source brings besides its catalog.
struct SourceParts {
  // Re-reads the source's credentials on a reload (the token file of an http(s) SOURCE, the
  // clouds.yaml entry or OS_* variables of keystone); null for dir:.
  glancefs::tools::CredentialsReader reread;
  // Signing certificates from the cloud's key manager (keystone: Barbican), or null.
  std::shared_ptr<glancefs::CertificateStore> certificates;
};

Result<std::unique_ptr<Catalog>> OpenSourceCatalog(const glancefs::tools::Options& cl,
                                                   SourceParts* parts) {
  const std::string& source = cl.source;
  if (source.rfind("dir:", 0) == 0) {
    auto catalog = glancefs::backends::DirCatalog::Open(source.substr(4));
    if (!catalog.ok()) return catalog.status();
    return std::unique_ptr<Catalog>(std::move(catalog).value());
  }
  if (source.rfind("http://", 0) == 0 || source.rfind("https://", 0) == 0) {
    auto read = glancefs::tools::ReadToken(cl.token_file);
    if (!read.ok()) return read.status();
    auto token = std::make_shared<glancefs::backends::StaticToken>(*read);
    parts->reread = [token](const glancefs::tools::Options& o) -> Result<std::string> {
      GLANCEFS_ASSIGN_OR_RETURN(std::string next, glancefs::tools::ReadToken(o.token_file));
      token->Set(std::move(next));
      return "token re-read from " + (o.token_file.empty() ? "$OS_AUTH_TOKEN" : o.token_file);
    };
    glancefs::backends::HttpOptions http;
    http.ca_file = cl.cacert;
    http.insecure = cl.insecure;
    glancefs::backends::GlanceOptions glance;
    glance.endpoint = source;
    while (!glance.endpoint.empty() && glance.endpoint.back() == '/') glance.endpoint.pop_back();
    glance.spool_dir = cl.spool_dir;
    glance.page_limit = cl.page_limit;
    glance.relist = cl.relist;
    return std::unique_ptr<Catalog>(std::make_unique<glancefs::backends::GlanceCatalog>(
        glancefs::backends::NewCurlHttpClient(http),
        token, glance));
  }
  if (source == "keystone") {
    GLANCEFS_ASSIGN_OR_RETURN(KeystoneSettings ks, ReadKeystoneSettings(cl));
    glancefs::backends::HttpOptions http;
    http.ca_file = cl.cacert.empty() ? ks.setting("OS_CACERT") : cl.cacert;
    http.insecure = cl.insecure || !ks.setting("OS_INSECURE").empty();
    std::shared_ptr<glancefs::backends::HttpClient> client =
        glancefs::backends::NewCurlHttpClient(http);
    auto keystone = std::make_shared<glancefs::backends::KeystoneTokenSource>(client, ks.creds);
    parts->reread = [keystone](const glancefs::tools::Options& o) -> Result<std::string> {
      GLANCEFS_ASSIGN_OR_RETURN(KeystoneSettings next, ReadKeystoneSettings(o));
      GLANCEFS_RETURN_IF_ERROR(keystone->UpdateCredentials(next.creds));
      return "keystone credentials re-read from " + next.from;
    };
    // Barbican, found in the token's catalog (key-manager) once Keystone answers.
    parts->certificates = std::make_shared<glancefs::backends::BarbicanCertificateStore>(
        client, keystone, [keystone]() -> Result<std::string> {
          GLANCEFS_RETURN_IF_ERROR(keystone->Token().status());
          return keystone->Endpoint("key-manager");
        });
    glancefs::backends::GlanceOptions glance;
    glance.spool_dir = cl.spool_dir;
    glance.page_limit = cl.page_limit;
    glance.relist = cl.relist;
    auto build = [client, keystone, glance]() mutable -> Result<std::unique_ptr<Catalog>> {
      if (Status s = keystone->Authenticate(); !s.ok()) return s;
      auto endpoint = keystone->ImageEndpoint();
      if (!endpoint.ok()) return endpoint.status();
      glance.endpoint = *endpoint;
      return std::unique_ptr<Catalog>(
          std::make_unique<glancefs::backends::GlanceCatalog>(client, keystone, glance));
    };
    auto built = build();
    // Keystone out of reach (not wrong credentials): with a cache, mount from the stored
    // catalog and ask Keystone again at every refresh.
    if (built.ok() || built.status().code() != Status::Code::kUnavailable || !cl.cache) {
      return built;
    }
    LOG_WARNING("%s: asking again at every refresh", built.status().message().c_str());
    return std::unique_ptr<Catalog>(
        std::make_unique<DeferredCatalog>("keystone:" + ks.creds.auth_url, std::move(build)));
  }
  return Status::InvalidArgument("unknown SOURCE '" + source +
                                 "': expected dir:PATH, http(s)://HOST:PORT or keystone");
}

// The SOURCE's catalog, reading rbd:// locations straight from Ceph unless -o norbd.
Result<std::unique_ptr<Catalog>> OpenCatalog(const glancefs::tools::Options& cl,
                                             SourceParts* parts) {
  auto catalog = OpenSourceCatalog(cl, parts);
  if (!catalog.ok() || !cl.rbd) return catalog;
  glancefs::backends::rbd::RbdCatalogOptions rbd;
  rbd.ceph.conf_dir = cl.ceph_conf_dir;
  rbd.ceph.user = cl.rbd_user;
  rbd.ceph.timeout_s = cl.rbd_timeout_s;
  rbd.ceph.retry_s = cl.rbd_retry_s;
  rbd.store = cl.store;
  return std::unique_ptr<Catalog>(std::make_unique<glancefs::backends::rbd::RbdCatalog>(
      std::move(catalog).value(), std::move(rbd)));
}

int Fail(const Status& status) {
  std::fprintf(stderr, "glancefs: %s\n", status.message().c_str());
  return 1;
}

// Background mode forks before anything starts a thread (RocksDB's, the fetchers'), so every
// thread lives in the daemon. The parent waits for the mount, or for the daemon's error on the
// shared stderr, and exits with the daemon's status. Returns the fd to report readiness on
// (-1 in the foreground); in the parent it never returns.
int ForkDaemon() {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return -1;
  pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid > 0) {
    ::close(pipe_fds[1]);
    char status = 1;
    ssize_t n;
    do {
      n = ::read(pipe_fds[0], &status, 1);
    } while (n < 0 && errno == EINTR);
    ::_exit(n == 1 ? status : 1);  // no byte: the daemon failed (and said why on stderr)
  }
  ::close(pipe_fds[0]);
  ::setsid();
  return pipe_fds[1];
}

// The daemon is mounted: detach from the terminal and release the waiting parent.
void ReportReady(int ready_fd) {
  if (ready_fd < 0) return;
  if (::chdir("/") != 0) LOG_WARNING("cannot chdir to /");
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0) {
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    ::close(null);
  }
  char ok = 0;
  if (::write(ready_fd, &ok, 1) != 1) LOG_WARNING("cannot report readiness");
  ::close(ready_fd);
}

}  // namespace

int main(int argc, char** argv) {
  // Large buffers (256 KiB cache blocks, fetch and qcow2 buffers) come from mmap and go back to
  // the kernel when freed. With glibc's sliding threshold they land in per-thread arenas, which
  // keep what 20 threads once held: 370-400 MiB peak RSS against 260-275 MiB (mount_test
  // MemoryStaysWithinTheBudgetUnderEightReaders). 64 KiB blocks are pooled (cache/block.h).
  ::mallopt(M_MMAP_THRESHOLD, 128 << 10);
  const std::vector<std::string> argv_given(argv, argv + argc);
  // --config FILE becomes SOURCE, MOUNTPOINT and -o options ahead of the command line's own.
  auto args = glancefs::tools::ExpandConfig(argv_given);
  if (!args.ok()) return Fail(args.status());
  auto cl = glancefs::tools::ParseOptions(*args);
  if (!cl.ok()) return Fail(cl.status());
  if (cl->show_help) {
    glancefs::tools::PrintHelp(argv[0]);
    return 0;
  }
  if (cl->show_version) {
    glancefs::tools::PrintVersion();
    return 0;
  }
  glancefs::SetLogLevel(cl->log_level);
  int ready_fd = cl->foreground ? -1 : ForkDaemon();

  SourceParts parts;
  auto catalog = OpenCatalog(*cl, &parts);
  if (!catalog.ok()) return Fail(catalog.status());
  // The catalog is listed while the cache opens.
  *catalog = std::make_unique<glancefs::tools::FirstRefreshAhead>(std::move(*catalog));

  // The block cache sits between the backend and the file system (docs/ARCHITECTURE.md).
  std::unique_ptr<glancefs::cache::CacheService> cache;
  std::unique_ptr<Catalog> cached_catalog;
  if (cl->cache) {
    glancefs::cache::ServiceOptions cache_options = glancefs::tools::CacheOptionsOf(*cl);
    if (!cache_options.cache.certificates) cache_options.cache.certificates = parts.certificates;
    auto service = glancefs::cache::CacheService::Open(catalog->get(), cache_options);
    if (!service.ok()) return Fail(service.status());
    cache = std::move(service).value();
    cached_catalog = cache->WrapCatalog();
  }
  Catalog* fs_catalog = cached_catalog ? cached_catalog.get() : catalog->get();

  glancefs::core::FsOptions fs_options;
  fs_options.uid = ::getuid();
  fs_options.gid = ::getgid();
  fs_options.cache = cache.get();
  fs_options.require_signature = cl->require_signature;
  glancefs::core::FileSystem fs(fs_catalog, fs_options);
  std::vector<glancefs::core::Invalidation> unused;
  if (Status s = fs.Refresh(&unused); !s.ok()) {
    return Fail(Status::InvalidArgument("cannot read catalog " + fs_catalog->Describe() + ": " +
                                        s.message()));
  }

  std::unique_ptr<glancefs::tools::MetricsServer> metrics;
  if (!cl->metrics_listen.empty()) {
    auto started = glancefs::tools::MetricsServer::Start(cl->metrics_listen,
                                                         [&fs] { return fs.MetricsText(); });
    if (!started.ok()) return Fail(started.status());
    metrics = std::move(started).value();
  }

  std::unique_ptr<glancefs::tools::Reloader> reloader;
  glancefs::fuse::SessionOptions session_options;
  session_options.mountpoint = cl->mountpoint;
  session_options.fuse_args = cl->fuse_args;
  session_options.max_threads = cl->max_threads;
  session_options.clone_fd = cl->clone_fd;
  session_options.single_thread = cl->single_thread;
  session_options.cache_timeout_s = cl->cache_timeout_s;
  session_options.refresh_interval_s = cl->refresh_s;
  session_options.read_ahead_kb = cl->read_ahead_kb;
  session_options.direct_io = cl->direct_io;
  // Ready once the mount answers: the waiting parent (background mode) and systemd (Type=notify).
  session_options.on_ready = [&] {
    LOG_INFO("mounted %s on %s", fs_catalog->Describe().c_str(), cl->mountpoint.c_str());
    ReportReady(ready_fd);
    glancefs::tools::NotifyServiceManager("READY=1", fs);
  };
  session_options.on_refreshed = [&] { glancefs::tools::NotifyServiceManager("", fs); };
  session_options.on_reload = [&] { reloader->Reload(); };
  auto session = glancefs::fuse::Session::Create(&fs, session_options);
  if (!session.ok()) return Fail(session.status());
  reloader = std::make_unique<glancefs::tools::Reloader>(
      argv_given, *cl, glancefs::tools::ReloadTargets{session->get(), cache.get(), &fs, parts.reread});

  if (!cl->foreground) glancefs::SetLogSink(glancefs::LogSink::kSyslog);
  Status run = (*session)->Run();
  ::sd_notify(0, "STOPPING=1");
  session->reset();  // unmounts
  metrics.reset();
  if (!run.ok()) {
    LOG_ERROR("%s", run.ToString().c_str());
    return 1;
  }
  LOG_INFO("unmounted %s", cl->mountpoint.c_str());
  return 0;
}
