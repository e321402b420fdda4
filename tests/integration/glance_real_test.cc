// glancefs against the real OpenStack Glance API (Debian's glance-api), started on 127.0.0.1
// by the project's fixture (tests/fixtures/glance). Installs the packages when missing.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "backends/glance/http_client.h"
#include "tests/fakes/http_server.h"
#include "tests/integration/format_matrix.h"
#include "tests/integration/harness.h"
#include "tests/integration/qcow2_matrix.h"
#include "tests/integration/qemu_map.h"

namespace glancefs::itest {
namespace {

namespace fs = std::filesystem;

const std::string kFixture = std::string(GLANCEFS_SOURCE_DIR) + "/tests/fixtures/glance";

class RealGlanceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    state_ = new std::string(MakeTempDir("glancefs-glance"));
    env_ = new std::map<std::string, std::string>();
    // The first run installs Debian's glance-api (about 100 s); later ones start it (about 5 s).
    CmdResult up = Sh(kFixture + "/glance-up.sh --port " + std::to_string(FreePort()) + " " +
                          *state_ + " 2>" + *state_ + ".up.log",
                      900);
    ASSERT_EQ(up.status, 0) << "the Glance fixture did not start:\n"
                            << up.out << ReadFile(*state_ + ".up.log");
    *env_ = ParseExports(up.out);
    ASSERT_FALSE(Env("GLANCE_URL").empty()) << up.out;
  }
  static void TearDownTestSuite() {
    Sh(kFixture + "/glance-down.sh --purge " + *state_, 120);
    fs::remove(*state_ + ".up.log");
  }
  static std::string Env(const std::string& k) {
    auto it = env_->find(k);
    return it == env_->end() ? "" : it->second;
  }
  void SetUp() override {
    ASSERT_FALSE(Env("GLANCE_URL").empty()) << "no Glance: see the suite's set-up failure";
    work_ = MakeTempDir("glancefs-rg");
  }
  void TearDown() override { fs::remove_all(work_); }

  static std::string Curl(const std::string& args, const std::string& token = "") {
    std::string auth = token.empty() ? "" : " -H " + Quote("X-Auth-Token: " + token);
    return MustSh("curl -sS --fail-with-body" + auth + " " + args);
  }
  // Creates an image and uploads FILE; returns its id.
  static std::string Upload(const std::string& file, const std::string& name,
                            const std::string& disk_format, const std::string& extra = "",
                            const std::string& token = "",
                            const std::string& container_format = "bare") {
    std::string body = "{\"name\": \"" + name + "\", \"disk_format\": \"" + disk_format +
                       "\", \"container_format\": \"" + container_format + "\"" + extra + "}";
    auto created =
        nlohmann::json::parse(Curl("-X POST -H 'Content-Type: application/json' -d " + Quote(body) +
                                       " " + Env("GLANCE_URL") + "/v2/images",
                                   token));
    std::string id = created["id"];
    Curl("-X PUT -H 'Content-Type: application/octet-stream' -T " + file + " " + Env("GLANCE_URL") +
             "/v2/images/" + id + "/file",
         token);
    return id;
  }
  // The ids Glance lists for `token` (all pages), as `openstack image list` would.
  static std::set<std::string> Listed(const std::string& token = "") {
    std::set<std::string> ids;
    std::string next = "/v2/images?limit=1000";
    while (!next.empty()) {
      auto page = nlohmann::json::parse(Curl(Quote(Env("GLANCE_URL") + next), token));
      for (const auto& image : page["images"]) ids.insert(image["id"].get<std::string>());
      next = page.contains("next") ? page["next"].get<std::string>() : "";
    }
    return ids;
  }
  static std::set<std::string> Ls(const std::string& dir) {
    std::set<std::string> out;
    std::istringstream in(MustSh("ls " + dir));
    for (std::string line; std::getline(in, line);) out.insert(line);
    return out;
  }
  std::string Token(const std::string& token) {
    std::string path = work_ + "/token-" + std::to_string(tokens_++);
    WriteFile(path, token + "\n");
    MustSh("chmod 600 " + path);
    return path;
  }

  static std::string* state_;
  static std::map<std::string, std::string>* env_;
  std::string work_;
  int tokens_ = 0;
};

