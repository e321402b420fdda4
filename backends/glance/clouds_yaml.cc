#include "backends/glance/clouds_yaml.h"

#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <optional>

namespace glancefs::backends {
namespace {

std::string Env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

bool IsFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string Joined(const std::vector<std::string>& paths) {
  std::string out;
  for (const std::string& p : paths) out += (out.empty() ? "" : ", ") + p;
  return out;
}

// The first of `paths` that exists, parsed; nullopt if none does.
Result<std::optional<std::pair<std::string, YAML::Node>>> LoadFirst(
    const std::vector<std::string>& paths) {
  for (const std::string& path : paths) {
    if (!IsFile(path)) continue;
    try {
      return std::optional<std::pair<std::string, YAML::Node>>({path, YAML::LoadFile(path)});
    } catch (const YAML::Exception& e) {
      return Status::InvalidArgument(path + ": not valid YAML: " + e.what());
    }
  }
  return std::optional<std::pair<std::string, YAML::Node>>();
}

// The entry of cloud `name` in a parsed file; an undefined node if it has none.
Result<YAML::Node> CloudEntry(const std::string& path, const YAML::Node& doc,
                              const std::string& name) {
  if (!doc.IsMap() || !doc["clouds"] || !doc["clouds"].IsMap()) {
    return Status::InvalidArgument(path + ": no 'clouds:' mapping");
  }
  YAML::Node entry = doc["clouds"][name];
  if (entry && !entry.IsMap()) {
    return Status::InvalidArgument(path + ": cloud '" + name + "' is not a mapping");
  }
  return entry;
}

std::string Scalar(const YAML::Node& node) {
  return node && node.IsScalar() ? node.Scalar() : std::string();
}

constexpr const char* kSecrets[] = {"password", "application_credential_secret", "token"};

// A file holding a secret must not be readable by everyone.
Status CheckPrivate(const std::string& path, const YAML::Node& entry) {
  const YAML::Node auth = entry["auth"];
  bool secret = false;
  for (const char* key : kSecrets) secret = secret || !Scalar(auth ? auth[key] : YAML::Node()).empty();
  if (!secret) return Status::Ok();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, path);
  if (st.st_mode & S_IROTH) {
    return Status::PermissionDenied(path + " holds a secret and is world-readable: chmod o-r it "
                                           "first");
  }
  return Status::Ok();
}

}  // namespace

CloudsYamlPaths DefaultCloudsYamlPaths() {
  CloudsYamlPaths paths;
  std::vector<std::string> dirs = {"."};
  if (!Env("HOME").empty()) dirs.push_back(Env("HOME") + "/.config/openstack");
  dirs.push_back("/etc/openstack");
  if (!Env("OS_CLIENT_CONFIG_FILE").empty()) paths.clouds.push_back(Env("OS_CLIENT_CONFIG_FILE"));
  if (!Env("OS_CLIENT_SECURE_FILE").empty()) paths.secure.push_back(Env("OS_CLIENT_SECURE_FILE"));
  for (const std::string& dir : dirs) {
    paths.clouds.push_back(dir + "/clouds.yaml");
    paths.secure.push_back(dir + "/secure.yaml");
  }
  return paths;
}

