// CertificateStore: where the certificates that sign images come from, by the uuid an image's
// img_signature_certificate_uuid names (Barbican's secret id). The cache asks for one when it
// checks an image's signature (cache/signature.h); backends provide them: a directory of PEM
// files (backends/dir/cert_dir.h) or, later, Barbican. Thread-safe.
#pragma once

#include <cctype>
#include <string>

#include "fs/base/status.h"

namespace glancefs {

// What a store accepts as a certificate uuid: 1-64 of [A-Za-z0-9-], so that no image record can
// steer a path or a URL.
inline bool IsCertificateUuid(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
  }
  return true;
}

class CertificateStore {
 public:
  virtual ~CertificateStore() = default;
  // The certificate's bytes, PEM or DER. NotFound: no certificate by that uuid; Unavailable:
  // the store does not answer now; InvalidArgument: not a uuid this store could hold.
  virtual Result<std::string> Get(const std::string& uuid) = 0;
  virtual std::string Describe() const = 0;
};

}  // namespace glancefs