std::string* RealGlanceTest::state_ = nullptr;
std::map<std::string, std::string>* RealGlanceTest::env_ = nullptr;

TEST_F(RealGlanceTest, ListsPagesHiddenAndServesExactData) {
  std::string raw = work_ + "/a.raw";
  MustSh("truncate -s 8M " + raw + " && head -c 3M /dev/urandom | dd of=" + raw +
         " conv=notrunc status=none && head -c 1M /dev/urandom | dd of=" + raw +
         " bs=1M seek=6 conv=notrunc status=none");
  std::string qcow = work_ + "/b.qcow2";
  MustSh("qemu-img convert -c -f raw -O qcow2 -o compression_type=zstd " + raw + " " + qcow +
         " && qemu-io -f qcow2 -c 'write -z 1M 64k' " + qcow + " >/dev/null");
  std::string raw_id = Upload(raw, "rg-raw", "raw", ", \"hw_disk_bus\": \"virtio\"");
  std::string qcow_id = Upload(qcow, "rg-qcow2", "qcow2");
  std::string hidden_id = Upload(raw, "rg-hidden", "raw", ", \"os_hidden\": true");
  for (int i = 0; i < 5; ++i) Upload(raw, "rg-extra-" + std::to_string(i), "raw");

  // page_limit=3: the listing crosses several pages (and an exactly full one, maybe).
  // relist=4: a deletion shows within 4 refreshes.
  Mount m(Env("GLANCE_URL"), "-o refresh=1,page_limit=3,relist=4");
  ASSERT_TRUE(m.mounted());
  const std::string images = m.path() + "/images/";
  EXPECT_EQ(Ls(images), Listed());
  EXPECT_EQ(Ls(images).count(hidden_id), 0u);
  MustSh("test -d " + images + hidden_id);
  MustSh("cmp " + images + raw_id + "/disk.raw " + raw);
  MustSh("cmp " + images + hidden_id + "/disk.raw " + raw);
  MustSh("cmp " + images + qcow_id + "/disk.qcow2 " + qcow);
  MustSh("qemu-img convert -f qcow2 -O raw " + qcow + " " + work_ + "/b.raw");
  MustSh("cmp " + images + qcow_id + "/disk.raw " + work_ + "/b.raw");
  EXPECT_EQ(MustSh("getfattr --absolute-names --only-values -n user.glance.hw_disk_bus " + images +
                   raw_id),
            "virtio");
  EXPECT_EQ(MustSh("readlink " + m.path() + "/by-name/rg-qcow2"), "../images/" + qcow_id + "\n");

  // A property change and a deletion show up without remounting.
  Curl("-X PATCH -H 'Content-Type: application/openstack-images-v2.1-json-patch' -d " +
       Quote("[{\"op\": \"add\", \"path\": \"/os_distro\", \"value\": \"cirros\"}]") + " " +
       Env("GLANCE_URL") + "/v2/images/" + raw_id);
  EXPECT_TRUE(Sh("for i in $(seq 50); do getfattr --absolute-names --only-values -n "
                 "user.glance.os_distro " +
                 images + raw_id +
                 " 2>/dev/null | grep -qx cirros "
                 "&& exit 0; sleep 0.2; done; exit 1")
                  .status == 0);
  Curl("-X DELETE " + Env("GLANCE_URL") + "/v2/images/" + qcow_id);
  EXPECT_TRUE(Sh("for i in $(seq 50); do test -e " + images + qcow_id +
                 " || exit 0; sleep 0.2; done; exit 1")
                  .status == 0);
  EXPECT_EQ(m.Unmount(), 0) << m.Log();

  // With no full listing after the first, new images and changes still show: Glance answers
  // the updated_at=gte: filter the refreshes between full listings use.
  Mount d(Env("GLANCE_URL"), "-o refresh=1,relist=1000");
  ASSERT_TRUE(d.mounted());
  std::string fresh_id = Upload(raw, "rg-fresh", "raw");
  EXPECT_TRUE(Sh("for i in $(seq 50); do test -e " + d.path() + "/images/" + fresh_id +
                 "/disk.raw && exit 0; sleep 0.2; done; exit 1")
                  .status == 0);
  MustSh("cmp " + d.path() + "/images/" + fresh_id + "/disk.raw " + raw);
  EXPECT_EQ(d.Unmount(), 0) << d.Log();
}

