#include "backends/glance/barbican.h"


#include "fs/base/log.h"

namespace glancefs::backends {
namespace {

constexpr size_t kMaxCertificateBytes = 64 << 10;

}  // namespace

BarbicanCertificateStore::BarbicanCertificateStore(std::shared_ptr<HttpClient> http,
                                                   std::shared_ptr<TokenSource> token,
                                                   std::function<Result<std::string>()> endpoint)
    : http_(std::move(http)), token_(std::move(token)), endpoint_(std::move(endpoint)) {}

Result<std::string> BarbicanCertificateStore::Get(const std::string& uuid) {
  if (!IsCertificateUuid(uuid)) {
    return Status::InvalidArgument("certificate uuid '" + uuid + "' is not 1-64 of [A-Za-z0-9-]");
  }
  {
    MutexLock lock(&mu_);
    auto it = certificates_.find(uuid);
    if (it != certificates_.end()) return it->second;
  }
  GLANCEFS_ASSIGN_OR_RETURN(std::string certificate, Fetch(uuid));
  MutexLock lock(&mu_);
  certificates_.emplace(uuid, certificate);
  return certificate;
}

Result<std::string> BarbicanCertificateStore::Fetch(const std::string& uuid) {
  auto base = endpoint_();
  if (!base.ok()) {
    return Status::Unavailable("Barbican: " + base.status().message());
  }
  const std::string url = *base + "/v1/secrets/" + uuid + "/payload";
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto token = token_->Token();
    if (!token.ok()) return Status::Unavailable("Barbican: " + token.status().message());
    std::vector<std::string> headers = {"Accept: application/octet-stream"};
    if (!token->empty()) headers.push_back("X-Auth-Token: " + *token);
    auto r = http_->Get(url, headers, nullptr, kMaxCertificateBytes);
    if (!r.ok()) {
      return Status::Unavailable("Barbican: certificate " + uuid + ": " + r.status().message());
    }
    switch (r->status) {
      case 200:
        LOG_INFO("Barbican: certificate %s fetched (%zu bytes)", uuid.c_str(), r->body.size());
        return r->body;
      case 401:
        token_->Invalidate(*token);
        continue;
      case 403:
        return Status::PermissionDenied(
            "Barbican refuses certificate " + uuid +
            " to this credential (it needs the creator or observer role in the secret's project, "
            "or a read ACL)");
      case 404:
        return Status::NotFound("certificate " + uuid + " is not in Barbican");
      default:
        return Status::Unavailable("Barbican: certificate " + uuid + ": HTTP " +
                                   std::to_string(r->status));
    }
  }
  return Status::PermissionDenied("Barbican: the token was refused twice");
}

}  // namespace glancefs::backends
