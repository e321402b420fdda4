// The stored catalog: its codec, and a cache whose source does not answer at mount time.
#include "cache/stored_catalog.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "cache/cache_service.h"
#include "tests/fakes/fakes.h"

namespace glancefs::cache {
namespace {

using glancefs::testing::FakeCatalog;

CatalogSnapshot Sample() {
  CatalogSnapshot snap;
  for (int i = 0; i < 3; ++i) {
    auto r = std::make_shared<ImageRecord>();
    r->id = "id-" + std::to_string(i);
    if (i != 1) r->name = "name " + std::to_string(i);
    r->status = "active";
    r->disk_format = i == 2 ? "qcow2" : "raw";
    r->container_format = "bare";
    r->hidden = i == 1;
    r->size = 1000 + i;
    if (i == 2) r->virtual_size = 1 << 30;
    r->created_at = 1700000000 + i;
    r->updated_at = -5;  // whatever Glance says, even odd values
    if (i == 0) r->allocated_bytes = 512;
    r->data_version = "sha512:" + std::string(20, 'a' + i);
    r->properties = {{"id", r->id}, {"hw_disk_bus", "virtio"}, {"empty", ""}, {"bin", std::string("a\0b", 3)}};
    r->record_json = "{\"id\": \"" + r->id + "\"}\n";
    snap.images.push_back(r);
  }
  return snap;
}

TEST(StoredCatalog, RoundTripsEveryField) {
  CatalogSnapshot snap = Sample();
  auto decoded = DecodeCatalog(EncodeCatalog(snap, 1234567));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->taken_at, 1234567);
  ASSERT_EQ(decoded->snapshot->images.size(), snap.images.size());
  for (size_t i = 0; i < snap.images.size(); ++i) {
    const ImageRecord& a = *snap.images[i];
    const ImageRecord& b = *decoded->snapshot->images[i];
    EXPECT_EQ(a, b);
    EXPECT_EQ(a.id, b.id);
    EXPECT_EQ(a.name, b.name);
    EXPECT_EQ(a.status, b.status);
    EXPECT_EQ(a.disk_format, b.disk_format);
    EXPECT_EQ(a.container_format, b.container_format);
    EXPECT_EQ(a.hidden, b.hidden);
    EXPECT_EQ(a.size, b.size);
    EXPECT_EQ(a.virtual_size, b.virtual_size);
    EXPECT_EQ(a.created_at, b.created_at);
    EXPECT_EQ(a.updated_at, b.updated_at);
    EXPECT_EQ(a.properties, b.properties);
  }
  auto empty = DecodeCatalog(EncodeCatalog(CatalogSnapshot{}, 0));
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->snapshot->images.empty());
}

TEST(StoredCatalog, AnyDamageIsCorruptionNeverAPartialCatalog) {
  const std::string good = EncodeCatalog(Sample(), 99);
  for (size_t i = 0; i < good.size(); i += 7) {
    std::string bad = good;
    bad[i] ^= 0x20;
    auto d = DecodeCatalog(bad);
    EXPECT_FALSE(d.ok()) << "flipped byte " << i;
    if (!d.ok()) {
      EXPECT_TRUE(d.status().IsCorruption()) << d.status().ToString();
    }
  }
  for (size_t n : {size_t{0}, size_t{10}, size_t{27}, good.size() / 2, good.size() - 1}) {
    EXPECT_FALSE(DecodeCatalog(good.substr(0, n)).ok()) << "truncated to " << n;
  }
  EXPECT_FALSE(DecodeCatalog(good + "x").ok());
}

class StoredCatalogServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("glancefs-stored-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::unique_ptr<CacheService> Open() {
    ServiceOptions o;
    o.dir = dir_.string();
    o.cache.now = [this] { return now_; };
    auto service = CacheService::Open(&catalog_, o);
    EXPECT_TRUE(service.ok()) << service.status().ToString();
    return service.ok() ? std::move(service).value() : nullptr;
  }
  static std::string Info(Catalog& c, const std::string& key) {
    for (auto& [k, v] : c.Info()) {
      if (k == key) return v;
    }
    return "";
  }
  std::filesystem::path dir_;
  FakeCatalog catalog_;
  int64_t now_ = 1700000000;
};

TEST_F(StoredCatalogServiceTest, AnUnreachableSourceAtMountServesTheLastGoodCatalog) {
  catalog_.Add("a", "alpha", "raw", "AAAA");
  catalog_.Add("b", "beta", "raw", "BBBB");
  {
    auto service = Open();
    auto wrapped = service->WrapCatalog();
    ASSERT_TRUE(wrapped->Refresh().ok());
    EXPECT_EQ(Info(*wrapped, "catalog_state"), "live");
    now_ += 100;
    ASSERT_TRUE(wrapped->Refresh().ok());  // unchanged: only the time it answered is kept
  }
  catalog_.fail_refresh = true;
  now_ += 50;
  auto service = Open();
  auto wrapped = service->WrapCatalog();
  auto snap = wrapped->Refresh();
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  ASSERT_EQ((*snap)->images.size(), 2u);
  EXPECT_EQ((*snap)->images[1]->name, "beta");
  std::string state = Info(*wrapped, "catalog_state");
  EXPECT_EQ(state.rfind("stored (as of 2023-11-14T22:15:00Z, 50 s old", 0), 0u) << state;
  // Later failures keep it (the file system keeps its snapshot); the first answer replaces it.
  EXPECT_FALSE(wrapped->Refresh().ok());
  catalog_.fail_refresh = false;
  catalog_.Add("c", "gamma", "raw", "CCCC");
  snap = wrapped->Refresh();
  ASSERT_TRUE(snap.ok());
  EXPECT_EQ((*snap)->images.size(), 3u);
  EXPECT_EQ(Info(*wrapped, "catalog_state"), "live");
}

TEST_F(StoredCatalogServiceTest, WithNothingStoredTheFailureIsReported) {
  catalog_.fail_refresh = true;
  auto service = Open();
  auto wrapped = service->WrapCatalog();
  auto snap = wrapped->Refresh();
  ASSERT_FALSE(snap.ok());
  EXPECT_NE(snap.status().message().find("injected refresh failure"), std::string::npos);
}

}  // namespace
}  // namespace glancefs::cache
