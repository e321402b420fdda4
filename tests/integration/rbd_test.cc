// glancefs reading images straight from a real Ceph RBD cluster (tests/fixtures/ceph: one mon,
// one BlueStore OSD) behind a real Glance with two rbd stores and a file store
// (tests/fixtures/glance --stores). One cluster and one Glance serve the whole binary, which
// CTest runs as one test: starting Ceph costs about 15 s.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace glancefs::itest {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kFixtures = std::string(GLANCEFS_SOURCE_DIR) + "/tests/fixtures";

class RbdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    state_ = new std::string(MakeTempDir("glancefs-rbd"));
    env_ = new std::map<std::string, std::string>();
    // The first run installs Ceph and Glance (minutes); later ones start them (about 20 s).
    CmdResult ceph = Sh(kFixtures + "/ceph/ceph-up.sh --port " + std::to_string(FreePort()) + " " +
                            *state_ + "/ceph 2>" + *state_ + "/ceph-up.log",
                        900);
    ASSERT_EQ(ceph.status, 0) << "the Ceph fixture did not start:\n"
                              << ceph.out << ReadFile(*state_ + "/ceph-up.log");
    *env_ = ParseExports(ceph.out);
    ASSERT_FALSE(Env("CEPH_CONF").empty()) << ceph.out;
    CmdResult glance =
        Sh(kFixtures + "/glance/glance-up.sh --port " + std::to_string(FreePort()) +
               " --stores ceph:rbd:images,ceph2:rbd:images2,local:file --rbd-thin --ceph-conf " +
               Env("CEPH_CONF") + " " + *state_ + "/glance 2>" + *state_ + "/glance-up.log",
           900);
    ASSERT_EQ(glance.status, 0) << "the Glance fixture did not start:\n"
                                << glance.out << ReadFile(*state_ + "/glance-up.log");
    for (auto& [k, v] : ParseExports(glance.out)) (*env_)[k] = v;
    ASSERT_FALSE(Env("GLANCE_URL").empty()) << glance.out;
    // What a compute node has: /etc/ceph/<cluster>.conf without a keyring line, and the
    // read-only client's keyring beside it, mode 0600.
    *conf_dir_ = MakeTempDir("glancefs-etc-ceph");
    MustSh("sed '/^[[:space:]]*keyring[[:space:]]*=/d' " + Env("CEPH_CONF") + " > " + *conf_dir_ +
           "/ceph.conf && install -m 600 " + Env("CEPH_STATE_DIR") +
           "/ceph.client.reader.keyring " + *conf_dir_ + "/ceph.client.reader.keyring");
  }
  static void TearDownTestSuite() {
    Sh("kill -CONT " + Env("CEPH_OSD_PID") + " 2>/dev/null");
    Sh(kFixtures + "/glance/glance-down.sh --purge " + *state_ + "/glance", 120);
    Sh(kFixtures + "/ceph/ceph-down.sh --purge " + *state_ + "/ceph", 120);
    fs::remove_all(*state_);
    fs::remove_all(*conf_dir_);
  }
  static std::string Env(const std::string& k) {
    auto it = env_->find(k);
    return it == env_->end() ? "" : it->second;
  }
  void SetUp() override {
    ASSERT_FALSE(Env("GLANCE_URL").empty()) << "no Glance and Ceph: see the suite's set-up failure";
    work_ = MakeTempDir("glancefs-rbdw");
  }
  void TearDown() override { fs::remove_all(work_); }

  static std::string Curl(const std::string& args) {
    return MustSh("curl -sS --fail-with-body " + args, 300);
  }
  static nlohmann::json Record(const std::string& id) {
    return nlohmann::json::parse(Curl(Env("GLANCE_URL") + "/v2/images/" + id));
  }
  // Creates an image in the default store (ceph) and uploads FILE; returns its id.
  static std::string Upload(const std::string& file, const std::string& name,
                            const std::string& disk_format = "raw") {
    std::string body = "{\"name\": \"" + name + "\", \"disk_format\": \"" + disk_format +
                       "\", \"container_format\": \"bare\"}";
    auto created = nlohmann::json::parse(Curl("-X POST -H 'Content-Type: application/json' -d " +
                                              Quote(body) + " " + Env("GLANCE_URL") + "/v2/images"));
    std::string id = created["id"];
    Curl("-X PUT -H 'Content-Type: application/octet-stream' -T " + file + " " +
         Env("GLANCE_URL") + "/v2/images/" + id + "/file");
    EXPECT_EQ(Record(id)["status"], "active");
    return id;
  }
  // Glance's copy-image import into `store`; waits until the record lists it.
  static void CopyTo(const std::string& id, const std::string& store) {
    Curl("-X POST -H 'Content-Type: application/json' -d " +
         Quote("{\"method\": {\"name\": \"copy-image\"}, \"stores\": [\"" + store + "\"]}") + " " +
         Env("GLANCE_URL") + "/v2/images/" + id + "/import");
    for (int i = 0; i < 600; ++i) {
      auto record = Record(id);
      std::string stores = record.value("stores", "");
      if (stores.find(store) != std::string::npos) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ADD_FAILURE() << "copy-image of " << id << " to " << store << " did not finish";
  }
  static std::string RandomFile(const std::string& path, const std::string& size) {
    MustSh("head -c " + size + " /dev/urandom > " + path);
    return path;
  }
  // The mount options for a node with conf directory `dir` and the read-only client. The
  // default rbd_timeout (30 s) unless a test shortens it: under load (eight mounts, ASan) a
  // healthy OSD can take seconds to answer.
  static std::string NodeOptions(const std::string& dir, const std::string& extra = "") {
    return "-o refresh=1,rbd_user=reader,rbd_retry=2,ceph_conf_dir=" + dir + extra;
  }
  static std::string Xattr(const std::string& path, const std::string& name) {
    return MustSh("getfattr --absolute-names --only-values -n " + name + " " + path);
  }
  // The value of a metrics.prom series (0 if absent).
  static uint64_t Metric(const Mount& m, const std::string& series) {
    std::istringstream in(ReadFile(m.path() + "/metrics.prom"));
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(series + " ", 0) == 0) return std::stoull(line.substr(series.size() + 1));
    }
    return 0;
  }
  // GET /v2/images/<id>/file requests in glance-api's log.
  static int FileGets(const std::string& id) {
    CmdResult r = Sh("grep -c 'GET /v2/images/" + id + "/file' " + *state_ +
                     "/glance/log/glance-api.log");
    return r.status == 0 || r.status == 1 ? std::stoi(r.out) : -1;
  }
  static double Seconds(Clock::time_point since) {
    return std::chrono::duration<double>(Clock::now() - since).count();
  }

  static std::string* state_;
  static std::string* conf_dir_;
  static std::map<std::string, std::string>* env_;
  std::string work_;
};

