// clouds.yaml: Keystone credentials the way openstacksdk (`openstack --os-cloud NAME`) finds them.
//
// The file is $OS_CLIENT_CONFIG_FILE if set, else the first of ./clouds.yaml,
// $HOME/.config/openstack/clouds.yaml and /etc/openstack/clouds.yaml that exists; secure.yaml
// ($OS_CLIENT_SECURE_FILE, else the same directories) is merged into it, its `auth` key by key.
// The entry `clouds: NAME:` is turned into the OS_* settings KeystoneCredentialsFrom reads:
// auth_type, auth.{auth_url, username, user_id, password, project_name, project_id,
// user_domain_name, user_domain_id, project_domain_name, project_domain_id,
// default_domain_name, default_domain_id, application_credential_id, application_credential_name,
// application_credential_secret, token}, region_name (or the first of regions), interface,
// cacert and verify (false: OS_INSECURE=1).
//
// A file that holds a secret (password, application credential secret, token) for the cloud
// is refused when it is world-readable. Vendor profiles (`profile:`) are refused, not guessed.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "fs/base/status.h"

namespace glancefs::backends {

// Where clouds.yaml and secure.yaml are looked for, in order (from the environment).
struct CloudsYamlPaths {
  std::vector<std::string> clouds;
  std::vector<std::string> secure;
};
CloudsYamlPaths DefaultCloudsYamlPaths();

// The OS_* settings of cloud `name`. NotFound names the files read when no file or no such
// cloud exists; InvalidArgument for YAML that is not a clouds.yaml; PermissionDenied for a
// world-readable file with a secret.
Result<std::map<std::string, std::string>> ReadCloud(const std::string& name,
                                                     const CloudsYamlPaths& paths);

}  // namespace glancefs::backends
