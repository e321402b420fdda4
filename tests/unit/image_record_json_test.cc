#include "backends/common/image_record_json.h"

#include <gtest/gtest.h>

namespace glancefs::backends {
namespace {

constexpr char kRecord[] = R"({
  "id": "6f1a2b3c-0000-4000-8000-000000000001", "name": "cirros", "status": "active",
  "visibility": "public", "os_hidden": false, "size": 1024, "virtual_size": null,
  "disk_format": "qcow2", "container_format": "bare", "checksum": "abc",
  "created_at": "2024-05-01T12:34:56Z", "updated_at": "2024-05-02T00:00:00Z",
  "tags": ["a", "b"], "min_ram": 0, "hw_disk_bus": "virtio", "protected": false
})";

TEST(ImageRecordJsonTest, ParsesAGlanceRecord) {
  auto r = ParseImageRecord(kRecord);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->id, "6f1a2b3c-0000-4000-8000-000000000001");
  EXPECT_EQ(r->name, "cirros");
  EXPECT_EQ(r->status, "active");
  EXPECT_EQ(r->disk_format, "qcow2");
  EXPECT_EQ(r->size, 1024u);
  EXPECT_FALSE(r->virtual_size);
  EXPECT_FALSE(r->hidden);
  EXPECT_EQ(r->created_at, 1714566896);
  EXPECT_EQ(r->properties.at("hw_disk_bus"), "virtio");
  EXPECT_EQ(r->properties.at("tags"), R"(["a","b"])");
  EXPECT_EQ(r->properties.at("size"), "1024");
  EXPECT_EQ(r->properties.at("protected"), "false");
  EXPECT_EQ(r->properties.count("virtual_size"), 0u);  // null fields are absent
  EXPECT_EQ(r->record_json.back(), '\n');
  EXPECT_NE(r->record_json.find("\n  \"hw_disk_bus\": \"virtio\""), std::string::npos);
}

TEST(ImageRecordJsonTest, RefusesMalformedRecords) {
  const char* bad[] = {
      "",
      "{",
      "[]",
      R"({"name": "no id"})",
      R"({"id": 42})",
      R"({"id": "../etc"})",
      R"({"id": ".hidden"})",
      R"({"id": "a/b"})",
      R"({"id": "x", "size": -1})",
      R"({"id": "x", "size": "12"})",
      R"({"id": "x", "os_hidden": "yes"})",
      R"({"id": "x", "name": 7})",
  };
  for (const char* text : bad) {
    auto r = ParseImageRecord(text);
    EXPECT_FALSE(r.ok()) << text;
    if (!r.ok()) {
      EXPECT_TRUE(r.status().IsCorruption()) << text;
    }
  }
}

TEST(ImageRecordJsonTest, ToleratesOddButValidRecords) {
  auto r = ParseImageRecord(R"({"id": "x", "name": null, "created_at": "yesterday"})");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->name);
  EXPECT_EQ(r->created_at, 0);
  // Text that is not Unicode is a corrupt record, refused with a message, not a crash.
  EXPECT_TRUE(ParseImageRecord("{\"id\": \"x\", \"p\": \"\\udcff\"}").status().IsCorruption());
  EXPECT_TRUE(ParseImageRecord("{\"id\": \"x\", \"p\": \"\xff\"}").status().IsCorruption());
}

TEST(ImageRecordJsonTest, BigPropertyValues) {
  std::string big(100 * 1024, 'v');
  auto r = ParseImageRecord(R"({"id": "x", "big": ")" + big + "\"}");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->properties.at("big").size(), big.size());
}

TEST(ImageRecordJsonTest, RefusesDeepNestingAndHugeSizes) {
  std::string deep =
      R"({"id": "x", "p": )" + std::string(100000, '[') + std::string(100000, ']') + "}";
  auto r = ParseImageRecord(deep);
  EXPECT_TRUE(r.status().IsCorruption());
  EXPECT_NE(r.status().message().find("nests deeper"), std::string::npos);
  // Brackets inside strings do not count.
  EXPECT_TRUE(ParseImageRecord(R"({"id": "x", "p": ")" + std::string(1000, '[') + "\"}").ok());
  EXPECT_TRUE(
      ParseImageRecord(R"({"id": "x", "size": 18446744073709551615})").status().IsCorruption());
}

TEST(ImageRecordJsonTest, SafeIds) {
  EXPECT_TRUE(IsSafeImageId("6f1a2b3c-0000-4000-8000-000000000001"));
  EXPECT_TRUE(IsSafeImageId("my_image.v2"));
  EXPECT_FALSE(IsSafeImageId(""));
  EXPECT_FALSE(IsSafeImageId("."));
  EXPECT_FALSE(IsSafeImageId(".."));
  EXPECT_FALSE(IsSafeImageId("a b"));
  EXPECT_FALSE(IsSafeImageId(std::string(129, 'a')));
  EXPECT_TRUE(IsSafeImageId(std::string(128, 'a')));
}

}  // namespace
}  // namespace glancefs::backends