std::string* RbdTest::state_ = nullptr;
std::string* RbdTest::conf_dir_ = new std::string();
std::map<std::string, std::string>* RbdTest::env_ = nullptr;

TEST_F(RbdTest, ListsWhatGlanceListsAndReadsRawAndQcow2FromCeph) {
  std::string raw = RandomFile(work_ + "/a.raw", "24M");
  std::string qcow = work_ + "/b.qcow2";
  MustSh("truncate -s 64M " + work_ + "/b.raw && head -c 5M /dev/urandom | dd of=" + work_ +
         "/b.raw bs=1M seek=20 conv=notrunc status=none && qemu-img convert -f raw -O qcow2 " +
         work_ + "/b.raw " + qcow);
  std::string raw_id = Upload(raw, "rbd-raw");
  std::string qcow_id = Upload(qcow, "rbd-qcow2", "qcow2");
  auto record = Record(raw_id);
  ASSERT_TRUE(record.contains("locations")) << record.dump();
  EXPECT_EQ(record["locations"][0]["url"].get<std::string>().rfind("rbd://" + Env("CEPH_FSID"), 0),
            0u)
      << record.dump();

  Mount m(Env("GLANCE_URL"), NodeOptions(*conf_dir_));
  ASSERT_TRUE(m.mounted());
  std::set<std::string> listed;
  auto page = nlohmann::json::parse(Curl(Env("GLANCE_URL") + "/v2/images?limit=1000"));
  for (const auto& image : page["images"]) listed.insert(image["id"].get<std::string>());
  std::set<std::string> shown;
  std::istringstream ls(MustSh("ls " + m.path() + "/images"));
  for (std::string line; std::getline(ls, line);) shown.insert(line);
  EXPECT_EQ(shown, listed);

  const std::string images = m.path() + "/images/";
  const int gets_before = FileGets(raw_id) + FileGets(qcow_id);
  MustSh("cmp " + images + raw_id + "/disk.raw " + raw);
  MustSh("qemu-img convert -f qcow2 -O raw " + qcow + " " + work_ + "/b.oracle.raw");
  MustSh("cmp " + images + qcow_id + "/disk.raw " + work_ + "/b.oracle.raw");
  MustSh("cmp " + images + qcow_id + "/disk.qcow2 " + qcow);
  EXPECT_EQ(Xattr(images + raw_id, "user.glancefs.source"), "rbd:ceph");
  EXPECT_EQ(FileGets(raw_id) + FileGets(qcow_id), gets_before) << "glance-api served image data";
  EXPECT_GE(Metric(m, "glancefs_source_bytes_total{source=\"rbd:ceph\"}"), 24u << 20);
  EXPECT_EQ(Metric(m, "glancefs_source_bytes_total{source=\"upstream\"}"), 0u);
}

