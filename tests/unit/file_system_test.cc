#include "fs/core/file_system.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "tests/fakes/fakes.h"

namespace glancefs::core {
namespace {

using glancefs::testing::FakeCatalog;
using Kind = Invalidation::Kind;

class FileSystemTest : public ::testing::Test {
 protected:
  FileSystemTest() : fs_(&catalog_, FsOptions{}) {}
  void Refresh() {
    inv_.clear();
    ASSERT_TRUE(fs_.Refresh(&inv_).ok());
  }
  uint64_t Lookup(uint64_t parent, const std::string& name) {
    auto st = fs_.Lookup(parent, name);
    EXPECT_TRUE(st.ok()) << name << ": " << st.status().ToString();
    return st.ok() ? st->st_ino : 0;
  }
  bool Has(Kind kind, uint64_t ino, const std::string& name = "") {
    return std::any_of(inv_.begin(), inv_.end(), [&](const Invalidation& i) {
      return i.kind == kind && i.ino == ino && i.name == name;
    });
  }

  FakeCatalog catalog_;
  FileSystem fs_;
  std::vector<Invalidation> inv_;
};

TEST_F(FileSystemTest, TreeAndAttributes) {
  catalog_.Add("img1", "cirros", "raw", "hello world", 1700000000);
  catalog_.Add("img2", "", "qcow2", glancefs::testing::TinyQcow2());
  catalog_.Add("bad", "", "qcow2", "not a qcow2");
  Refresh();
  auto root = fs_.GetAttr(kRootIno);
  ASSERT_TRUE(root.ok());
  EXPECT_TRUE(S_ISDIR(root->st_mode));
  EXPECT_EQ(fs_.GetAttr(kImagesIno)->st_nlink, 5u);  // 2 + three images
  uint64_t img = Lookup(kImagesIno, "img1");
  auto dir = fs_.GetAttr(img);
  EXPECT_EQ(dir->st_mode, S_IFDIR | 0555);
  EXPECT_EQ(dir->st_mtim.tv_sec, 1700000000);
  uint64_t raw = Lookup(img, "disk.raw");
  auto st = fs_.GetAttr(raw);
  EXPECT_EQ(st->st_mode, S_IFREG | 0444);
  EXPECT_EQ(st->st_size, 11);
  // A raw image's qcow2 view is synthesized: a header cluster, refcounts, L1, L2, one data cluster.
  EXPECT_GT(fs_.GetAttr(Lookup(img, "disk.qcow2"))->st_size, 65536);
  uint64_t q = Lookup(kImagesIno, "img2");
  EXPECT_EQ(fs_.GetAttr(Lookup(q, "disk.qcow2"))->st_size, 72);
  EXPECT_EQ(fs_.GetAttr(Lookup(q, "disk.raw"))->st_size, 0);  // the decoded virtual size
  EXPECT_EQ(**fs_.GetXattr(q, "user.glancefs.format"), "qcow2");
  EXPECT_FALSE(*fs_.GetXattr(q, "user.glancefs.refused"));
  // Bytes that contradict the record: no disk views, and the reason as an xattr.
  uint64_t bad = Lookup(kImagesIno, "bad");
  EXPECT_TRUE(fs_.Lookup(bad, "disk.raw").status().IsNotFound());
  EXPECT_TRUE(fs_.Lookup(bad, "disk.qcow2").status().IsNotFound());
  EXPECT_EQ(**fs_.GetXattr(bad, "user.glancefs.refused"),
            "the record says qcow2 but the bytes are raw");
  EXPECT_EQ(fs_.OpenDir(bad)->size(), 4u);  // ., .., metadata.json, format.json
  EXPECT_TRUE(fs_.Lookup(kImagesIno, "nope").status().IsNotFound());
  EXPECT_TRUE(fs_.Lookup(kRootIno, "nope").status().IsNotFound());
  EXPECT_FALSE(fs_.Lookup(raw, "x").ok());  // not a directory
  uint64_t link = Lookup(kByNameIno, "cirros");
  EXPECT_EQ(*fs_.ReadLink(link), "../images/img1");
  EXPECT_TRUE(S_ISLNK(fs_.GetAttr(link)->st_mode));
}

TEST_F(FileSystemTest, ReadDirListsInOrder) {
  catalog_.Add("b", "", "raw", "x");
  catalog_.Add("a", "", "raw", "x");
  catalog_.Add("h", "", "raw", "x").hidden = true;
  Refresh();
  auto items = fs_.OpenDir(kImagesIno);
  ASSERT_TRUE(items.ok());
  std::vector<std::string> names;
  for (const auto& i : *items) names.push_back(i.name);
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "a", "b"}));
  auto root = fs_.OpenDir(kRootIno);
  EXPECT_EQ(root->size(), 4u);
  // readdirplus acquires; forgetting releases.
  size_t before = fs_.inode_count();
  auto st = fs_.AcquireDirItem(kImagesIno, (*items)[2]);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(fs_.inode_count(), before + 1);
  EXPECT_EQ(fs_.PeekIno(kImagesIno, (*items)[2]), st->st_ino);
  fs_.Forget(st->st_ino, 1);
  EXPECT_EQ(fs_.inode_count(), before);
  EXPECT_NE(fs_.PeekIno(kImagesIno, (*items)[3]), 0u);
}

