// clouds.yaml and secure.yaml as openstacksdk reads them, turned into Keystone credentials.
#include "backends/glance/clouds_yaml.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "backends/glance/keystone.h"

namespace glancefs::backends {
namespace {

class CloudsYamlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/glancefs-clouds-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    paths_.clouds = {dir_ + "/none/clouds.yaml", dir_ + "/clouds.yaml"};
    paths_.secure = {dir_ + "/secure.yaml"};
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  void Write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    std::ofstream(dir_ + "/" + name) << text;
    ::chmod((dir_ + "/" + name).c_str(), mode);
  }
  Result<KeystoneCredentials> Credentials(const std::string& cloud) {
    auto settings = ReadCloud(cloud, paths_);
    if (!settings.ok()) return settings.status();
    return KeystoneCredentialsFrom([&](const char* name) {
      auto it = settings->find(name);
      return it == settings->end() ? std::string() : it->second;
    });
  }

  std::string dir_;
  CloudsYamlPaths paths_;
};

TEST_F(CloudsYamlTest, PasswordCloudWithSecretsInSecureYaml) {
  Write("clouds.yaml", R"(
clouds:
  other:
    auth: {auth_url: "http://elsewhere:5000"}
  demo:
    auth:
      auth_url: http://127.0.0.1:5000/
      username: demo
      project_name: demo
      default_domain_name: Corp
    region_name: RegionTwo
    interface: internal
    cacert: /etc/ssl/ca.pem
)",
        0644);  // no secret in it: may be world-readable
  Write("secure.yaml", "clouds:\n  demo:\n    auth:\n      password: s3cret\n");
  auto c = Credentials("demo");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->method, KeystoneCredentials::Method::kPassword);
  EXPECT_EQ(c->auth_url, "http://127.0.0.1:5000/v3");
  EXPECT_EQ(c->username, "demo");
  EXPECT_EQ(c->password, "s3cret");
  EXPECT_EQ(c->project_name, "demo");
  EXPECT_EQ(c->user_domain_name, "Corp");
  EXPECT_EQ(c->project_domain_name, "Corp");
  EXPECT_EQ(c->region, "RegionTwo");
  EXPECT_EQ(c->interface, "internal");
  EXPECT_EQ(ReadCloud("demo", paths_)->at("OS_CACERT"), "/etc/ssl/ca.pem");
}

TEST_F(CloudsYamlTest, ApplicationCredentialAndFirstRegion) {
  Write("clouds.yaml", R"(
clouds:
  app:
    auth_type: v3applicationcredential
    auth:
      auth_url: https://keystone.example:5000/v3
      application_credential_id: abc123
      application_credential_secret: shh
    regions: [R1, R2]
    verify: false
)");
  auto c = Credentials("app");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->method, KeystoneCredentials::Method::kApplicationCredential);
  EXPECT_EQ(c->app_cred_id, "abc123");
  EXPECT_EQ(c->app_cred_secret, "shh");
  EXPECT_EQ(c->region, "R1");
  EXPECT_EQ(ReadCloud("app", paths_)->at("OS_INSECURE"), "1");
}

TEST_F(CloudsYamlTest, RefusalsAreClear) {
  // No file at all: the places looked in are named.
  auto none = ReadCloud("demo", paths_);
  EXPECT_EQ(none.status().code(), Status::Code::kNotFound);
  EXPECT_NE(none.status().message().find(dir_ + "/clouds.yaml"), std::string::npos)
      << none.status().ToString();

  Write("clouds.yaml", "clouds:\n  demo:\n    auth:\n      auth_url: http://k:5000\n"
                       "      username: u\n      password: p\n      project_name: x\n",
        0644);
  auto world = ReadCloud("demo", paths_);
  EXPECT_EQ(world.status().code(), Status::Code::kPermissionDenied);
  EXPECT_NE(world.status().message().find("world-readable"), std::string::npos);
  EXPECT_EQ(world.status().message().find("p\n"), std::string::npos);

  ::chmod((dir_ + "/clouds.yaml").c_str(), 0600);
  EXPECT_TRUE(ReadCloud("demo", paths_).ok());
  EXPECT_EQ(ReadCloud("nope", paths_).status().code(), Status::Code::kNotFound);

  Write("clouds.yaml", "clouds: [not, a, mapping]\n");
  EXPECT_EQ(ReadCloud("demo", paths_).status().code(), Status::Code::kInvalidArgument);
  Write("clouds.yaml", "clouds:\n  demo: {auth: {auth_url: [unclosed\n");
  auto bad = ReadCloud("demo", paths_);
  EXPECT_EQ(bad.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("not valid YAML"), std::string::npos);
  Write("clouds.yaml", "clouds:\n  demo:\n    auth: {auth_url: http://k}\n");
  Write("secure.yaml", "clouds:\n  demo:\n    auth: [odd, shape]\n    {a: 1}: key\n");
  EXPECT_EQ(ReadCloud("demo", paths_).status().code(), Status::Code::kInvalidArgument);
  ::unlink((dir_ + "/secure.yaml").c_str());
  Write("clouds.yaml", "clouds:\n  demo:\n    profile: vexxhost\n");
  EXPECT_EQ(ReadCloud("demo", paths_).status().code(), Status::Code::kNotSupported);

  // A cloud without a password: the credential check says what is missing.
  Write("clouds.yaml", "clouds:\n  demo:\n    auth: {auth_url: 'http://k:5000', username: u, "
                       "project_name: x}\n");
  auto c = Credentials("demo");
  EXPECT_EQ(c.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("PASSWORD"), std::string::npos) << c.status().ToString();
}

}  // namespace
}  // namespace glancefs::backends