TEST_F(RealGlanceTest, Qcow2MatrixDecodesThroughGlance) {
  std::string src = work_ + "/src.raw";
  MustSh(std::string("SRC=") + src + "; " + kMakeSource);
  std::vector<std::pair<std::string, std::string>> images;  // id, qcow2 file
  for (const Case& c : Matrix()) {
    if (c.name == "v3_16TiB_sparse") continue;  // no 16 TiB through cmp
    std::string img = work_ + "/" + c.name + ".qcow2";
    MustSh("W=" + work_ + " SRC=" + src + " IMG=" + img + "; " + c.create);
    images.emplace_back(Upload(img, "rg-matrix-" + c.name, "qcow2"), img);
  }
  Mount m(Env("GLANCE_URL"), "-o refresh=1");
  ASSERT_TRUE(m.mounted());
  for (const auto& [id, img] : images) {
    SCOPED_TRACE(img);
    MustSh("qemu-img convert -f qcow2 -O raw " + img + " " + work_ + "/expected.raw");
    MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + work_ + "/expected.raw");
  }
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

// Every disk format and the OVA, uploaded to the real Glance with their true disk_format and
// container_format, decode through the mount exactly as qemu-img decodes them, in both views.
TEST_F(RealGlanceTest, EveryFormatDecodesThroughGlance) {
  std::string src = work_ + "/src.raw";
  MustSh(std::string("SRC=") + src + "; " + kMakeSource);
  struct Uploaded {
    FormatCase c;
    std::string id, disk;
  };
  std::vector<Uploaded> images;
  for (const FormatCase& c : FormatMatrix()) {
    std::string img = work_ + "/" + c.name + "." + c.disk_format;
    MustSh("W=" + work_ + " SRC=" + src + " IMG=" + img + "; " + c.create);
    std::string id = Upload(img, "rg-format-" + c.name, c.disk_format, "", "", c.container_format);
    images.push_back({c, id, c.container_format == "ova" ? img + ".disk" : img});
  }
  Mount m(Env("GLANCE_URL"), "-o refresh=1");
  ASSERT_TRUE(m.mounted());
  for (const Uploaded& u : images) {
    SCOPED_TRACE(u.c.name);
    std::string dir = m.path() + "/images/" + u.id;
    MustSh("qemu-img convert -f " + u.c.qemu_format + " -O raw " + u.disk + " " + work_ +
           "/expected.raw");
    MustSh("cmp " + dir + "/disk.raw " + work_ + "/expected.raw");
    ExpectSameData(QemuDataRanges(MustSh("qemu-img map --output=json -f raw " + dir + "/disk.raw")),
                   QemuDataRanges(MustSh("qemu-img map --output=json -f " + u.c.qemu_format + " " +
                                         u.disk)),
                   u.c.qemu_format);
    CmdResult check = Sh("qemu-img check -f qcow2 " + dir + "/disk.qcow2");
    EXPECT_EQ(check.status, 0) << check.out;
    MustSh("qemu-img compare -q -f qcow2 -F " + u.c.qemu_format + " " + dir + "/disk.qcow2 " +
           u.disk);
  }
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

TEST_F(RealGlanceTest, ProjectsSeeOnlyWhatGlanceShowsThem) {
  std::string file = work_ + "/p.raw";
  MustSh("head -c 1M /dev/urandom > " + file);
  std::string mine =
      Upload(file, "rg-private", "raw", ", \"visibility\": \"private\"", Env("DEMO_TOKEN"));
  Mount theirs(Env("GLANCE_URL"), "-o refresh=1,token_file=" + Token(Env("DEMO2_TOKEN")));
  ASSERT_TRUE(theirs.mounted());
  EXPECT_EQ(Ls(theirs.path() + "/images/"), Listed(Env("DEMO2_TOKEN")));
  EXPECT_EQ(Ls(theirs.path() + "/images/").count(mine), 0u);
  EXPECT_NE(Sh("test -e " + theirs.path() + "/images/" + mine).status, 0);
  Mount owner(Env("GLANCE_URL"), "-o refresh=1,token_file=" + Token(Env("DEMO_TOKEN")));
  ASSERT_TRUE(owner.mounted());
  EXPECT_EQ(Ls(owner.path() + "/images/"), Listed(Env("DEMO_TOKEN")));
  MustSh("cmp " + owner.path() + "/images/" + mine + "/disk.raw " + file);
  EXPECT_EQ(theirs.Unmount(), 0);
  EXPECT_EQ(owner.Unmount(), 0);
}

// The value of xattr `name` of `path`, or "" if absent.
std::string Xattr(const std::string& path, const std::string& name) {
  CmdResult r = Sh("getfattr --absolute-names --only-values -n " + name + " " + Quote(path) +
                   " 2>/dev/null");
  return r.status == 0 ? r.out : "";
}

TEST_F(RealGlanceTest, AStoreThatRefusesRangeIsStreamed) {
  std::string file = work_ + "/s.raw";
  MustSh("head -c 5M /dev/urandom > " + file);
  std::string id = Upload(file, "rg-stream", "raw");
  // A qcow2 image too: its decoder reads tables at scattered offsets, each waiting for the
  // stream to pass it. Data at the start, the middle and the end of a 64 MiB disk.
  const std::string qcow = work_ + "/s.qcow2";
  MustSh("qemu-img create -f qcow2 " + qcow + " 64M >/dev/null && qemu-io -f qcow2 -c 'write "
         "-P 0x11 0 1M' -c 'write -P 0x22 31M 2M' -c 'write -P 0x33 63M 1M' " + qcow +
         " >/dev/null && qemu-img convert -f qcow2 -O raw " + qcow + " " + work_ + "/s-qcow.raw");
  std::string qcow_id = Upload(qcow, "rg-stream-qcow2", "qcow2");
  // A proxy in front of the real Glance that answers every Range with 400, as rbd, swift and
  // s3 stores do.
  auto upstream = backends::NewCurlHttpClient(backends::HttpOptions());
  std::atomic<int> whole_gets{0};
  glancefs::testing::TestHttpServer proxy([&](const glancefs::testing::HttpRequest& r) {
    glancefs::testing::HttpAnswer a;
    if (r.headers.count("range")) {
      a.status = 400;
      a.body = "<h1>400 Bad Request</h1>";
      return a;
    }
    if (r.target.find("/file") != std::string::npos) ++whole_gets;
    auto got = upstream->Get(Env("GLANCE_URL") + r.target, {}, nullptr, 64 << 20);
    a.status = got.ok() ? static_cast<int>(got->status) : 502;
    if (got.ok()) a.body = got->body;
    return a;
  });
  Mount m(proxy.url(), "-o refresh=1");
  ASSERT_TRUE(m.mounted());
  MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + file);
  EXPECT_NE(m.Log().find("reading it as one stream"), std::string::npos) << m.Log();
  // The block cache read it whole, once, storing every block as it came: all of it is cached
  // and verified, and reading it again asks nothing of the store.
  const std::string entry = m.path() + "/cache/" + id;
  EXPECT_TRUE(Sh("for i in $(seq 100); do [ \"$(getfattr --absolute-names --only-values -n "
                 "user.glancefs.state " + Quote(entry) + ")\" = verified ] && exit 0; sleep 0.1; "
                 "done; exit 1").status == 0)
      << MustSh("ls -l " + m.path() + "/cache") << m.Log();
  EXPECT_EQ(Xattr(entry, "user.glancefs.cached_bytes"), "5242880");
  EXPECT_EQ(whole_gets.load(), 1);
  MustSh("cat " + m.path() + "/images/" + id + "/disk.raw > /dev/null");
  EXPECT_EQ(whole_gets.load(), 1);
  MustSh("cmp " + m.path() + "/images/" + qcow_id + "/disk.raw " + work_ + "/s-qcow.raw");
  MustSh("cmp " + m.path() + "/images/" + qcow_id + "/disk.qcow2 " + qcow);
  EXPECT_EQ(whole_gets.load(), 2);
  EXPECT_EQ(m.Unmount(), 0);
}

