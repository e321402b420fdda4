// glancefs: mounts an image catalog. The composition root: it alone names concrete classes
// (the catalog for SOURCE, the FileSystem, the FUSE session) and wires them together.
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>

#include "backends/dir/dir_catalog.h"
#include "fs/base/log.h"
#include "fs/core/file_system.h"
#include "fs/fuse/cmdline.h"
#include "fs/fuse/session.h"

namespace {

using glancefs::Catalog;
using glancefs::Result;
using glancefs::Status;

Result<std::unique_ptr<Catalog>> OpenCatalog(const std::string& source) {
  if (source.rfind("dir:", 0) == 0) {
    auto catalog = glancefs::backends::DirCatalog::Open(source.substr(4));
    if (!catalog.ok()) return catalog.status();
    return std::unique_ptr<Catalog>(std::move(catalog).value());
  }
  return Status::InvalidArgument("unknown SOURCE '" + source +
                                 "': expected dir:PATH (see glancefs --help)");
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

  auto catalog = OpenCatalog(cl->source);
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
