// glancefs: mounts an image catalog. The composition root: it alone names concrete classes
// (the catalog for SOURCE, the FileSystem, the FUSE session) and wires them together.
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include "backends/dir/dir_catalog.h"
#include "backends/glance/glance_catalog.h"
#include "backends/glance/keystone.h"
#include "fs/base/log.h"
#include "fs/core/file_system.h"
#include "fs/fuse/cmdline.h"
#include "fs/fuse/session.h"

namespace {

using glancefs::Catalog;
using glancefs::Result;
using glancefs::Status;

// The Glance token: the first line of -o token_file= (which must not be world-readable), else
// $OS_AUTH_TOKEN, else none.
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

Result<std::unique_ptr<Catalog>> OpenCatalog(const glancefs::fuse::CommandLine& cl) {
  const std::string& source = cl.source;
  if (source.rfind("dir:", 0) == 0) {
    auto catalog = glancefs::backends::DirCatalog::Open(source.substr(4));
    if (!catalog.ok()) return catalog.status();
    return std::unique_ptr<Catalog>(std::move(catalog).value());
  }
  if (source.rfind("http://", 0) == 0 || source.rfind("https://", 0) == 0) {
    auto token = ReadToken(cl.token_file);
    if (!token.ok()) return token.status();
    glancefs::backends::HttpOptions http;
    http.ca_file = cl.cacert;
    http.insecure = cl.insecure;
    glancefs::backends::GlanceOptions glance;
    glance.endpoint = source;
    while (!glance.endpoint.empty() && glance.endpoint.back() == '/') glance.endpoint.pop_back();
    glance.spool_dir = cl.spool_dir;
    glance.page_limit = cl.page_limit;
    return std::unique_ptr<Catalog>(std::make_unique<glancefs::backends::GlanceCatalog>(
        glancefs::backends::NewCurlHttpClient(http),
        std::make_shared<glancefs::backends::StaticToken>(*token), glance));
  }
  if (source == "keystone") {
    if (!cl.cloud.empty() || std::getenv("OS_CLOUD")) {
      return Status::NotSupported("clouds.yaml (OS_CLOUD, -o cloud=) is not read yet: set OS_*");
    }
    auto creds = glancefs::backends::KeystoneCredentialsFromEnv();
    if (!creds.ok()) return creds.status();
    if (!cl.interface.empty()) creds->interface = cl.interface;
    if (!cl.region.empty()) creds->region = cl.region;
    glancefs::backends::HttpOptions http;
    http.ca_file = cl.cacert;
    http.insecure = cl.insecure;
    std::shared_ptr<glancefs::backends::HttpClient> client =
        glancefs::backends::NewCurlHttpClient(http);
    auto keystone = std::make_shared<glancefs::backends::KeystoneTokenSource>(client, *creds);
    if (Status s = keystone->Authenticate(); !s.ok()) return s;
    auto endpoint = keystone->ImageEndpoint();
    if (!endpoint.ok()) return endpoint.status();
    glancefs::backends::GlanceOptions glance;
    glance.endpoint = *endpoint;
    glance.spool_dir = cl.spool_dir;
    glance.page_limit = cl.page_limit;
    return std::unique_ptr<Catalog>(
        std::make_unique<glancefs::backends::GlanceCatalog>(client, keystone, glance));
  }
  return Status::InvalidArgument("unknown SOURCE '" + source +
                                 "': expected dir:PATH, http(s)://HOST:PORT or keystone");
}

int Fail(const Status& status) {
  std::fprintf(stderr, "glancefs: %s\n", status.message().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  auto cl = glancefs::fuse::ParseCommandLine(argc, argv);
  if (!cl.ok()) return Fail(cl.status());
  if (cl->show_help) {
    glancefs::fuse::PrintHelp(argv[0]);
    return 0;
  }
  if (cl->show_version) {
    glancefs::fuse::PrintVersion();
    return 0;
  }
  glancefs::SetLogLevel(cl->log_level);

  auto catalog = OpenCatalog(*cl);
  if (!catalog.ok()) return Fail(catalog.status());

  glancefs::core::FsOptions fs_options;
  fs_options.uid = ::getuid();
  fs_options.gid = ::getgid();
  glancefs::core::FileSystem fs(catalog->get(), fs_options);
  std::vector<glancefs::core::Invalidation> unused;
  if (Status s = fs.Refresh(&unused); !s.ok()) {
    return Fail(Status::InvalidArgument("cannot read catalog " + (*catalog)->Describe() + ": " +
                                        s.message()));
  }

  glancefs::fuse::SessionOptions session_options;
  session_options.mountpoint = cl->mountpoint;
  session_options.fuse_args = cl->fuse_args;
  session_options.max_threads = cl->max_threads;
  session_options.clone_fd = cl->clone_fd;
  session_options.single_thread = cl->single_thread;
  session_options.cache_timeout_s = cl->cache_timeout_s;
  session_options.refresh_interval_s = cl->refresh_s;
  session_options.read_ahead_kb = cl->read_ahead_kb;
  auto session = glancefs::fuse::Session::Create(&fs, session_options);
  if (!session.ok()) return Fail(session.status());

  if (Status s = (*session)->Daemonize(cl->foreground); !s.ok()) return Fail(s);
  if (!cl->foreground) glancefs::SetLogSink(glancefs::LogSink::kSyslog);
  LOG_INFO("mounted %s on %s", (*catalog)->Describe().c_str(), cl->mountpoint.c_str());
  ::sd_notify(0, "READY=1");

  Status run = (*session)->Run();
  ::sd_notify(0, "STOPPING=1");
  session->reset();  // unmounts
  if (!run.ok()) {
    LOG_ERROR("%s", run.ToString().c_str());
    return 1;
  }
  LOG_INFO("unmounted %s", cl->mountpoint.c_str());
  return 0;
}
