#include "backends/dir/dir_catalog.h"
#include "backends/dir/cert_dir.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

namespace glancefs::backends {
namespace {

namespace fs = std::filesystem;

class DirCatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/glancefs-dircat-XXXXXX";
    dir_ = ::mkdtemp(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name, std::ios::binary) << text;
  }
  void AddImage(const std::string& id, const std::string& data, const std::string& extra = "") {
    Write(id, data);
    Write(id + ".json", R"({"id": ")" + id + R"(", "status": "active", "disk_format": "raw", )" +
                            extra + R"("size": )" + std::to_string(data.size()) + "}");
  }
  std::shared_ptr<const CatalogSnapshot> Refresh(DirCatalog& c) {
    auto snap = c.Refresh();
    EXPECT_TRUE(snap.ok()) << snap.status().ToString();
    return snap.ok() ? *snap : nullptr;
  }

  std::string dir_;
};

TEST_F(DirCatalogTest, ListsRecordsSortedById) {
  AddImage("bbb", "two");
  AddImage("aaa", "one");
  auto catalog = DirCatalog::Open(dir_);
  ASSERT_TRUE(catalog.ok());
  auto snap = Refresh(**catalog);
  ASSERT_EQ(snap->images.size(), 2u);
  EXPECT_EQ(snap->images[0]->id, "aaa");
  EXPECT_EQ(snap->images[1]->id, "bbb");
  EXPECT_EQ((*catalog)->Describe(), "dir:" + dir_);
}

TEST_F(DirCatalogTest, UnchangedCatalogKeepsItsSnapshot) {
  AddImage("aaa", "one");
  auto catalog = DirCatalog::Open(dir_);
  auto first = Refresh(**catalog);
  EXPECT_EQ(first, Refresh(**catalog));
  AddImage("ccc", "three");
  auto second = Refresh(**catalog);
  EXPECT_NE(first, second);
  EXPECT_EQ(second->images.size(), 2u);
  EXPECT_EQ(first->images[0], second->images[0]);  // unchanged records are reused
  fs::remove(dir_ + "/aaa.json");
  EXPECT_EQ(Refresh(**catalog)->images.size(), 1u);
}

TEST_F(DirCatalogTest, BadRecordsAreSkippedAndTheRestServes) {
  AddImage("good", "data");
  Write("broken.json", "{not json");
  Write("mismatch.json", R"({"id": "other"})");
  Write("notes.txt", "ignored");
  Write(".tmp.json", "ignored too");
  Write("bad id.json", R"({"id": "bad id"})");
  auto catalog = DirCatalog::Open(dir_);
  auto snap = Refresh(**catalog);
  ASSERT_EQ(snap->images.size(), 1u);
  EXPECT_EQ(snap->images[0]->id, "good");
}

TEST_F(DirCatalogTest, MissingOrShortDataFailsOnOpen) {
  AddImage("short", "12345");
  Write("short", "12");
  Write("missing.json", R"({"id": "missing", "status": "active", "size": 10})");
  auto catalog = DirCatalog::Open(dir_);
  auto snap = Refresh(**catalog);
  ASSERT_EQ(snap->images.size(), 2u);
  auto missing = (*catalog)->OpenData(*snap->Find("missing"));
  EXPECT_EQ(missing.status().code(), Status::Code::kIOError);
  auto short_one = (*catalog)->OpenData(*snap->Find("short"));
  EXPECT_TRUE(short_one.status().IsCorruption()) << short_one.status().ToString();
}

TEST_F(DirCatalogTest, ReadsDataAndHoles) {
  std::string data(3 << 20, '\0');
  data[0] = 'x';
  data[data.size() - 1] = 'y';
  AddImage("sparse", "");
  {
    int fd = ::open((dir_ + "/sparse").c_str(), O_WRONLY | O_TRUNC);
    ASSERT_EQ(::pwrite(fd, "x", 1, 0), 1);
    ASSERT_EQ(::pwrite(fd, "y", 1, data.size() - 1), 1);
    ::close(fd);
  }
  Write("sparse.json",
        R"({"id": "sparse", "status": "active", "size": )" + std::to_string(data.size()) + "}");
  auto catalog = DirCatalog::Open(dir_);
  auto snap = Refresh(**catalog);
  auto src = (*catalog)->OpenData(*snap->Find("sparse"));
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  std::vector<char> buf(data.size());
  ASSERT_TRUE((*src)->ReadAt(0, buf.size(), buf.data()).ok());
  EXPECT_EQ(std::string(buf.data(), buf.size()), data);
  auto first = (*src)->MapExtent(0);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->kind, Extent::Kind::kData);
  auto hole = (*src)->MapExtent(first->length);
  ASSERT_TRUE(hole.ok());
  // tmpfs and ext4 both report the middle of this file as a hole.
  EXPECT_EQ(hole->kind, Extent::Kind::kHole);
  EXPECT_LT((*src)->allocated_bytes(), data.size());
  EXPECT_EQ((*src)->ReadAt(data.size() - 1, 2, buf.data()).code(), Status::Code::kOutOfRange);
}