TEST_F(RealGlanceTest, TlsIsVerifiedAgainstCacertOrSkippedWithInsecure) {
  std::string file = work_ + "/t.raw";
  MustSh("head -c 3M /dev/urandom > " + file);
  std::string id = Upload(file, "rg-tls", "raw");
  // A CA of our own and a certificate for 127.0.0.1 it signed; socat terminates TLS in front
  // of the real Glance.
  const std::string w = work_ + "/";
  MustSh("cd " + w + " && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=test-ca "
         "-keyout ca.key -out ca.pem 2>&1 && openssl req -newkey rsa:2048 -nodes -subj "
         "/CN=127.0.0.1 -keyout srv.key -out srv.csr 2>&1 && printf 'subjectAltName=IP:127.0.0.1' "
         "> san.ext && openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
         "-days 2 -extfile san.ext -out srv.crt 2>&1 && cat srv.crt srv.key > srv.pem");
  int port = FreePort();
  std::string glance = Env("GLANCE_URL").substr(std::string("http://").size());
  MustSh("setsid socat OPENSSL-LISTEN:" + std::to_string(port) + ",bind=127.0.0.1,reuseaddr,fork,"
         "cert=" + w + "srv.pem,verify=0 TCP:" + glance + " >" + w + "socat.log 2>&1 </dev/null & "
         "echo $! > " + w + "socat.pid");
  struct Stop {
    std::string pid_file;
    ~Stop() { Sh("kill $(cat " + pid_file + ") 2>/dev/null"); }
  } stop{w + "socat.pid"};
  ASSERT_EQ(Sh("for i in $(seq 50); do curl -s --cacert " + w + "ca.pem -o /dev/null https://"
               "127.0.0.1:" + std::to_string(port) + "/healthcheck && exit 0; sleep 0.1; done; "
               "exit 1").status, 0) << ReadFile(w + "socat.log");
  const std::string url = "https://127.0.0.1:" + std::to_string(port);
  {
    Mount m(url, "-o refresh=1,cacert=" + w + "ca.pem");
    ASSERT_TRUE(m.mounted()) << m.Log();
    MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + file);
    EXPECT_EQ(m.Unmount(), 0);
  }
  {
    // The system CAs do not know ours: a clear refusal, not a mount of nothing.
    CmdResult r = Sh(std::string(GLANCEFS_BIN) + " " + url + " " + work_ + " -f", 60);
    EXPECT_NE(r.status, 0);
    EXPECT_NE(r.out.find("certificate"), std::string::npos) << r.out;
  }
  {
    Mount m(url, "-o refresh=1,insecure");
    ASSERT_TRUE(m.mounted()) << m.Log();
    MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + file);
    EXPECT_EQ(m.Unmount(), 0);
  }
}