// Glance's thin upload (rbd_thin_provisioning) skips zero chunks: an 8 GiB image holding
// 256 MiB has 256 MiB of RBD objects, and a sparse copy reads exactly those from Ceph.
TEST_F(RbdTest, ThinImageCopiesSparselyReadingOnlyItsData) {
  std::string raw = work_ + "/thin.raw";
  MustSh("truncate -s 8G " + raw);
  for (const char* seek_mib : {"0", "2048", "4160", "8128"}) {  // 4 x 64 MiB, the last at the end
    MustSh("head -c 64M /dev/urandom | dd of=" + raw + " bs=1M seek=" + seek_mib +
           " conv=notrunc status=none");
  }
  std::string id = Upload(raw, "rbd-thin");
  MustSh("test \"$(rbd -c " + Env("CEPH_CONF") + " --id reader du images/" + id +
         "@snap --format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"images\"][0][\"used_size\"])')\" = 268435456");

  Mount m(Env("GLANCE_URL"), NodeOptions(*conf_dir_));
  ASSERT_TRUE(m.mounted());
  const std::string disk = m.path() + "/images/" + id + "/disk.raw";
  // The allocation is learned in the background and shown as st_blocks at a later refresh:
  // cp and rsync look at st_blocks to decide whether a file is sparse.
  MustSh("for i in $(seq 200); do [ $(stat -c %b " + disk +
             ") = 524288 ] && exit 0; sleep 0.1; done; stat " + disk + "; exit 1",
         60);
  // SEEK_DATA/SEEK_HOLE land on the RBD allocation.
  EXPECT_EQ(MustSh("python3 -c 'import os,sys\n"
                   "fd=os.open(sys.argv[1],os.O_RDONLY); end=os.fstat(fd).st_size; off=0; out=[]\n"
                   "while off < end:\n"
                   "  try: d=os.lseek(fd,off,os.SEEK_DATA)\n"
                   "  except OSError: break\n"
                   "  h=os.lseek(fd,d,os.SEEK_HOLE); out.append(\"%d-%d\" % (d>>20,h>>20)); off=h\n"
                   "print(\" \".join(out))' " +
                   disk),
            "0-64 2048-2112 4160-4224 8128-8192\n");
  auto start = Clock::now();
  MustSh("cp --sparse=always " + disk + " " + work_ + "/copy.raw", 300);
  double seconds = Seconds(start);
  MustSh("cmp " + raw + " " + work_ + "/copy.raw", 300);
  uint64_t fetched = Metric(m, "glancefs_source_bytes_total{source=\"rbd:ceph\"}");
  EXPECT_EQ(fetched, 256u << 20) << "bytes read from Ceph";
  uint64_t used = std::stoull(MustSh("du -B1 " + work_ + "/copy.raw | cut -f1"));
  EXPECT_LE(used, 300u << 20);
  std::printf("cp --sparse=always of 8 GiB holding 256 MiB: %.2f s, %llu bytes from Ceph\n",
              seconds, static_cast<unsigned long long>(fetched));
  EXPECT_LT(seconds, 30);
}