namespace {

// secure.yaml's entry for cloud `name`, if any, merged into `entry`: its values win, the auth
// mapping merged key by key.
Status MergeSecure(const std::string& name, const CloudsYamlPaths& paths, YAML::Node& entry) {
  GLANCEFS_ASSIGN_OR_RETURN(auto secure, LoadFirst(paths.secure));
  if (!secure) return Status::Ok();
  GLANCEFS_ASSIGN_OR_RETURN(YAML::Node extra, CloudEntry(secure->first, secure->second, name));
  if (!extra) return Status::Ok();
  GLANCEFS_RETURN_IF_ERROR(CheckPrivate(secure->first, extra));
  for (const auto& kv : extra) {
    std::string key = kv.first.as<std::string>();
    if (key == "auth" && kv.second.IsMap() && entry["auth"] && entry["auth"].IsMap()) {
      for (const auto& a : kv.second) entry["auth"][a.first.as<std::string>()] = a.second;
    } else {
      entry[key] = kv.second;
    }
  }
  return Status::Ok();
}

// The OS_* variables a cloud's auth mapping stands for.
void AuthVariables(const YAML::Node& auth, std::map<std::string, std::string>& os) {
  static const std::pair<const char*, const char*> kAuth[] = {
      {"auth_url", "OS_AUTH_URL"},
      {"username", "OS_USERNAME"},
      {"user_id", "OS_USER_ID"},
      {"password", "OS_PASSWORD"},
      {"project_name", "OS_PROJECT_NAME"},
      {"project_id", "OS_PROJECT_ID"},
      {"user_domain_name", "OS_USER_DOMAIN_NAME"},
      {"user_domain_id", "OS_USER_DOMAIN_ID"},
      {"project_domain_name", "OS_PROJECT_DOMAIN_NAME"},
      {"project_domain_id", "OS_PROJECT_DOMAIN_ID"},
      {"application_credential_id", "OS_APPLICATION_CREDENTIAL_ID"},
      {"application_credential_name", "OS_APPLICATION_CREDENTIAL_NAME"},
      {"application_credential_secret", "OS_APPLICATION_CREDENTIAL_SECRET"},
      {"token", "OS_TOKEN"},
  };
  for (const auto& [key, var] : kAuth) {
    std::string v = Scalar(auth[key]);
    if (!v.empty()) os[var] = v;
  }
  // keystoneauth's defaults for both domains
  for (const char* kind : {"name", "id"}) {
    std::string v = Scalar(auth[std::string("default_domain_") + kind]);
    if (v.empty()) continue;
    for (const char* who : {"USER", "PROJECT"}) {
      std::string var = std::string("OS_") + who + "_DOMAIN_" + (kind[0] == 'n' ? "NAME" : "ID");
      os.emplace(var, v);
    }
  }
}

// The OS_* variables a (merged) cloud entry stands for.
std::map<std::string, std::string> CloudVariables(const YAML::Node& entry) {
  std::map<std::string, std::string> os;
  auto set = [&](const char* var, const YAML::Node& node) {
    std::string v = Scalar(node);
    if (!v.empty()) os[var] = v;
  };
  set("OS_AUTH_TYPE", entry["auth_type"]);
  if (const YAML::Node auth = entry["auth"]; auth && auth.IsMap()) AuthVariables(auth, os);
  set("OS_REGION_NAME", entry["region_name"]);
  if (!os.count("OS_REGION_NAME") && entry["regions"] && entry["regions"].IsSequence() &&
      entry["regions"].size() > 0) {
    const YAML::Node first = entry["regions"][0];
    set("OS_REGION_NAME", first.IsMap() ? first["name"] : first);
  }
  set("OS_INTERFACE", entry["interface"]);
  set("OS_CACERT", entry["cacert"]);
  if (Scalar(entry["verify"]) == "false" || Scalar(entry["verify"]) == "False") {
    os["OS_INSECURE"] = "1";
  }
  return os;
}

// ReadCloud, which may throw YAML::Exception on a document of an unexpected shape.
Result<std::map<std::string, std::string>> ReadCloudOrThrow(const std::string& name,
                                                            const CloudsYamlPaths& paths) {
  GLANCEFS_ASSIGN_OR_RETURN(auto clouds, LoadFirst(paths.clouds));
  if (!clouds) return Status::NotFound("no clouds.yaml (looked for " + Joined(paths.clouds) + ")");
  const std::string& path = clouds->first;
  GLANCEFS_ASSIGN_OR_RETURN(YAML::Node entry, CloudEntry(path, clouds->second, name));
  if (!entry) return Status::NotFound(path + ": no cloud '" + name + "'");
  GLANCEFS_RETURN_IF_ERROR(CheckPrivate(path, entry));
  entry = YAML::Clone(entry);
  GLANCEFS_RETURN_IF_ERROR(MergeSecure(name, paths, entry));
  if (entry["profile"]) {
    return Status::NotSupported(path + ": cloud '" + name +
                                "' uses a vendor profile, which glancefs does not read: write "
                                "its auth_url and settings out");
  }
  return CloudVariables(entry);
}

}  // namespace

Result<std::map<std::string, std::string>> ReadCloud(const std::string& name,
                                                     const CloudsYamlPaths& paths) {
  try {
    return ReadCloudOrThrow(name, paths);
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument("clouds.yaml: cloud '" + name + "' is malformed: " + e.what());
  }
}

}  // namespace glancefs::backends