TEST_F(RealGlanceTest, GlanceDownGivesEioInBoundedTimeAndTheCatalogStays) {
  // Without the block cache: listing the image's directory reads its first and last bytes (the
  // format verdict), which the cache would keep and serve once Glance is down.
  std::string file = work_ + "/d.raw";
  MustSh("head -c 2M /dev/urandom > " + file);
  std::string id = Upload(file, "rg-down", "raw");
  Mount m(Env("GLANCE_URL"), "-o refresh=1,nocache");
  ASSERT_TRUE(m.mounted());
  MustSh("ls " + m.path() + "/images/" + id);
  MustSh(kFixture + "/glance-down.sh " + *state_, 120);  // stopped, data kept
  auto t0 = std::chrono::steady_clock::now();
  CmdResult r = Sh("cat " + m.path() + "/images/" + id + "/disk.raw > /dev/null", 60);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.out.find("Input/output error"), std::string::npos) << r.out;
  EXPECT_LT(secs, 20.0);
  EXPECT_TRUE(Sh("for i in $(seq 50); do getfattr --absolute-names -n "
                 "user.glancefs.refresh_error " +
                 m.path() +
                 " >/dev/null 2>&1 && exit 0; "
                 "sleep 0.2; done; exit 1")
                  .status == 0);
  EXPECT_NE(MustSh("ls " + m.path() + "/images").find(id), std::string::npos);
  // Back up: the same read now gives the data.
  ASSERT_TRUE(GlanceUpAgain(*state_));
  MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + file);
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

