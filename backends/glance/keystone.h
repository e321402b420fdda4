// KeystoneTokenSource: tokens from Keystone v3, and the image endpoint from its catalog.
//
// Credentials come the way `openstack` takes them from the environment (OS_AUTH_URL,
// OS_USERNAME / OS_USER_ID, OS_PASSWORD, OS_PROJECT_NAME / OS_PROJECT_ID, OS_*_DOMAIN_*,
// OS_AUTH_TYPE=v3applicationcredential with OS_APPLICATION_CREDENTIAL_ID/_NAME and _SECRET,
// OS_AUTH_TYPE=v3token with OS_TOKEN, OS_INTERFACE, OS_REGION_NAME), or from a clouds.yaml
// entry turned into those names (clouds_yaml.h).
//
// Token() hands out the current token and renews it (POST /v3/auth/tokens) when it is within
// kRenewBeforeSeconds of expires_at (a quarter of its lifetime, if that is shorter), or after
// Invalidate(token) (a 401). Renewal happens under a
// mutex: requests already in flight keep the token they have. Secrets never reach a log line.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "backends/glance/glance_catalog.h"
#include "backends/glance/http_client.h"
#include "fs/base/mutex.h"

namespace glancefs::backends {

struct KeystoneCredentials {
  enum class Method { kPassword, kApplicationCredential, kToken };
  Method method = Method::kPassword;
  std::string auth_url;  // .../v3
  std::string username, user_id, password, user_domain_name, user_domain_id;
  std::string project_name, project_id, project_domain_name, project_domain_id;
  std::string app_cred_id, app_cred_name, app_cred_secret;
  std::string token;
  std::string interface = "public";
  std::string region;
};

// Credentials from `get` (OS_* name → value, empty if unset): the environment, or a
// clouds.yaml entry's settings. A clear InvalidArgument names what is missing.
Result<KeystoneCredentials> KeystoneCredentialsFrom(
    const std::function<std::string(const char*)>& get);

class KeystoneTokenSource final : public TokenSource {
 public:
  static constexpr int64_t kRenewBeforeSeconds = 300;

  KeystoneTokenSource(std::shared_ptr<HttpClient> http, KeystoneCredentials credentials);

  // Gets the first token and the catalog. Call once before use.
  Status Authenticate();
  // The endpoint of the service of `type` ("image", "key-manager") for the configured interface
  // and region, from the last token's catalog, without a trailing '/'.
  Result<std::string> Endpoint(const std::string& type);
  Result<std::string> ImageEndpoint() { return Endpoint("image"); }

  Result<std::string> Token() override;
  void Invalidate(const std::string& token) override;

  // New secrets for the same identity (a reload: a rotated password or application
  // credential), used from the next authentication on; the token in hand stays until then.
  // InvalidArgument if auth_url, interface or region differ: those need a remount.
  Status UpdateCredentials(KeystoneCredentials credentials);

 private:
  Status AuthenticateLocked() REQUIRES(mu_);

  const std::shared_ptr<HttpClient> http_;
  Mutex mu_;  // held while authenticating (single flight); guards the five below
  KeystoneCredentials creds_ GUARDED_BY(mu_);
  std::string token_ GUARDED_BY(mu_);       // empty: none, or invalidated
  int64_t expires_at_ GUARDED_BY(mu_) = 0;  // seconds since the epoch
  int64_t renew_at_ GUARDED_BY(mu_) = 0;    // seconds since the epoch
  // By service type, from the last catalog.
  std::map<std::string, std::string> endpoints_ GUARDED_BY(mu_);
};

}  // namespace glancefs::backends
