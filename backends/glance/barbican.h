// BarbicanCertificateStore: the certificates that sign images, from Barbican (OpenStack's key
// manager), where Glance's castellan keeps them: GET <barbican>/v1/secrets/<uuid>/payload with
// Accept: application/octet-stream and the mount's Keystone token; the payload is the PEM bytes
// (or DER) as stored. Each certificate is fetched once and kept in memory for the life of the
// mount, never written anywhere, so a Barbican that goes down later leaves cached certificates
// usable. A uuid is 1-64 of [A-Za-z0-9-] (no record can steer the URL).
//
// Answers: 404 NotFound; 403 PermissionDenied (the credential needs Barbican's creator or
// observer role in the secret's project, or an ACL); a transport failure, 5xx or a stall
// Unavailable in the HttpClient's bounded time; 401 renews the token once. Thread-safe.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "backends/glance/glance_catalog.h"
#include "backends/glance/http_client.h"
#include "fs/base/certificates.h"
#include "fs/base/mutex.h"

namespace glancefs::backends {

class BarbicanCertificateStore final : public CertificateStore {
 public:
  // `endpoint` gives Barbican's base URL (no /v1), e.g. from Keystone's catalog (key-manager).
  BarbicanCertificateStore(std::shared_ptr<HttpClient> http, std::shared_ptr<TokenSource> token,
                           std::function<Result<std::string>()> endpoint);
  Result<std::string> Get(const std::string& uuid) override;
  std::string Describe() const override { return "Barbican"; }

 private:
  Result<std::string> Fetch(const std::string& uuid);

  const std::shared_ptr<HttpClient> http_;
  const std::shared_ptr<TokenSource> token_;
  const std::function<Result<std::string>()> endpoint_;
  Mutex mu_;
  std::map<std::string, std::string> certificates_ GUARDED_BY(mu_);  // by uuid
};

}  // namespace glancefs::backends
