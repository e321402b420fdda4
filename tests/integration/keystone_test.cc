// `glancefs keystone MOUNTPOINT` against a real Keystone and Glance (tests/fixtures/glance
// --auth keystone). One test, so Keystone (about 30 s to set up) starts once. Keystone's tokens
// live kTokenSeconds, so a long read outlives the token glancefs mounted with.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "tests/integration/harness.h"

namespace glancefs::itest {
namespace {

const std::string kFixture = std::string(GLANCEFS_SOURCE_DIR) + "/tests/fixtures/glance";
constexpr int kTokenSeconds = 45;

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(KeystoneTest, MountsWhatTheProjectSees) {
  std::string state = MakeTempDir("glancefs-keystone");
  std::string work = MakeTempDir("glancefs-ks");
  CmdResult up = Sh(kFixture + "/glance-up.sh --auth keystone --port " +
                        std::to_string(FreePort()) + " --keystone-port " +
                        std::to_string(FreePort()) + " --token-expiration " +
                        std::to_string(kTokenSeconds) + " " + state + " 2>" + work + "/up.log",
                    900);
  ASSERT_EQ(up.status, 0) << "the Keystone fixture did not start:\n" << ReadFile(work + "/up.log");
  auto env = ParseExports(up.out);
  for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);

  // A token for demo, with curl, to upload and to ask Glance what demo sees.
  std::string body = R"({"auth": {"identity": {"methods": ["password"], "password": {"user": )"
                     R"({"name": ")" +
                     env["OS_USERNAME"] +
                     R"(", "domain": {"name": "Default"}, )"
                     R"("password": ")" +
                     env["OS_PASSWORD"] +
                     R"("}}}, "scope": {"project": )"
                     R"({"name": ")" +
                     env["OS_PROJECT_NAME"] + R"(", "domain": {"name": "Default"}}}}})";
  std::string token =
      MustSh("curl -sS -D - -o /dev/null -H 'Content-Type: application/json' -d " + Quote(body) +
             " " + env["OS_AUTH_URL"] +
             "/auth/tokens | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p' | tr -d '\\r\\n'");
  ASSERT_FALSE(token.empty());
  std::string glance = env["GLANCE_URL"];
  std::string auth = " -H " + Quote("X-Auth-Token: " + token) + " ";
  std::string file = work + "/k.raw";
  MustSh("head -c 256M /dev/urandom > " + file);
  auto created = nlohmann::json::parse(MustSh(
      "curl -sS --fail-with-body" + auth + "-X POST -H 'Content-Type: application/json' -d " +
      Quote(R"({"name": "ks-private", "disk_format": "raw", "container_format": "bare", )"
            R"("visibility": "private"})") +
      " " + glance + "/v2/images"));
  std::string id = created["id"];
  MustSh("curl -sS --fail-with-body" + auth +
         "-X PUT -H 'Content-Type: application/octet-stream' "
         "-T " +
         file + " " + glance + "/v2/images/" + id + "/file");
  // A hidden image: not in `openstack image list`, nor in images/, but reachable by id.
  std::string hidden_id = nlohmann::json::parse(MustSh(
      "curl -sS --fail-with-body" + auth + "-X POST -H 'Content-Type: application/json' -d " +
      Quote(R"({"name": "ks-hidden", "disk_format": "raw", "container_format": "bare", )"
            R"("visibility": "private", "os_hidden": true})") +
      " " + glance + "/v2/images"))["id"];
  // What the project sees, asked the way an operator asks: the openstack CLI, with the same
  // OS_* credentials glancefs gets.
  std::set<std::string> listed;
  std::string listing = MustSh("openstack image list -f value -c ID", 120);
  std::istringstream ids(listing);
  for (std::string line; std::getline(ids, line);) {
    if (!line.empty()) listed.insert(line);
  }
  ASSERT_EQ(listed.count(id), 1u) << listing;
  ASSERT_EQ(listed.count(hidden_id), 0u) << listing;

  {
    // A read-ahead window small beside the long read below, so that read asks Glance until its end.
    Mount m("keystone", "-o refresh=1,readahead_max=8M");
    ASSERT_TRUE(m.mounted());
    std::set<std::string> shown;
    std::istringstream ls(MustSh("ls " + m.path() + "/images"));
    for (std::string line; std::getline(ls, line);) shown.insert(line);
    EXPECT_EQ(shown, listed) << listing;
    const std::string hidden = m.path() + "/images/" + hidden_id;
    EXPECT_EQ(MustSh("jq -r .os_hidden " + hidden + "/metadata.json"), "true\n");
    const std::string disk = m.path() + "/images/" + id + "/disk.raw";
    MustSh("cmp " + disk + " " + file);
    // A long read from Glance (the cache emptied first) that outlives glancefs's first token:
    // 2 MiB every half second, each compared with the file, for kTokenSeconds + 5 s. The token is
    // renewed before it expires; no read fails.
    MustSh("rm " + m.path() + "/cache/" + id);
    auto t0 = std::chrono::steady_clock::now();
    MustSh("end=$((SECONDS + " + std::to_string(kTokenSeconds + 5) + ")); i=0; "
               "while [ $SECONDS -lt $end ]; do "
               "cmp <(dd if=" + disk + " iflag=direct,fullblock bs=2M count=1 skip=$i status=none) "
               "<(dd if=" + file + " bs=2M count=1 skip=$i status=none) || exit 1; "
               "i=$((i + 1)); sleep 0.5; done",
           600);
    EXPECT_GT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(kTokenSeconds));
    EXPECT_GE(Count(m.Log(), "keystone: new token"), 2u) << m.Log();
    // No secret in the process's command line or its log.
    std::string args =
        MustSh("ps -o args= -p " + std::to_string(m.pid()) + " --ppid " + std::to_string(m.pid()));
    EXPECT_EQ(args.find(env["OS_PASSWORD"]), std::string::npos) << args;
    EXPECT_EQ(m.Log().find(env["OS_PASSWORD"]), std::string::npos);
    EXPECT_EQ(m.Unmount(), 0) << m.Log();
    EXPECT_EQ(m.Log().find(token), std::string::npos);
  }
  {
    // An application credential of demo sees the same.
    ::setenv("OS_AUTH_TYPE", "v3applicationcredential", 1);
    ::setenv("OS_APPLICATION_CREDENTIAL_ID", env["DEMO_APP_CRED_ID"].c_str(), 1);
    ::setenv("OS_APPLICATION_CREDENTIAL_SECRET", env["DEMO_APP_CRED_SECRET"].c_str(), 1);
    Mount m("keystone", "-o refresh=1");
    ASSERT_TRUE(m.mounted());
    MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + file);
    EXPECT_EQ(m.Unmount(), 0) << m.Log();
    ::unsetenv("OS_AUTH_TYPE");
    ::unsetenv("OS_APPLICATION_CREDENTIAL_ID");
    ::unsetenv("OS_APPLICATION_CREDENTIAL_SECRET");
  }
  {
    // The same credentials from clouds.yaml (-o cloud=), none from OS_* variables.
    std::string clouds = work + "/clouds.yaml";
    MustSh("printf '%s\n' 'clouds:' '  ks:' '    auth:' '      auth_url: " + env["OS_AUTH_URL"] +
           "' '      username: " + env["OS_USERNAME"] + "' '      password: " + env["OS_PASSWORD"] +
           "' '      project_name: " + env["OS_PROJECT_NAME"] +
           "' '      user_domain_name: Default' '      project_domain_name: Default' > " + clouds +
           " && chmod 600 " + clouds);
    std::string password = env["OS_PASSWORD"];
    ::unsetenv("OS_PASSWORD");
    ::setenv("OS_CLIENT_CONFIG_FILE", clouds.c_str(), 1);
    Mount m("keystone", "-o refresh=1,cloud=ks");
    ASSERT_TRUE(m.mounted()) << m.Log();
    std::set<std::string> shown;
    std::istringstream ls(MustSh("ls " + m.path() + "/images"));
    for (std::string line; std::getline(ls, line);) shown.insert(line);
    EXPECT_EQ(shown, listed);
    MustSh("cmp -n 4M " + m.path() + "/images/" + id + "/disk.raw " + file);
    EXPECT_EQ(m.Unmount(), 0) << m.Log();
    EXPECT_EQ(m.Log().find(password), std::string::npos);
    // World-readable, it is refused before any secret is used.
    MustSh("chmod 644 " + clouds);
    CmdResult r = Sh(std::string(GLANCEFS_BIN) + " keystone " + work + " -f -o cloud=ks", 60);
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.out.find("world-readable"), std::string::npos) << r.out;
    ::unsetenv("OS_CLIENT_CONFIG_FILE");
    ::setenv("OS_PASSWORD", password.c_str(), 1);
  }
  {
    // A wrong password: a clear refusal at mount time, non-zero exit.
    ::setenv("OS_PASSWORD", "wrong-password", 1);
    CmdResult r = Sh(std::string(GLANCEFS_BIN) + " keystone " + work + " -f", 60);
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.out.find("authentication refused"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("wrong-password"), std::string::npos) << r.out;
    ::setenv("OS_PASSWORD", env["OS_PASSWORD"].c_str(), 1);
  }
  {
    // A node boots while Keystone and Glance are down: it mounts from the catalog stored with
    // its cache, reads what is cached, gets EIO for the rest, and goes live when they answer.
    const std::string cache = work + "/ks-cache";
    {
      Mount m("keystone", "-o refresh=1,readahead_max=0,cache_dir=" + cache);
      ASSERT_TRUE(m.mounted()) << m.Log();
      MustSh("cmp -n 4M " + m.path() + "/images/" + id + "/disk.raw " + file);
      EXPECT_EQ(m.Unmount(), 0) << m.Log();
    }
    MustSh(kFixture + "/glance-down.sh " + state, 120);  // stopped, data kept
    Mount m("keystone", "-o refresh=1,readahead_max=0,cache_dir=" + cache);
    ASSERT_TRUE(m.mounted()) << m.Log();
    EXPECT_NE(m.Log().find("asking again at every refresh"), std::string::npos) << m.Log();
    std::string state_xattr = MustSh("getfattr --absolute-names --only-values -n "
                                     "user.glancefs.catalog_state " + m.path());
    EXPECT_EQ(state_xattr.rfind("stored (as of ", 0), 0u) << state_xattr;
    const std::string disk = m.path() + "/images/" + id + "/disk.raw";
    MustSh("cmp -n 4M " + disk + " " + file);
    CmdResult r = Sh("dd if=" + disk + " of=/dev/null bs=1M skip=200 count=1 status=none", 60);
    EXPECT_NE(r.out.find("Input/output error"), std::string::npos) << r.out;
    ASSERT_TRUE(GlanceUpAgain(state));
    MustSh("for i in $(seq 150); do getfattr --absolute-names --only-values -n "
           "user.glancefs.catalog_state " + m.path() + " | grep -qx live && exit 0; sleep 0.2; "
           "done; exit 1", 60);
    MustSh("cmp " + disk + " " + file, 300);
    EXPECT_EQ(m.Unmount(), 0) << m.Log();
  }
  Sh(kFixture + "/glance-down.sh --purge " + state, 120);
  Sh("rm -rf " + work);
}

}  // namespace
}  // namespace glancefs::itest
