// DirCertificateStore: signing certificates as PEM files named by their uuid
// (DIR/<uuid>.pem), for clouds without Barbican (-o cert_dir=DIR). A uuid is 1-64 of
// [A-Za-z0-9-], so no image record can name a path outside DIR; files over 64 KiB and
// non-regular files are refused; nothing is written. Thread-safe.
#pragma once

#include <string>

#include "fs/base/certificates.h"

namespace glancefs::backends {

class DirCertificateStore final : public CertificateStore {
 public:
  explicit DirCertificateStore(std::string dir) : dir_(std::move(dir)) {}
  Result<std::string> Get(const std::string& uuid) override;
  std::string Describe() const override { return "cert_dir " + dir_; }

 private:
  const std::string dir_;
};

}  // namespace glancefs::backends
