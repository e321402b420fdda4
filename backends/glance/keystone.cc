#include "backends/glance/keystone.h"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "fs/base/log.h"
#include "fs/base/time_util.h"

namespace glancefs::backends {
namespace {

using nlohmann::json;

json Domain(const std::string& name, const std::string& id) {
  if (!id.empty()) return {{"id", id}};
  return {{"name", name.empty() ? "Default" : name}};
}

json Scope(const KeystoneCredentials& c) {
  if (!c.project_id.empty()) return {{"project", {{"id", c.project_id}}}};
  return {
      {"project",
       {{"name", c.project_name}, {"domain", Domain(c.project_domain_name, c.project_domain_id)}}}};
}

json AuthBody(const KeystoneCredentials& c) {
  json identity;
  json auth;
  switch (c.method) {
    case KeystoneCredentials::Method::kPassword: {
      json user = {{"password", c.password}};
      if (!c.user_id.empty()) {
        user["id"] = c.user_id;
      } else {
        user["name"] = c.username;
        user["domain"] = Domain(c.user_domain_name, c.user_domain_id);
      }
      identity = {{"methods", {"password"}}, {"password", {{"user", user}}}};
      auth = {{"identity", identity}, {"scope", Scope(c)}};
      break;
    }
    case KeystoneCredentials::Method::kApplicationCredential: {
      json cred = {{"secret", c.app_cred_secret}};
      if (!c.app_cred_id.empty()) {
        cred["id"] = c.app_cred_id;
      } else {
        cred["name"] = c.app_cred_name;
        cred["user"] = c.user_id.empty()
                           ? json{{"name", c.username},
                                  {"domain", Domain(c.user_domain_name, c.user_domain_id)}}
                           : json{{"id", c.user_id}};
      }
      identity = {{"methods", {"application_credential"}}, {"application_credential", cred}};
      auth = {{"identity", identity}};  // an application credential carries its own scope
      break;
    }
    case KeystoneCredentials::Method::kToken:
      identity = {{"methods", {"token"}}, {"token", {{"id", c.token}}}};
      auth = {{"identity", identity}, {"scope", Scope(c)}};
      break;
  }
  return {{"auth", auth}};
}

}  // namespace

Result<KeystoneCredentials> KeystoneCredentialsFrom(
    const std::function<std::string(const char*)>& get) {
  KeystoneCredentials c;
  c.auth_url = get("OS_AUTH_URL");
  while (!c.auth_url.empty() && c.auth_url.back() == '/') c.auth_url.pop_back();
  if (c.auth_url.empty()) return Status::InvalidArgument("keystone: OS_AUTH_URL is not set");
  if (c.auth_url.size() < 3 || c.auth_url.substr(c.auth_url.size() - 3) != "/v3") {
    c.auth_url += "/v3";
  }
  std::string type = get("OS_AUTH_TYPE");
  c.username = get("OS_USERNAME");
  c.user_id = get("OS_USER_ID");
  c.password = get("OS_PASSWORD");
  c.user_domain_name = get("OS_USER_DOMAIN_NAME");
  c.user_domain_id = get("OS_USER_DOMAIN_ID");
  c.project_name = get("OS_PROJECT_NAME");
  c.project_id = get("OS_PROJECT_ID");
  c.project_domain_name = get("OS_PROJECT_DOMAIN_NAME");
  c.project_domain_id = get("OS_PROJECT_DOMAIN_ID");
  c.app_cred_id = get("OS_APPLICATION_CREDENTIAL_ID");
  c.app_cred_name = get("OS_APPLICATION_CREDENTIAL_NAME");
  c.app_cred_secret = get("OS_APPLICATION_CREDENTIAL_SECRET");
  c.token = get("OS_TOKEN");
  if (!get("OS_INTERFACE").empty()) c.interface = get("OS_INTERFACE");
  if (c.interface.size() > 4 && c.interface.substr(c.interface.size() - 4) == "URL") {
    c.interface.resize(c.interface.size() - 3);  // "publicURL" → "public"
  }
  c.region = get("OS_REGION_NAME");
  if (type == "v3applicationcredential" || (!c.app_cred_secret.empty() && type.empty())) {
    c.method = KeystoneCredentials::Method::kApplicationCredential;
    if (c.app_cred_secret.empty() || (c.app_cred_id.empty() && c.app_cred_name.empty())) {
      return Status::InvalidArgument(
          "keystone: an application credential needs OS_APPLICATION_CREDENTIAL_ID (or _NAME) "
          "and OS_APPLICATION_CREDENTIAL_SECRET");
    }
  } else if (type == "v3token" || type == "token") {
    c.method = KeystoneCredentials::Method::kToken;
    if (c.token.empty()) return Status::InvalidArgument("keystone: OS_TOKEN is not set");
  } else if (type.empty() || type == "password" || type == "v3password") {
    if (c.password.empty()) return Status::InvalidArgument("keystone: OS_PASSWORD is not set");
    if (c.username.empty() && c.user_id.empty()) {
      return Status::InvalidArgument("keystone: OS_USERNAME or OS_USER_ID is not set");
    }
  } else {
    return Status::InvalidArgument("keystone: OS_AUTH_TYPE '" + type + "' is not supported");
  }
  if (c.method != KeystoneCredentials::Method::kApplicationCredential && c.project_id.empty() &&
      c.project_name.empty()) {
    return Status::InvalidArgument("keystone: OS_PROJECT_NAME or OS_PROJECT_ID is not set");
  }
  return c;
}

KeystoneTokenSource::KeystoneTokenSource(std::shared_ptr<HttpClient> http,
                                         KeystoneCredentials credentials)
    : http_(std::move(http)), creds_(std::move(credentials)) {}

Status KeystoneTokenSource::Authenticate() {
  MutexLock lock(&mu_);
  return AuthenticateLocked();
}

Status KeystoneTokenSource::AuthenticateLocked() {
  auto r = http_->Post(creds_.auth_url + "/auth/tokens",
                       {"Content-Type: application/json", "Accept: application/json"},
                       AuthBody(creds_).dump(), 16 << 20);
  if (!r.ok()) return r.status().WithContext("keystone");
  if (r->status == 401 || r->status == 403) {
    return Status::PermissionDenied("keystone: authentication refused (HTTP " +
                                    std::to_string(r->status) + ")");
  }
  if (r->status != 201 || r->subject_token.empty()) {
    return Status::Unavailable("keystone: POST /v3/auth/tokens answered HTTP " +
                               std::to_string(r->status));
  }
  try {
    json body = json::parse(r->body);
    const json& token = body.at("token");
    auto expires = ParseIso8601(token.at("expires_at").get<std::string>());
    if (!expires.ok()) return expires.status().WithContext("keystone: expires_at");
    std::map<std::string, std::string> endpoints;  // by service type
    for (const json& service : token.value("catalog", json::array())) {
      const std::string type = service.value("type", "");
      if (type != "image" && type != "key-manager") continue;
      for (const json& e : service.value("endpoints", json::array())) {
        if (e.value("interface", "") != creds_.interface) continue;
        if (!creds_.region.empty() && e.value("region", "") != creds_.region &&
            e.value("region_id", "") != creds_.region) {
          continue;
        }
        endpoints[type] = e.value("url", "");
        break;
      }
    }
    token_ = r->subject_token;
    expires_at_ = *expires;
    // Renewed kRenewBeforeSeconds before it expires, or after three quarters of its life if
    // that is shorter (a cloud with short-lived tokens must not pay a new token per request).
    int64_t life = std::max<int64_t>(0, expires_at_ - ::time(nullptr));
    renew_at_ = expires_at_ - std::min<int64_t>(kRenewBeforeSeconds, std::max<int64_t>(1, life / 4));
    endpoints_ = std::move(endpoints);
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("keystone: unexpected token response: ") + e.what());
  }
  LOG_INFO("keystone: new token, valid until %s", FormatIso8601(expires_at_).c_str());
  return Status::Ok();
}