// Eight nodes (separate processes and caches) cold-read one 1 GiB image at once: each reads
// Ceph, and glance-api serves no image data.
TEST_F(RbdTest, EightNodesReadFromCephAndGlanceApiServesNoData) {
  std::string raw = RandomFile(work_ + "/big.raw", "1G");
  std::string id = Upload(raw, "rbd-eight");
  std::vector<std::unique_ptr<Mount>> mounts;
  for (int i = 0; i < 8; ++i) {
    mounts.push_back(std::make_unique<Mount>(Env("GLANCE_URL"), NodeOptions(*conf_dir_)));
    ASSERT_TRUE(mounts.back()->mounted());
  }
  std::string cmd;
  for (auto& m : mounts) cmd += "cmp " + m->path() + "/images/" + id + "/disk.raw " + raw + " & ";
  cmd += "fail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail";
  auto start = Clock::now();
  MustSh(cmd, 600);
  std::printf("8 nodes x 1 GiB cold from Ceph: %.1f s\n", Seconds(start));
  EXPECT_EQ(FileGets(id), 0) << "glance-api served image data";
  for (auto& m : mounts) {
    uint64_t fetched = Metric(*m, "glancefs_source_bytes_total{source=\"rbd:ceph\"}");
    EXPECT_GE(fetched, 1u << 30);
    EXPECT_LE(fetched, (1u << 30) + (64u << 20));
  }
}

// librbd reads a deleted image's objects as zeros: glancefs must give EIO, never those zeros.
TEST_F(RbdTest, ImageDeletedWhileOpenGivesEioNeverZeros) {
  std::string raw = RandomFile(work_ + "/del.raw", "256M");
  std::string id = Upload(raw, "rbd-delete");
  Mount m(Env("GLANCE_URL"), NodeOptions(*conf_dir_, ",readahead_max=0"));
  ASSERT_TRUE(m.mounted());
  const std::string disk = m.path() + "/images/" + id + "/disk.raw";
  // fd 3 stays open across the delete; the first MiB is read (and cached) before it.
  std::string script = "exec 3<" + disk + "; dd bs=1M count=1 <&3 of=" + work_ +
                       "/head status=none || exit 9; curl -sS --fail-with-body -X DELETE " +
                       Env("GLANCE_URL") + "/v2/images/" + id +
                       " || exit 8; sleep 1; dd bs=1M skip=199 count=8 <&3 of=" + work_ +
                       "/tail status=none";
  CmdResult r = Sh(script, 120);
  EXPECT_NE(r.status, 0) << "read after the delete succeeded";
  EXPECT_NE(r.status, 8) << r.out;
  EXPECT_NE(r.status, 9) << r.out;
  EXPECT_NE(r.out.find("Input/output error"), std::string::npos) << r.out;
  MustSh("cmp -n 1048576 " + work_ + "/head " + raw);
  // Whatever did come back of the tail is the image's bytes, not zeros.
  MustSh("n=$(stat -c %s " + work_ + "/tail); test $n = 0 || cmp -n $n " + work_ +
         "/tail <(dd if=" + raw + " bs=1M skip=199 count=8 status=none)");
  EXPECT_NE(m.Log().find("was deleted from the store"), std::string::npos) << m.Log();
}

