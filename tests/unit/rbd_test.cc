// Unit tests of the Ceph RBD backend's parts that need no cluster: location parsing, the
// order locations are tried in, and the keyring rules. tests/integration/rbd_test.cc runs the
// rest against a real Ceph.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "backends/common/image_record_json.h"
#include "backends/rbd/ceph_api.h"
#include "backends/rbd/ceph_clusters.h"
#include "backends/rbd/rbd_catalog.h"
#include "backends/rbd/rbd_url.h"

namespace glancefs::backends::rbd {
namespace {

constexpr const char* kFsid = "4c1a2b3c-1111-2222-3333-444455556666";

TEST(RbdUrl, ParsesGlanceStoreLocations) {
  auto loc = ParseRbdUrl(std::string("rbd://") + kFsid + "/images/0b1c-id/snap");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->fsid, kFsid);
  EXPECT_EQ(loc->pool, "images");
  EXPECT_EQ(loc->image, "0b1c-id");
  EXPECT_EQ(loc->snapshot, "snap");
  EXPECT_EQ(FormatRbdUrl(*loc), std::string("rbd://") + kFsid + "/images/0b1c-id/snap");
}

TEST(RbdUrl, DecodesPercentEscapesAndLowercasesTheFsid) {
  auto loc = ParseRbdUrl("rbd://4C1A2B3C-1111-2222-3333-444455556666/my%20pool/img/s%40x");
  ASSERT_TRUE(loc.ok()) << loc.status().ToString();
  EXPECT_EQ(loc->fsid, kFsid);
  EXPECT_EQ(loc->pool, "my pool");
  EXPECT_EQ(loc->snapshot, "s@x");
  EXPECT_EQ(*ParseRbdUrl(FormatRbdUrl(*loc)), *loc);
}

TEST(RbdUrl, RefusesAnythingElse) {
  const std::string f = kFsid;
  for (const std::string& bad : std::vector<std::string>{
           std::string("rbd://image-only"),          // legacy: no fsid, no pool
           "rbd://" + f + "/images/img",             // no snapshot
           "rbd://" + f + "/images/img/snap/extra",  // too many parts
           "rbd://" + f + "//img/snap",              // empty pool
           "rbd://" + f + "/images/img/",            // empty snapshot
           "rbd://" + f + "/images/a%2Fb/snap",      // an escaped '/'
           "rbd://" + f + "/images/a%00b/snap",      // NUL
           "rbd://" + f + "/images/a%0Ab/snap",      // newline
           "rbd://" + f + "/images/img/snap?x=1",    // query
           "rbd://" + f + "/images/img/snap#frag",   // fragment
           "rbd://" + f + "/images/img%zz/snap",     // bad escape
           "rbd://" + f + "/images/img%4/snap",      // short escape
           std::string("rbd://not-a-uuid/images/img/snap"),
           "file://" + f + "/images/img/snap",
           "RBD://" + f + "/images/img/snap",
           "rbd://" + f + "/images/" + std::string(300, 'x') + "/snap",
       }) {
    EXPECT_FALSE(ParseRbdUrl(bad).ok()) << bad;
  }
}

ImageRecord Record(const std::string& extra) {
  auto r = ParseImageRecord(R"({"id": "img1", "status": "active", "disk_format": "raw",
                                "size": 10)" + extra + "}");
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : ImageRecord{};
}

std::string Loc(const std::string& pool, const std::string& store) {
  return R"({"url": "rbd://)" + std::string(kFsid) + "/" + pool + R"(/img1/snap", "metadata": {"store": ")" +
         store + R"("}})";
}

TEST(RbdLocations, PreferredStoreFirstThenRecordOrderOtherSchemesNever) {
  ImageRecord r = Record(R"(, "locations": [)" + Loc("images", "ceph") + ", " +
                         R"({"url": "file:///etc/shadow", "metadata": {"store": "local"}}, )" +
                         R"({"url": "http://169.254.169.254/latest", "metadata": {}}, )" +
                         Loc("images2", "ceph2") + "]");
  auto all = RbdCandidates(r, "");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].first.pool, "images");
  EXPECT_EQ(all[1].first.pool, "images2");
  auto pref = RbdCandidates(r, "ceph2");
  ASSERT_EQ(pref.size(), 2u);
  EXPECT_EQ(pref[0].second, "ceph2");
  EXPECT_EQ(pref[1].second, "ceph");
  EXPECT_EQ(LocationsOf(r).size(), 4u);
}