TEST_F(FileSystemTest, ReadsAndSeeks) {
  catalog_.Add("img", "", "raw", "0123456789");
  Refresh();
  uint64_t raw = Lookup(Lookup(kImagesIno, "img"), "disk.raw");
  auto file = fs_.Open(raw, O_RDONLY);
  ASSERT_TRUE(file.ok());
  char scratch[64];
  EXPECT_EQ(*fs_.Read(**file, 2, 5, scratch), "23456");
  EXPECT_EQ(*fs_.Read(**file, 8, 10, scratch), "89");
  EXPECT_EQ(*fs_.Read(**file, 10, 10, scratch), "");
  EXPECT_EQ(*fs_.Seek(**file, 3, true), 3u);
  EXPECT_EQ(*fs_.Seek(**file, 3, false), 10u);
  EXPECT_EQ(fs_.Seek(**file, 10, true).status().code(), Status::Code::kOutOfRange);
  for (int flags : {O_WRONLY, O_RDWR, O_RDONLY | O_TRUNC}) {
    EXPECT_EQ(fs_.Open(raw, flags).status().code(), Status::Code::kReadOnly);
  }
  uint64_t meta = Lookup(Lookup(kImagesIno, "img"), "metadata.json");
  auto m = fs_.Open(meta, O_RDONLY);
  EXPECT_EQ(*fs_.Read(**m, 0, 100, scratch), "{\"id\": \"img\"}\n");
}

TEST_F(FileSystemTest, ReadErrorsAreErrors) {
  catalog_.Add("img", "", "raw", "0123456789");
  Refresh();
  uint64_t raw = Lookup(Lookup(kImagesIno, "img"), "disk.raw");
  catalog_.data.erase("img");
  EXPECT_EQ(fs_.Open(raw, O_RDONLY).status().code(), Status::Code::kIOError);
}

TEST_F(FileSystemTest, Xattrs) {
  auto& r = catalog_.Add("img", "n", "raw", "x");
  r.properties["hw_disk_bus"] = "virtio";
  Refresh();
  uint64_t dir = Lookup(kImagesIno, "img");
  uint64_t raw = Lookup(dir, "disk.raw");
  for (uint64_t ino : {dir, raw}) {
    EXPECT_EQ(**fs_.GetXattr(ino, "user.glance.hw_disk_bus"), "virtio");
    EXPECT_FALSE(*fs_.GetXattr(ino, "user.glance.nope"));
    EXPECT_FALSE(*fs_.GetXattr(ino, "security.selinux"));
    std::string list = *fs_.ListXattr(ino);
    EXPECT_NE(list.find(std::string("user.glance.hw_disk_bus\0", 24)), std::string::npos);
  }
  EXPECT_EQ(**fs_.GetXattr(kRootIno, "user.glancefs.images"), "1");
  EXPECT_EQ(*fs_.ListXattr(kImagesIno), "");
}