// A hung OSD: EIO within the timeouts, `ls` answers, and the same mount reads again after.
TEST_F(RbdTest, HungOsdGivesEioInBoundedTimeAndRecoversWithoutRemount) {
  std::string raw = RandomFile(work_ + "/osd.raw", "64M");
  std::string id = Upload(raw, "rbd-osd");
  Mount m(Env("GLANCE_URL"), NodeOptions(*conf_dir_, ",readahead_max=0,rbd_timeout=3"));
  ASSERT_TRUE(m.mounted());
  const std::string disk = m.path() + "/images/" + id + "/disk.raw";
  MustSh("dd if=" + disk + " bs=64k count=1 of=/dev/null status=none");  // opened from Ceph
  MustSh("kill -STOP " + Env("CEPH_OSD_PID"));
  auto start = Clock::now();
  CmdResult r = Sh("dd if=" + disk + " bs=1M skip=40 count=1 of=/dev/null status=none", 60);
  double seconds = Seconds(start);
  MustSh("ls " + m.path() + "/images >/dev/null", 10);
  MustSh("kill -CONT " + Env("CEPH_OSD_PID"));
  EXPECT_NE(r.status, 0) << "a read from a stopped OSD succeeded";
  EXPECT_NE(r.out.find("Input/output error"), std::string::npos) << r.out;
  EXPECT_LE(seconds, 2 * 3 + 3) << "rbd_timeout=3";
  std::printf("read with the OSD stopped: EIO after %.1f s (rbd_timeout=3)\n", seconds);
  MustSh("cmp " + disk + " " + raw, 120);
}

// A node whose conf for the location's cluster is wrong reads through glance-api instead, with
// a clear log line, and the mount comes up in bounded time.
TEST_F(RbdTest, UnreachableOrMisconfiguredClusterFallsBackToGlanceApi) {
  std::string raw = RandomFile(work_ + "/fb.raw", "8M");
  std::string id = Upload(raw, "rbd-fallback");
  struct Case {
    std::string name;
    std::string setup;  // shell, run in the case's conf dir
    std::string logged;
  };
  const std::string conf = "sed '/^[[:space:]]*keyring[[:space:]]*=/d' " + Env("CEPH_CONF");
  const std::string keyring = Env("CEPH_STATE_DIR") + "/ceph.client.reader.keyring";
  const Case cases[] = {
      {"dead monitor",
       conf + " | sed -E 's/^([[:space:]]*mon[ _]host[[:space:]]*=).*/\\1 127.0.0.1:" +
           std::to_string(FreePort()) + "/' > ceph.conf && install -m 600 " + keyring + " .",
       "cannot connect"},
      {"wrong keyring",
       conf + " > ceph.conf && printf '[client.reader]\\n\\tkey = AQBzOqNlAAAAABAAWXhX3uQOI4cL5r6VeNdsJw==\\n' "
              "> ceph.client.reader.keyring && chmod 600 ceph.client.reader.keyring",
       "cannot connect"},
      {"unknown fsid", conf + " | sed -E 's/^([[:space:]]*fsid[[:space:]]*=).*/\\1 " +
                           "11111111-2222-3333-4444-555555555555/' > ceph.conf && install -m 600 " +
                           keyring + " .",
       "no conf in"},
      {"keyring readable by others",
       conf + " > ceph.conf && install -m 644 " + keyring + " .", "readable by others"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    std::string dir = work_ + "/" + std::to_string(&c - cases);
    MustSh("mkdir -p " + dir + " && cd " + dir + " && " + c.setup);
    auto start = Clock::now();
    Mount m(Env("GLANCE_URL"), NodeOptions(dir, ",rbd_timeout=3"));
    ASSERT_TRUE(m.mounted());
    EXPECT_LT(Seconds(start), 5);
    MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + raw, 120);
    EXPECT_EQ(Xattr(m.path() + "/images/" + id, "user.glancefs.source"), "upstream");
    EXPECT_NE(m.Log().find(c.logged), std::string::npos) << m.Log();
    EXPECT_NE(m.Log().find("skipped"), std::string::npos) << m.Log();
  }
}

