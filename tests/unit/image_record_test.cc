// The per-image record codec and RecordWriter, alone: round trips, damaged records, and the
// newest state winning however the writes are ordered.
#include "cache/image_record.h"

#include <gtest/gtest.h>

#include "cache/block_store.h"
#include "cache/record_writer.h"

namespace glancefs::cache {
namespace {

ImageRecordFields Full() {
  ImageRecordFields f;
  f.version = "os_hash_value:abc";
  f.size = 12345678901ULL;
  f.no = 42;
  f.state = "verified";
  f.hash_algo = "sha512";
  f.hash_value = "00ff";
  f.last_access = 1765000000;
  f.pinned = true;
  f.reason = "";
  f.signature_fp = "fp/policy";
  f.signature = "invalid: bad signature";
  return f;
}

void ExpectSame(const ImageRecordFields& a, const ImageRecordFields& b) {
  EXPECT_EQ(a.version, b.version);
  EXPECT_EQ(a.size, b.size);
  EXPECT_EQ(a.no, b.no);
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.hash_algo, b.hash_algo);
  EXPECT_EQ(a.hash_value, b.hash_value);
  EXPECT_EQ(a.last_access, b.last_access);
  EXPECT_EQ(a.pinned, b.pinned);
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.signature_fp, b.signature_fp);
  EXPECT_EQ(a.signature, b.signature);
}

TEST(ImageRecordTest, RoundTrip) {
  ImageRecordFields f = Full();
  auto back = DecodeImageRecord(EncodeImageRecord(f));
  ASSERT_TRUE(back.has_value());
  ExpectSame(f, *back);
  f.pinned = false;
  f.state = "corrupt";
  f.reason = "sha512 of the data is 1, the record says 2";
  back = DecodeImageRecord(EncodeImageRecord(f));
  ASSERT_TRUE(back.has_value());
  ExpectSame(f, *back);
}

TEST(ImageRecordTest, NewlinesInTextCannotForgeFields) {
  ImageRecordFields f = Full();
  f.reason = "x\nno=7\npinned=0";
  f.signature = "invalid: a\nstate=verified";
  auto back = DecodeImageRecord(EncodeImageRecord(f));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->no, 42u);
  EXPECT_TRUE(back->pinned);
  EXPECT_EQ(back->reason, "x no=7 pinned=0");
  EXPECT_EQ(back->state, "verified");
  EXPECT_EQ(back->signature, "invalid: a state=verified");
}

TEST(ImageRecordTest, DamagedRecords) {
  EXPECT_FALSE(DecodeImageRecord("").has_value());
  EXPECT_FALSE(DecodeImageRecord("\x01\x02 garbage").has_value());
  EXPECT_FALSE(DecodeImageRecord("version=v\nsize=10\n").has_value());  // no number
  EXPECT_FALSE(DecodeImageRecord("version=v\nno=0\n").has_value());     // never a number
  EXPECT_FALSE(DecodeImageRecord("no=abc\n").has_value());
  // Cut short after the number: what is there is kept, the rest reads as empty or 0.
  std::string text = EncodeImageRecord(Full());
  auto cut = DecodeImageRecord(text.substr(0, text.find("state=")));
  ASSERT_TRUE(cut.has_value());
  EXPECT_EQ(cut->no, 42u);
  EXPECT_EQ(cut->size, 12345678901ULL);
  EXPECT_EQ(cut->state, "");
  EXPECT_FALSE(cut->pinned);
  // Lines without '=' and unknown names are ignored; the first of a repeated name wins.
  auto odd = DecodeImageRecord("junk\nno=5\nfuture=1\nno=6\nsize=3");
  ASSERT_TRUE(odd.has_value());
  EXPECT_EQ(odd->no, 5u);
  EXPECT_EQ(odd->size, 3u);
}

TEST(RecordWriterTest, TheNewestStampWinsWhateverTheOrderOfWrites) {
  auto store = NewMemBlockStore();
  RecordWriter writer(store.get());
  const uint64_t s1 = writer.Stamp("img");
  const uint64_t s2 = writer.Stamp("img");
  EXPECT_LT(s1, s2);
  ASSERT_TRUE(writer.Write({"img", s2, 2, std::string("new")}).ok());
  ASSERT_TRUE(writer.Write({"img", s1, 1, std::string("old")}).ok());  // late: skipped
  EXPECT_EQ(store->GetMeta("img/img").value(), std::optional<std::string>("new"));
  // A delete stamped later removes it; an older put cannot bring it back.
  const uint64_t s3 = writer.Stamp("img");
  const uint64_t s4 = writer.Stamp("img");
  ASSERT_TRUE(writer.Write({"img", s4, 0, std::nullopt}).ok());
  ASSERT_TRUE(writer.Write({"img", s3, 3, std::string("stale")}).ok());
  EXPECT_FALSE(store->GetMeta("img/img").value().has_value());
  // Stamps are per id; stamp 0 writes nothing.
  ASSERT_TRUE(writer.Write({"other", writer.Stamp("other"), 9, std::string("x")}).ok());
  ASSERT_TRUE(writer.Write({"other", 0, 9, std::string("y")}).ok());
  EXPECT_EQ(store->GetMeta("img/other").value(), std::optional<std::string>("x"));
}

}  // namespace
}  // namespace glancefs::cache