TEST_F(FileSystemTest, RefreshInvalidatesWhatChanged) {
  catalog_.Add("keep", "k", "raw", "x");
  catalog_.Add("gone", "g", "raw", "x");
  catalog_.Add("edit", "e", "raw", "x");
  Refresh();
  uint64_t edit_dir = Lookup(kImagesIno, "edit");
  uint64_t edit_meta = Lookup(edit_dir, "metadata.json");
  uint64_t edit_raw = Lookup(edit_dir, "disk.raw");
  uint64_t keep_dir = Lookup(kImagesIno, "keep");
  uint64_t gone_link = Lookup(kByNameIno, "g");
  auto old_meta = fs_.Open(edit_meta, O_RDONLY);
  ASSERT_TRUE(old_meta.ok());

  catalog_.images.erase("gone");
  catalog_.images["edit"].properties["new"] = "1";
  catalog_.images["edit"].record_json = "{\"id\": \"edit\", \"new\": \"1\"}\n";
  catalog_.Add("added", "a", "raw", "x");
  Refresh();
  EXPECT_TRUE(Has(Kind::kEntry, kImagesIno, "gone"));
  EXPECT_TRUE(Has(Kind::kEntry, kImagesIno, "added"));
  EXPECT_FALSE(Has(Kind::kEntry, kImagesIno, "keep"));
  EXPECT_FALSE(Has(Kind::kInode, keep_dir));
  EXPECT_TRUE(Has(Kind::kInode, edit_dir));  // its cached listing
  // metadata.json has a new version: the name is dropped, and the old inode's pages too.
  EXPECT_TRUE(Has(Kind::kEntry, edit_dir, "metadata.json"));
  EXPECT_TRUE(Has(Kind::kInode, edit_meta));
  // Same data: disk.raw keeps its inode and page cache.
  EXPECT_FALSE(Has(Kind::kEntry, edit_dir, "disk.raw"));
  EXPECT_FALSE(Has(Kind::kInode, edit_raw));
  EXPECT_TRUE(fs_.GetAttr(edit_raw).ok());
  uint64_t new_meta = Lookup(edit_dir, "metadata.json");
  EXPECT_NE(new_meta, edit_meta);
  EXPECT_TRUE(fs_.GetAttr(edit_meta).status().IsNotFound());
  // An open handle keeps reading the version it opened.
  char scratch[64];
  EXPECT_EQ(*fs_.Read(**old_meta, 0, 64, scratch), "{\"id\": \"edit\"}\n");
  EXPECT_TRUE(Has(Kind::kEntry, kByNameIno, "g"));
  EXPECT_TRUE(Has(Kind::kInode, gone_link));
  EXPECT_TRUE(Has(Kind::kEntry, kByNameIno, "a"));
  EXPECT_TRUE(Has(Kind::kInode, kImagesIno));
  EXPECT_TRUE(fs_.Lookup(kImagesIno, "gone").status().IsNotFound());
  EXPECT_TRUE(fs_.GetAttr(gone_link).status().IsNotFound());
  EXPECT_EQ(**fs_.GetXattr(edit_dir, "user.glance.new"), "1");

  // Nothing changed: nothing to invalidate.
  Refresh();
  EXPECT_TRUE(inv_.empty());
}

TEST_F(FileSystemTest, FailedRefreshKeepsTheLastGoodCatalog) {
  catalog_.Add("img", "", "raw", "x");
  Refresh();
  catalog_.fail_refresh = true;
  std::vector<Invalidation> inv;
  EXPECT_FALSE(fs_.Refresh(&inv).ok());
  EXPECT_TRUE(fs_.Lookup(kImagesIno, "img").ok());
  EXPECT_TRUE(fs_.GetXattr(kRootIno, "user.glancefs.refresh_error")->has_value());
  catalog_.fail_refresh = false;
  Refresh();
  EXPECT_FALSE(fs_.GetXattr(kRootIno, "user.glancefs.refresh_error")->has_value());
}

}  // namespace
}  // namespace glancefs::core
