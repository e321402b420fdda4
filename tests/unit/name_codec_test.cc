#include "fs/namespace/name_codec.h"

#include <gtest/gtest.h>

namespace glancefs::fsns {
namespace {

TEST(NameCodecTest, PlainNamesAreUnchanged) {
  EXPECT_EQ(*EncodeName("ubuntu-22.04"), "ubuntu-22.04");
  EXPECT_EQ(*EncodeName("Fedora 40 (cloud)"), "Fedora 40 (cloud)");
  EXPECT_EQ(*EncodeName("ünïcødé ✓"), "ünïcødé ✓");
  EXPECT_EQ(*EncodeName(".hidden"), ".hidden");
}

TEST(NameCodecTest, EscapesWhatCannotBeAFileName) {
  EXPECT_EQ(*EncodeName("a/b"), "a%2Fb");
  EXPECT_EQ(*EncodeName("100%"), "100%25");
  EXPECT_EQ(*EncodeName("tab\there\n"), "tab%09here%0A");
  EXPECT_EQ(*EncodeName(std::string("nul\0x", 5)), "nul%00x");
  EXPECT_EQ(*EncodeName("."), "%2E");
  EXPECT_EQ(*EncodeName(".."), "%2E%2E");
  EXPECT_EQ(*EncodeName("..."), "...");
  EXPECT_EQ(*EncodeName("/"), "%2F");
  EXPECT_FALSE(EncodeName("").has_value());
}

TEST(NameCodecTest, RoundTrips) {
  for (std::string name :
       {"a/b", "100%", "%2F", ".", "..", "x\x7fy", "a%@b", "a%~b", "ok", "ünï/cødé"}) {
    auto entry = EncodeName(name);
    ASSERT_TRUE(entry);
    EXPECT_LE(entry->size(), kNameMax);
    EXPECT_EQ(entry->find('/'), std::string::npos);
    EXPECT_EQ(DecodeName(*entry), name) << name;
  }
}

TEST(NameCodecTest, DecodeAcceptsOnlyCanonicalEntries) {
  EXPECT_FALSE(DecodeName("a%2fb"));  // lower-case hex is never produced
  EXPECT_FALSE(DecodeName("a%4"));
  EXPECT_FALSE(DecodeName("%41"));  // 'A' would be written as itself
  EXPECT_FALSE(DecodeName("."));
  EXPECT_FALSE(DecodeName(""));
  EXPECT_FALSE(DecodeName(DuplicateEntry("x", "id1")));
}

TEST(NameCodecTest, LongNamesAreShortenedDeterministically) {
  std::string name(255, '/');  // encodes to 765 bytes
  auto entry = EncodeName(name);
  ASSERT_TRUE(entry);
  EXPECT_LE(entry->size(), kNameMax);
  EXPECT_EQ(entry, EncodeName(name));
  EXPECT_NE(entry, EncodeName(std::string(254, '/')));
  EXPECT_NE(entry->find("%~"), std::string::npos);
  EXPECT_FALSE(DecodeName(*entry));
  // Never cut inside a multi-byte character or an escape.
  std::string utf8;
  for (int i = 0; i < 130; ++i) utf8 += "é";
  auto e2 = EncodeName(utf8 + "/");
  ASSERT_TRUE(e2);
  EXPECT_LE(e2->size(), kNameMax);
  ASSERT_NE(e2->find("%~"), std::string::npos);
  std::string prefix = e2->substr(0, e2->find("%~"));
  EXPECT_EQ(prefix.size() % 2, 0u);  // whole two-byte characters only
}

TEST(NameCodecTest, DuplicateEntriesFitAndDiffer) {
  std::string id = "0b5c6e7a-1111-2222-3333-444455556666";
  EXPECT_EQ(DuplicateEntry("ubuntu", id), "ubuntu%@" + id);
  std::string longname(250, 'x');
  auto entry = DuplicateEntry(longname, id);
  EXPECT_LE(entry.size(), kNameMax);
  EXPECT_NE(entry, DuplicateEntry(longname, "other"));
}

}  // namespace
}  // namespace glancefs::fsns
