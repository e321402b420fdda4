#include "backends/dir/cert_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include "fs/base/file_io.h"

namespace glancefs::backends {
namespace {

constexpr size_t kMaxCertificateBytes = 64 << 10;

}  // namespace

Result<std::string> DirCertificateStore::Get(const std::string& uuid) {
  if (!IsCertificateUuid(uuid)) {
    return Status::InvalidArgument("certificate uuid '" + uuid + "' is not 1-64 of [A-Za-z0-9-]");
  }
  int dirfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) return Status::Unavailable(Status::FromErrno(errno, "cert_dir " + dir_).message());
  auto pem = ReadSmallFileAt(dirfd, uuid + ".pem", kMaxCertificateBytes);
  ::close(dirfd);
  if (!pem.ok() && pem.status().IsNotFound()) {
    return Status::NotFound("certificate " + uuid + " is not in cert_dir " + dir_);
  }
  return pem;
}

}  // namespace glancefs::backends
