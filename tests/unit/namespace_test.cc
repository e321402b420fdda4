#include "fs/namespace/namespace.h"

#include <gtest/gtest.h>

#include "tests/fakes/fakes.h"

namespace glancefs::fsns {
namespace {

using glancefs::testing::FakeCatalog;

std::shared_ptr<const CatalogSnapshot> Snap(FakeCatalog& c) { return *c.Refresh(); }

TEST(NamespaceTest, HiddenImagesResolveButAreNotListed) {
  FakeCatalog c;
  c.Add("a", "visible", "raw", "x");
  c.Add("h", "secret", "raw", "y").hidden = true;
  Namespace ns(Snap(c));
  ASSERT_EQ(ns.listed().size(), 1u);
  EXPECT_EQ(ns.listed()[0]->id, "a");
  EXPECT_TRUE(ns.FindImage("h"));
  EXPECT_FALSE(ns.FindByName("secret"));
  EXPECT_TRUE(ns.FindByName("visible"));
  EXPECT_FALSE(ns.FindImage("zzz"));
}

TEST(NamespaceTest, DuplicateNamesNeverCollideSilently) {
  FakeCatalog c;
  c.Add("old", "ubuntu", "raw", "1", 100);
  c.Add("new", "ubuntu", "raw", "2", 200);
  c.Add("newest-but-queued", "ubuntu", "raw", "3", 300).status = "queued";
  c.Add("solo", "a/b", "raw", "4");
  Namespace ns(Snap(c));
  const ByNameEntry* plain = ns.FindByName("ubuntu");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->image->id, "new");  // newest active
  EXPECT_EQ(ns.FindByName("ubuntu%@old")->image->id, "old");
  EXPECT_EQ(ns.FindByName("ubuntu%@new")->image->id, "new");
  EXPECT_EQ(ns.FindByName("ubuntu%@newest-but-queued")->image->id, "newest-but-queued");
  EXPECT_EQ(ns.FindByName("a%2Fb")->image->id, "solo");
  EXPECT_EQ(ns.by_name().size(), 5u);
  for (size_t i = 1; i < ns.by_name().size(); ++i) {
    EXPECT_LT(ns.by_name()[i - 1].entry, ns.by_name()[i].entry);
  }
  EXPECT_EQ(Namespace::LinkTarget(*plain->image), "../images/new");
}

TEST(NamespaceTest, FilesFollowFormatAndStatus) {
  FakeCatalog c;
  auto files = [](const ImageRecord& r) { return FilesOf(r); };
  // Every active image with data offers both disk views; fs/core hides refused ones.
  const std::vector<ImageFile> all{ImageFile::kMetadata, ImageFile::kFormat, ImageFile::kDiskRaw,
                                   ImageFile::kDiskQcow2};
  for (const char* format : {"raw", "iso", "qcow2", "vmdk", "whatever"}) {
    EXPECT_EQ(files(c.Add(format, "", format, "x")), all) << format;
  }
  ImageRecord queued = c.Add("u", "", "raw", "x");
  queued.status = "queued";
  EXPECT_EQ(files(queued), (std::vector<ImageFile>{ImageFile::kMetadata}));
  ImageRecord nodata = c.Add("n", "", "raw", "x");
  nodata.size.reset();
  EXPECT_EQ(files(nodata), (std::vector<ImageFile>{ImageFile::kMetadata}));
  EXPECT_EQ(ParseFileName("disk.raw"), ImageFile::kDiskRaw);
  EXPECT_EQ(ParseFileName("format.json"), ImageFile::kFormat);
  EXPECT_FALSE(ParseFileName("disk.vmdk"));
}

TEST(NamespaceTest, MtimeIsTheNewestUpdate) {
  FakeCatalog c;
  c.Add("a", "", "raw", "x", 100);
  c.Add("b", "", "raw", "x", 300).hidden = true;
  EXPECT_EQ(Namespace(Snap(c)).mtime(), 300);
}

}  // namespace
}  // namespace glancefs::fsns