TEST_F(DirCatalogTest, VanishedDirectoryIsUnavailable) {
  AddImage("aaa", "one");
  auto catalog = DirCatalog::Open(dir_);
  Refresh(**catalog);
  fs::remove_all(dir_);
  auto snap = (*catalog)->Refresh();
  EXPECT_EQ(snap.status().code(), Status::Code::kUnavailable);
  fs::create_directory(dir_);
  EXPECT_TRUE((*catalog)->Refresh().ok());
}

TEST_F(DirCatalogTest, FifosNeverBlock) {
  Write("pipe.json", R"({"id": "pipe", "status": "active", "size": 10})");
  ASSERT_EQ(::mkfifo((dir_ + "/pipe").c_str(), 0644), 0);
  ASSERT_EQ(::mkfifo((dir_ + "/fifo.json").c_str(), 0644), 0);
  auto catalog = DirCatalog::Open(dir_);
  ::testing::internal::CaptureStderr();
  auto snap = Refresh(**catalog);  // fifo.json is not a regular file: ignored, said once
  Refresh(**catalog);
  std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(snap->images.size(), 1u);
  const std::string said = "ignoring fifo.json: not a regular file";
  ASSERT_NE(log.find(said), std::string::npos) << log;
  EXPECT_EQ(log.find(said, log.find(said) + 1), std::string::npos) << log;
  auto src = (*catalog)->OpenData(*snap->Find("pipe"));  // would block without O_NONBLOCK
  EXPECT_TRUE(src.status().IsCorruption()) << src.status().ToString();
}

TEST_F(DirCatalogTest, SymlinkedCatalogsCanBeSwapped) {
  std::string a = dir_ + "/a", b = dir_ + "/b", link = dir_ + "/current";
  fs::create_directory(a);
  fs::create_directory(b);
  Write("a/one.json", R"({"id": "one"})");
  Write("b/two.json", R"({"id": "two"})");
  fs::create_directory_symlink(a, link);
  auto catalog = DirCatalog::Open(link);
  EXPECT_EQ(Refresh(**catalog)->images[0]->id, "one");
  fs::remove(link);
  fs::create_directory_symlink(b, link);
  EXPECT_EQ(Refresh(**catalog)->images[0]->id, "two");
}

TEST_F(DirCatalogTest, OpenRefusesNonDirectories) {
  EXPECT_TRUE(DirCatalog::Open(dir_ + "/nope").status().IsNotFound());
  Write("file", "x");
  EXPECT_EQ(DirCatalog::Open(dir_ + "/file").status().code(), Status::Code::kInvalidArgument);
  EXPECT_FALSE(DirCatalog::Open("").ok());
}

// -o cert_dir: a certificate uuid from an image record can only name DIR/<uuid>.pem.
TEST_F(DirCatalogTest, CertDirServesUuidNamedPemFilesOnly) {
  Write("c0ffee-01.pem", "-----BEGIN CERTIFICATE-----\n");
  Write("secret", "not a certificate");
  ASSERT_EQ(::mkfifo((dir_ + "/fifo-1.pem").c_str(), 0644), 0);
  DirCertificateStore store(dir_);
  EXPECT_EQ(*store.Get("c0ffee-01"), "-----BEGIN CERTIFICATE-----\n");
  EXPECT_TRUE(store.Get("nope").status().IsNotFound());
  for (const char* bad : {"../secret", "secret.pem/..", "", "a/b", "x.pem"}) {
    EXPECT_EQ(store.Get(bad).status().code(), Status::Code::kInvalidArgument) << bad;
  }
  EXPECT_TRUE(store.Get("fifo-1").status().IsCorruption());  // never blocks
  EXPECT_EQ(DirCertificateStore(dir_ + "/gone").Get("c0ffee-01").status().code(),
            Status::Code::kUnavailable);
}

}  // namespace
}  // namespace glancefs::backends