// Issue 12: a node reboots while Glance is down. The mount comes up from the catalog stored
// with its cache, serves what is cached, answers the rest with EIO in bounded time, and
// becomes live again when Glance answers. With no stored catalog it still fails clearly.
TEST_F(RealGlanceTest, MountsFromTheStoredCatalogWhileGlanceIsDown) {
  std::string cached = work_ + "/s1.raw", cached2 = work_ + "/s3.raw", uncached = work_ + "/s2.raw";
  MustSh("head -c 3M /dev/urandom > " + cached + " && head -c 3M /dev/urandom > " + uncached +
         " && head -c 5M /dev/urandom > " + cached2);
  std::string cached_id = Upload(cached, "rg-stored-cached", "raw");
  std::string cached2_id = Upload(cached2, "rg-stored-cached2", "raw");
  std::string uncached_id = Upload(uncached, "rg-stored-uncached", "raw");
  const std::string cache = work_ + "/cache";
  {
    Mount m(Env("GLANCE_URL"), "-o refresh=1,cache_dir=" + cache);
    ASSERT_TRUE(m.mounted());
    MustSh("cmp " + m.path() + "/images/" + cached_id + "/disk.raw " + cached);
    MustSh("cmp " + m.path() + "/images/" + cached2_id + "/disk.raw " + cached2);
    EXPECT_EQ(Xattr(m.path(), "user.glancefs.catalog_state"), "live");
    EXPECT_EQ(m.Unmount(), 0) << m.Log();
  }
  MustSh(kFixture + "/glance-down.sh " + *state_, 120);  // stopped, data kept
  struct Restart {
    ~Restart() { (void)GlanceUpAgain(*state_); }  // for the next tests: they fail if not up
  } restart;
  {
    MustSh("mkdir -p " + work_ + "/mnt-fresh");
    CmdResult fresh = Sh(std::string(GLANCEFS_BIN) + " " + Env("GLANCE_URL") + " " + work_ +
                             "/mnt-fresh -f -o cache_dir=" + work_ + "/empty-cache",
                         60);
    EXPECT_NE(fresh.status, 0) << "mounted with nothing stored and Glance down";
    EXPECT_NE(fresh.out.find("cannot read catalog"), std::string::npos) << fresh.out;
  }
  {
    auto t0 = std::chrono::steady_clock::now();
    Mount m(Env("GLANCE_URL"), "-o refresh=1,cache_dir=" + cache);
    ASSERT_TRUE(m.mounted()) << m.Log();
    std::printf("mounted from the stored catalog in %.1f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    std::string state = Xattr(m.path(), "user.glancefs.catalog_state");
    EXPECT_EQ(state.rfind("stored (as of ", 0), 0u) << state;
    EXPECT_NE(m.Log().find("serving the catalog stored at"), std::string::npos) << m.Log();
    EXPECT_NE(MustSh("cat " + m.path() + "/metrics.prom").find("\nglancefs_catalog_stored 1\n"),
              std::string::npos);
    std::set<std::string> shown = Ls(m.path() + "/images");
    EXPECT_EQ(shown.count(cached_id) + shown.count(cached2_id) + shown.count(uncached_id), 3u);
    MustSh("cmp " + m.path() + "/images/" + cached_id + "/disk.raw " + cached);
    MustSh("cmp " + m.path() + "/images/" + cached2_id + "/disk.raw " + cached2);
    EXPECT_EQ(MustSh("readlink " + m.path() + "/by-name/rg-stored-cached"),
              "../images/" + cached_id + "\n");
    t0 = std::chrono::steady_clock::now();
    CmdResult r = Sh("cat " + m.path() + "/images/" + uncached_id + "/disk.raw > /dev/null", 60);
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_NE(r.out.find("Input/output error"), std::string::npos) << r.out;
    EXPECT_LT(secs, 20.0);

    // Glance answers again: the next refresh replaces the stored catalog, new images show.
    ASSERT_TRUE(GlanceUpAgain(*state_));
    std::string later = Upload(cached, "rg-stored-later", "raw");
    MustSh("for i in $(seq 100); do test -d " + m.path() + "/images/" + later +
           " && exit 0; sleep 0.2; done; exit 1");
    EXPECT_EQ(Xattr(m.path(), "user.glancefs.catalog_state"), "live");
    MustSh("cmp " + m.path() + "/images/" + uncached_id + "/disk.raw " + uncached);
    EXPECT_EQ(m.Unmount(), 0) << m.Log();
  }

  // Glance down again and the cache's data files damaged (bytes flipped all over them): every
  // read gives the right bytes or an error, never wrong bytes.
  MustSh(kFixture + "/glance-down.sh " + *state_, 120);
  std::string flipped = MustSh(
      "n=0; for f in $(find " + cache + "/data -type f -size +64k); do "
      "size=$(stat -c %s $f); for off in $(seq 4096 65536 $size); do "
      "printf '\\xde\\xad\\xbe\\xef' | dd of=$f bs=1 seek=$off conv=notrunc status=none; "
      "n=$((n+1)); done; done; echo $n");
  ASSERT_GT(std::stoi(flipped), 100) << "nothing to damage in " << cache << "/data";
  Mount m(Env("GLANCE_URL"), "-o refresh=1,cache_dir=" + cache);
  ASSERT_TRUE(m.mounted()) << m.Log();
  int right = 0, refused = 0;
  for (const auto& [id, file] : std::vector<std::pair<std::string, std::string>>{
           {cached_id, cached}, {cached2_id, cached2}, {uncached_id, uncached}}) {
    const std::string out = work_ + "/read-back";
    CmdResult r = Sh("dd if=" + m.path() + "/images/" + id + "/disk.raw of=" + out +
                     " bs=64k status=none", 60);
    if (r.status == 0) {
      EXPECT_EQ(Sh("cmp " + out + " " + file).status, 0) << "wrong bytes served for " << id;
      ++right;
    } else {
      EXPECT_NE(r.out.find("Input/output error"), std::string::npos) << r.out;
      ++refused;
    }
  }
  std::printf("damaged cache, Glance down: %d images read right, %d refused with EIO\n", right,
              refused);
  EXPECT_GT(refused, 0) << "the damage went unnoticed";
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

// Issue 5: touch queue/ for 8 images; kill -9 in the middle; a restart resumes without
// refetching what was complete; then every image reads correctly with Glance stopped.
TEST_F(RealGlanceTest, PrefetchQueueSurvivesKillNineAndServesOffline) {
  const int kImages = 8;
  std::vector<std::string> ids, files;
  for (int i = 0; i < kImages; ++i) {
    files.push_back(work_ + "/p" + std::to_string(i) + ".raw");
    MustSh("head -c 24M /dev/urandom > " + files.back());
    ids.push_back(Upload(files.back(), "rg-pf-" + std::to_string(i), "raw"));
  }
  const std::string cache = work_ + "/cache";
  std::set<std::string> done_before;
  {
    // 2 workers at 6 MB/s each: about 16 s for all, so the kill lands in the middle.
    Mount m(Env("GLANCE_URL"),
            "-o refresh=1,cache_dir=" + cache + ",prefetch_workers=2,prefetch_rate=6M");
    ASSERT_TRUE(m.mounted());
    for (int i = 0; i < kImages; ++i) {
      // By id, and for one of them by name (by-name/ resolves it).
      std::string entry = i == 3 ? "rg-pf-3" : ids[i];
      MustSh("touch " + Quote(m.path() + "/queue/" + entry));
    }
    EXPECT_EQ(Ls(m.path() + "/queue").size(), static_cast<size_t>(kImages));
    for (int tick = 0; tick < 600 && done_before.size() < 2; ++tick) {
      for (const auto& id : ids) {
        if (Xattr(m.path() + "/cache/" + id, "user.glancefs.state") == "verified") {
          done_before.insert(id);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ASSERT_GE(done_before.size(), 2u) << m.Log();
    ASSERT_LT(done_before.size(), static_cast<size_t>(kImages)) << "too fast to interrupt";
    m.Signal(SIGKILL);
  }
  Mount m(Env("GLANCE_URL"), "-o refresh=1,cache_dir=" + cache + ",prefetch_workers=4");
  ASSERT_TRUE(m.mounted());
  bool all = false;
  for (int tick = 0; tick < 1200 && !all; ++tick) {
    all = Ls(m.path() + "/queue").empty();
    for (const auto& id : ids) {
      all = all && Xattr(m.path() + "/cache/" + id, "user.glancefs.state") == "verified";
    }
    if (!all) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_TRUE(all) << MustSh("ls -l " + m.path() + "/queue " + m.path() + "/cache") << m.Log();
  for (const auto& id : done_before) {
    EXPECT_EQ(Xattr(m.path() + "/cache/" + id, "user.glancefs.bytes_fetched"), "0")
        << id << " was complete before the kill and was fetched again";
  }
  EXPECT_EQ(MustSh("stat -c %s " + m.path() + "/cache/" + ids[0]), "25165824\n");
  EXPECT_NE(MustSh("cat " + m.path() + "/metrics.prom").find("glancefs_cache_verified_total"),
            std::string::npos);

  MustSh(kFixture + "/glance-down.sh " + *state_, 120);  // stopped, data kept
  for (int i = 0; i < kImages; ++i) {
    EXPECT_EQ(Sh("cmp " + m.path() + "/images/" + ids[i] + "/disk.raw " + files[i]).status, 0)
        << ids[i];
  }
  EXPECT_EQ(Ls(m.path() + "/cache").size(), static_cast<size_t>(kImages));
  // rm cache/<id> evicts: offline, the data is then gone (EIO), never wrong.
  MustSh("rm " + m.path() + "/cache/" + ids[0]);
  EXPECT_EQ(Ls(m.path() + "/cache").size(), static_cast<size_t>(kImages - 1));
  MustSh("sync; echo 3 > /proc/sys/vm/drop_caches");  // the kernel's copy too
  CmdResult r = Sh("cmp " + m.path() + "/images/" + ids[0] + "/disk.raw " + files[0], 60);
  EXPECT_NE(r.status, 0);
  ASSERT_TRUE(GlanceUpAgain(*state_));
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

// Issue 3: killing glance-api during a read gives the reader EIO within the timeouts, never a
// hang, and the mount keeps listing from the last good catalog.
TEST_F(RealGlanceTest, KillingGlanceDuringAReadGivesEio) {
  std::string file = work_ + "/k.raw";
  MustSh("head -c 512M /dev/urandom > " + file);
  std::string id = Upload(file, "rg-kill", "raw");
  Mount m(Env("GLANCE_URL"), "-o refresh=1");
  ASSERT_TRUE(m.mounted());
  // A reader at about 50 MB/s: 10 s for the image; Glance dies after 1 s.
  std::string reader = work_ + "/reader.sh";
  WriteFile(reader,
            "python3 -c '\n"
            "import sys, time\n"
            "f = open(sys.argv[1], \"rb\", buffering=0)\n"
            "while True:\n"
            "    b = f.read(1 << 20)\n"
            "    if not b: break\n"
            "    time.sleep(0.02)\n"
            "' \"$1\" 2>&1\n");
  // Every fd redirected: Sh waits for its pipe to close.
  MustSh("bash " + reader + " " + m.path() + "/images/" + id + "/disk.raw > " + work_ +
         "/reader.out 2>&1 </dev/null & echo $! > " + work_ + "/reader.pid");
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto t0 = std::chrono::steady_clock::now();
  MustSh(kFixture + "/glance-down.sh --kill " + *state_, 120);  // kill -9, not a clean stop
  CmdResult waited = Sh("pid=$(cat " + work_ + "/reader.pid); for i in $(seq 600); do kill -0 "
                        "$pid 2>/dev/null || exit 0; sleep 0.1; done; exit 1");
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(waited.status, 0) << "the reader hung";
  EXPECT_LT(secs, 60.0);
  EXPECT_NE(ReadFile(work_ + "/reader.out").find("Input/output error"), std::string::npos)
      << "reader said: [" << ReadFile(work_ + "/reader.out") << "]" << m.Log();
  EXPECT_NE(MustSh("ls " + m.path() + "/images").find(id), std::string::npos);
  ASSERT_TRUE(GlanceUpAgain(*state_));
  MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + file);
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

}  // namespace
}  // namespace glancefs::itest