// -o store= picks that store's location, and falls back to another when it is missing or fails.
TEST_F(RbdTest, StoreOptionPrefersItsLocationAndFallsBack) {
  std::string raw = RandomFile(work_ + "/st.raw", "8M");
  std::string both = Upload(raw, "rbd-both");
  std::string one = Upload(raw, "rbd-one");
  CopyTo(both, "ceph2");
  ASSERT_EQ(Record(both)["locations"].size(), 2u) << Record(both).dump();
  {
    Mount m(Env("GLANCE_URL"), NodeOptions(*conf_dir_, ",store=ceph2"));
    ASSERT_TRUE(m.mounted());
    MustSh("cmp " + m.path() + "/images/" + both + "/disk.raw " + raw);
    MustSh("cmp " + m.path() + "/images/" + one + "/disk.raw " + raw);
    EXPECT_EQ(Xattr(m.path() + "/images/" + both, "user.glancefs.source"), "rbd:ceph2");
    EXPECT_EQ(Xattr(m.path() + "/images/" + one, "user.glancefs.source"), "rbd:ceph");
  }
  // client.reader loses its caps on images2: the ceph2 location fails, ceph serves.
  const std::string admin = "ceph -c " + Env("CEPH_CONF") + " --id admin --keyring " +
                            Env("CEPH_STATE_DIR") + "/ceph.client.admin.keyring ";
  auto caps = nlohmann::json::parse(MustSh(admin + "auth get client.reader --format json 2>/dev/null"));
  const std::string restore = admin + "auth caps client.reader mon " +
                              Quote(caps[0]["caps"]["mon"].get<std::string>()) + " osd " +
                              Quote(caps[0]["caps"]["osd"].get<std::string>());
  MustSh(admin +
         "auth caps client.reader mon 'profile rbd' osd 'profile rbd-read-only pool=images'");
  Mount m(Env("GLANCE_URL"), NodeOptions(*conf_dir_, ",store=ceph2"));
  ASSERT_TRUE(m.mounted());
  MustSh("cmp " + m.path() + "/images/" + both + "/disk.raw " + raw);
  EXPECT_EQ(Xattr(m.path() + "/images/" + both, "user.glancefs.source"), "rbd:ceph");
  EXPECT_NE(m.Log().find("store ceph2) skipped"), std::string::npos) << m.Log();
  MustSh(restore);
}

// A local catalog's record names locations: only rbd:// ones of a configured cluster are read;
// a file path, a URL, an unknown cluster and a store still importing are never followed.
TEST_F(RbdTest, CatalogRecordsCannotMakeGlancefsOpenPathsOrUrls) {
  std::string raw = RandomFile(work_ + "/loc.raw", "4M");
  std::string id = Upload(raw, "rbd-local");
  auto record = Record(id);
  std::string ceph_url = record["locations"][0]["url"];
  std::string unknown = ceph_url;
  unknown.replace(6, 36, "11111111-2222-3333-4444-555555555555");
  record["locations"] = nlohmann::json::array({
      {{"url", "file:///etc/shadow"}, {"metadata", {{"store", "local"}}}},
      {{"url", "http://127.0.0.1:1/secret"}, {"metadata", nlohmann::json::object()}},
      {{"url", unknown}, {"metadata", {{"store", "far"}}}},
      {{"url", ceph_url}, {"metadata", {{"store", "importing"}}}},
      {{"url", ceph_url}, {"metadata", {{"store", "ceph"}}}},
  });
  record["os_glance_importing_to_stores"] = "importing";
  record["direct_url"] = "file:///etc/passwd";
  std::string catalog = work_ + "/catalog";
  fs::create_directory(catalog);
  WriteFile(catalog + "/" + id + ".json", record.dump());
  WriteFile(catalog + "/" + id, "not the image: the catalog's own data file\n");
  MustSh("truncate -s " + std::to_string(4 << 20) + " " + catalog + "/" + id);
  {
    Mount m("dir:" + catalog, NodeOptions(*conf_dir_));
    ASSERT_TRUE(m.mounted());
    MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + raw);
    EXPECT_EQ(Xattr(m.path() + "/images/" + id, "user.glancefs.source"), "rbd:ceph");
    EXPECT_NE(m.Log().find("still importing"), std::string::npos) << m.Log();
  }
  // Without Ceph (and without the cache, whose hash check would refuse these bytes) the
  // catalog's own data file serves it.
  Mount m("dir:" + catalog, "-o refresh=1,norbd,nocache");
  ASSERT_TRUE(m.mounted());
  MustSh("cmp " + m.path() + "/images/" + id + "/disk.raw " + catalog + "/" + id);
}

}  // namespace
}  // namespace glancefs::itest