TEST(RbdLocations, AStoreStillImportingIsSkipped) {
  ImageRecord r = Record(R"(, "os_glance_importing_to_stores": "ceph2", "locations": [)" +
                         Loc("images", "ceph") + ", " + Loc("images2", "ceph2") + "]");
  auto c = RbdCandidates(r, "ceph2");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].second, "ceph");
}

TEST(RbdLocations, DirectUrlWhenNoLocationsAndMalformedEntriesIgnored) {
  ImageRecord r = Record(R"(, "direct_url": "rbd://)" + std::string(kFsid) +
                         R"(/images/img1/snap", "locations": [1, {"url": 2}, {"metadata": {}}])");
  auto c = RbdCandidates(r, "");
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0].first.image, "img1");
  EXPECT_TRUE(RbdCandidates(Record(""), "").empty());
}

class CephConfDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/glancefs-cephconf-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void Write(const std::string& name, const std::string& text, mode_t mode = 0600) {
    std::ofstream(dir_ + "/" + name) << text;
    ::chmod((dir_ + "/" + name).c_str(), mode);
  }
  std::string dir_;
};

TEST_F(CephConfDir, KeyringIsTheConfsOrTheClusterDefault) {
  Write("site1.conf", std::string("[global]\nfsid = ") + kFsid + "\nmon_host = 127.0.0.1:1\n");
  Write("site2.conf", "[global]\nfsid = " + std::string(kFsid) +
                          "\nkeyring = " + dir_ + "/special.keyring\n");
  CephOptions options;
  options.conf_dir = dir_;
  options.user = "reader";
  CephClusters clusters(options);
  EXPECT_EQ(*clusters.KeyringOf("site1", dir_ + "/site1.conf"),
            dir_ + "/site1.client.reader.keyring");
  EXPECT_EQ(*clusters.KeyringOf("site2", dir_ + "/site2.conf"), dir_ + "/special.keyring");
}

TEST_F(CephConfDir, UnknownFsidMissingOrOpenKeyringAreClearErrors) {
  Write("site1.conf", std::string("[global]\nfsid = ") + kFsid + "\nmon_host = 127.0.0.1:1\n");
  CephOptions options;
  options.conf_dir = dir_;
  options.timeout_s = 1;
  CephClusters clusters(options);
  auto unknown = clusters.Pool("00000000-1111-2222-3333-444444444444", "images");
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(unknown.status().IsNotFound()) << unknown.status().ToString();

  auto missing = clusters.Pool(kFsid, "images");  // no site1.client.glance.keyring
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("site1.client.glance.keyring"), std::string::npos)
      << missing.status().ToString();

  Write("site1.client.glance.keyring", "[client.glance]\n\tkey = AQ==\n", 0644);
  CephClusters fresh(options);
  auto open = fresh.Pool(kFsid, "images");
  ASSERT_FALSE(open.ok());
  EXPECT_EQ(open.status().code(), Status::Code::kPermissionDenied) << open.status().ToString();
  EXPECT_NE(open.status().message().find("readable by others"), std::string::npos);
}

// Whether librbd is mapped into this process.
bool LibrbdMapped() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    if (line.find("/librbd.so") != std::string::npos) return true;
  }
  return false;
}

// glancefs does not link librbd: it is mapped when Ceph is first needed. CTest runs each test
// alone in a process of its own; run with others, an earlier test may have loaded it.
TEST(CephApi, LibrbdIsLoadedOnFirstUseOnly) {
  if (::testing::GTEST_FLAG(filter) == "CephApi.LibrbdIsLoadedOnFirstUseOnly") {
    EXPECT_FALSE(LibrbdMapped());
  }
  ASSERT_TRUE(LoadCeph().ok()) << LoadCeph().ToString();
  EXPECT_TRUE(LibrbdMapped());
  EXPECT_NE(Ceph().rbd_aio_readv, nullptr);
  EXPECT_NE(Ceph().rados_connect, nullptr);
  EXPECT_TRUE(LoadCeph().ok());  // once, and the same verdict after
}

TEST(CephError, MapsErrnos) {
  EXPECT_EQ(CephError(-ETIMEDOUT, "x").code(), Status::Code::kUnavailable);
  EXPECT_EQ(CephError(-ENOENT, "x").code(), Status::Code::kNotFound);
  EXPECT_EQ(CephError(-EACCES, "x").code(), Status::Code::kPermissionDenied);
  EXPECT_EQ(CephError(-EIO, "x").code(), Status::Code::kIOError);
}

}  // namespace
}  // namespace glancefs::backends::rbd