Status KeystoneTokenSource::UpdateCredentials(KeystoneCredentials credentials) {
  MutexLock lock(&mu_);
  if (credentials.auth_url != creds_.auth_url || credentials.interface != creds_.interface ||
      credentials.region != creds_.region) {
    return Status::InvalidArgument(
        "keystone: a new auth_url, interface or region needs a remount");
  }
  creds_ = std::move(credentials);
  return Status::Ok();
}

Result<std::string> KeystoneTokenSource::Endpoint(const std::string& type) {
  MutexLock lock(&mu_);
  auto it = endpoints_.find(type);
  if (it == endpoints_.end() || it->second.empty()) {
    return Status::NotFound("keystone: no " + type + " endpoint for interface '" +
                            creds_.interface + "'" +
                            (creds_.region.empty() ? "" : " in region " + creds_.region));
  }
  std::string e = it->second;
  while (!e.empty() && e.back() == '/') e.pop_back();
  return e;
}

Result<std::string> KeystoneTokenSource::Token() {
  MutexLock lock(&mu_);
  if (token_.empty() || ::time(nullptr) >= renew_at_) {
    GLANCEFS_RETURN_IF_ERROR(AuthenticateLocked());
  }
  return token_;
}

void KeystoneTokenSource::Invalidate(const std::string& token) {
  MutexLock lock(&mu_);
  if (token == token_) token_.clear();
}

}  // namespace glancefs::backends
