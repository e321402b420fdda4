// The ploop (Parallels) decoder against its oracles: images made by `qemu-img convert -O
// parallels` with several cluster sizes, from a sparse source with holes, zero runs, random data
// and a size that is not a multiple of the cluster size, must decode to exactly what `qemu-img
// convert -O raw` gives, with the data extents `qemu-img map` reports; the third-party samples
// of the shared corpus must have the data extents of their maps and (those of at most 2 GiB)
// hash to oracle.tsv. Hostile headers, BATs and format extensions, patched here, must be refused
// or reported corrupt, each with its own message, without allocating what they claim.
#include "fs/format/ploop_reader.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "tests/fakes/fakes.h"
#include "tests/unit/format_test_util.h"

namespace glancefs::format {
namespace {

using glancefs::testing::MemByteSource;
using namespace testutil;

class PloopReaderTest : public QemuTest {
 protected:
  // A qemu-made parallels image of a MakeSource of `size` bytes: its path.
  std::string Make(uint64_t size, const std::string& cluster_size) {
    std::string src = dir_ / ("src" + std::to_string(size) + ".raw");
    if (!std::filesystem::exists(src)) MakeSource(src, size, BlockPieces(size));
    return QemuConvertFromRaw(
        src, "parallels", "cluster_size=" + cluster_size,
        dir_ / ("img" + std::to_string(size) + "-" + cluster_size + ".ploop"));
  }

  std::string QemuRaw(const std::string& img) {
    return ReadFile(QemuConvertToRaw("parallels", img));
  }

  // Decodes `img` (a file) and checks it against qemu-img: bytes, extents, pinned reads.
  void ExpectLikeQemu(const std::string& img, uint32_t version, uint64_t cluster_size) {
    auto file = std::make_shared<PinnedMem>(ReadFile(img));
    ASSERT_TRUE(*kPloopFormat.probe(*file));
    auto decoded = kPloopFormat.open(file);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    EXPECT_EQ(decoded->info.format, "ploop");
    using Fact = std::pair<std::string, std::string>;
    EXPECT_EQ(decoded->info.facts,
              (std::vector<Fact>{{"version", std::to_string(version)},
                                 {"cluster_size", std::to_string(cluster_size)}}));
    // A pinned read of many small clusters may come back NotSupported (too many pieces).
    ByteSource& raw = *decoded->raw;
    QemuComparison q = CompareWithQemu(
        raw, "parallels", img,
        {.reads = 100, .max_bytes = 3 * kMiB, .pinned = RandomReads::Pinned::kMayRefuse});
    EXPECT_EQ(decoded->info.virtual_size, q.raw.size());
    EXPECT_EQ(q.mine.data, q.qemu.data);
    EXPECT_TRUE(q.mine.zero.empty());  // ploop has no zero clusters, only data and holes
    EXPECT_EQ(raw.ReadAt(raw.size() - 1, 2, nullptr).code(), Status::Code::kOutOfRange);
    EXPECT_FALSE(raw.MapExtent(raw.size()).ok());
  }
};

TEST_F(PloopReaderTest, QemuImagesDecodeExactlyAsQemuImg) {
  struct Case {
    std::string option;
    uint64_t bytes;
  };
  for (const Case& c : std::vector<Case>{
           {"1M", kMiB}, {"64k", 64 << 10}, {"4k", 4 << 10}, {"512", 512}, {"32256", 32256}}) {
    for (uint64_t size : {11 * kMiB + 29184, 3 * kMiB + 1000}) {
      SCOPED_TRACE(c.option + " " + std::to_string(size));
      ExpectLikeQemu(Make(size, c.option), 2, c.bytes);
    }
  }
}

// A "WithoutFreeSpace" (version 1) image, made from qemu's version 2 by rewriting the magic and
// turning the BAT's cluster numbers into sectors: qemu reads it too, and both must agree.
TEST_F(PloopReaderTest, Version1ImagesDecodeExactlyAsQemuImg) {
  for (const std::string& cs : {std::string("64k"), std::string("32256")}) {
    SCOPED_TRACE(cs);
    std::string img = Make(11 * kMiB + 29184, cs);
    std::string b = ReadFile(img);
    uint32_t tracks = LoadLE32(&b[28]), entries = LoadLE32(&b[32]);
    b.replace(0, 16, "WithoutFreeSpace");
    for (uint32_t i = 0; i < entries; ++i) {
      StoreLE(&b, 64 + 4 * i, LoadLE32(&b[64 + 4 * i]) * tracks, 4);
    }
    StoreLE(&b, 40, 0x1234, 4);  // the high half of nb_sectors: ignored in version 1, as qemu
    WriteFile(img, b);
    ExpectLikeQemu(img, 1, uint64_t{tracks} * 512);
  }
}

TEST(PloopCorpusTest, SamplesHashToTheOracle) {
  for (const std::string name :
       {"fake.parallels", "parallels-v1", "parallels-v2", "parallels-with-bitmap"}) {
    SCOPED_TRACE(name);
    // The size, and the hash of all but the 64 GiB parallels-with-bitmap (see
    // ExpectMatchesOracle).
    auto decoded = DecodeSample(kPloopFormat, "parallels", {name, {}});
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    ReaderMap mine = MapOf(*decoded->raw);
    EXPECT_EQ(mine.data, CorpusMap(name).data);
    EXPECT_TRUE(mine.zero.empty());  // ploop has no zero clusters
    if (name == "parallels-with-bitmap") {
      EXPECT_EQ(decoded->info.facts.back(),
                (std::pair<std::string, std::string>("dirty_bitmaps", "1")));
    }
  }
}

class PloopHostileTest : public PloopReaderTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(PloopReaderTest::SetUp());
    bytes_ = ReadFile(Make(11 * kMiB + 29184, "64k"));
    ASSERT_GT(bytes_.size(), 64u << 10);
  }
  Status OpenStatus(const std::string& bytes, const PloopLimits& limits = PloopLimits()) {
    return PloopReader::Open(std::make_shared<MemByteSource>(bytes), limits).status();
  }
  // bytes_ with a Format Extension cluster appended, holding `features` after its header.
  std::string WithExtension(const std::string& features, uint64_t magic = 0xab234cef23dcea87) {
    std::string b = bytes_;
    StoreLE(&b, 56, b.size() / 512, 8);
    std::string ext(64 << 10, '\0');
    StoreLE(&ext, 0, magic, 8);
    ext.replace(24, features.size(), features);
    return b + ext;
  }
  std::string bytes_;
};

TEST_F(PloopHostileTest, ClusterPastTheEndOfTheFileIsCorruptOnRead) {
  std::string b = bytes_;
  StoreLE(&b, 64, 0x100000, 4);  // cluster 0 at 64 GiB
  auto reader = PloopReader::Open(std::make_shared<MemByteSource>(b));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  ExpectCorruptionOnRead(**reader, 10,
                         "parallels: cluster 0 (BAT entry 0x100000) is stored at 0x1000000000, "
                         "past the end of the file (" +
                             std::to_string(b.size()) + " bytes)",
                         3 * kMiB + 4096);  // other clusters still read
}

TEST_F(PloopHostileTest, HugeBatIsCorruptWithoutAllocating) {
  std::string b = bytes_;
  StoreLE(&b, 32, 0xffffffff, 4);
  Status s = OpenStatus(b);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_EQ(s.message(),
            "parallels BAT of 4294967295 entries (17179869180 bytes at 0x40) is "
            "larger than the file (" +
                std::to_string(b.size()) + " bytes)");
  // A BAT that fits the file but not the limit.
  PloopLimits small;
  small.max_bat_bytes = 100;
  s = OpenStatus(bytes_, small);
  EXPECT_EQ(s.code(), Status::Code::kRefused);
  EXPECT_EQ(s.message(), "parallels: BAT of 708 bytes is larger than the limit (100)");
  // A virtual size far past the BAT: only the BAT's entries are held, the rest are holes.
  b = bytes_;
  StoreLE(&b, 36, uint64_t{1} << 40, 8);  // 512 TiB
  auto reader = PloopReader::Open(std::make_shared<MemByteSource>(b));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto e = (*reader)->MapExtent(12 * kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kHole);
  EXPECT_EQ(e->offset + e->length, uint64_t{1} << 49);
  char buf[512];
  EXPECT_TRUE((*reader)->ReadAt((uint64_t{1} << 49) - 512, 512, buf).ok());
  EXPECT_EQ(std::string(buf, 512), std::string(512, '\0'));
  StoreLE(&b, 36, uint64_t{1} << 60, 8);
  EXPECT_EQ(OpenStatus(b).message(), "parallels: 1152921504606846976 sectors is too large");
}

TEST_F(PloopHostileTest, HeaderChecks) {
  auto patched = [&](size_t off, uint32_t v) {
    std::string b = bytes_;
    StoreLE(&b, off, v, 4);
    return OpenStatus(b);
  };
  Status s = patched(28, 0);
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.message(), "parallels: zero sectors per cluster");
  s = patched(28, 4186128);
  EXPECT_EQ(s.code(), Status::Code::kRefused);
  EXPECT_EQ(s.message(), "parallels: clusters of 4186128 sectors are too large");
  s = patched(16, 3);
  EXPECT_EQ(s.code(), Status::Code::kRefused);
  EXPECT_EQ(s.message(), "parallels: header version 3 is not supported (only 2)");
  std::string b = bytes_;
  b[3] = 'X';
  EXPECT_EQ(OpenStatus(b).message(), "parallels: bad magic");
  EXPECT_FALSE(*kPloopFormat.probe(*std::make_shared<MemByteSource>(b)));
  EXPECT_EQ(OpenStatus(bytes_.substr(0, 63)).message(), "parallels: file too short for a header");
  // Not closed cleanly: read as qemu reads it, and said so.
  b = bytes_;
  StoreLE(&b, 44, 0x746f6e59, 4);
  auto decoded = kPloopFormat.open(std::make_shared<MemByteSource>(b));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->info.facts.back(), (std::pair<std::string, std::string>("in_use", "true")));
  auto f = std::make_shared<MemByteSource>(bytes_);
  f->fail_reads = true;
  EXPECT_EQ(PloopReader::Open(f).status().code(), Status::Code::kIOError);
  EXPECT_EQ(kPloopFormat.probe(*f).status().code(), Status::Code::kIOError);
}

TEST_F(PloopHostileTest, FormatExtension) {
  std::string feature(24, '\0');
  StoreLE(&feature, 0, 0x20385fae252cb34a, 8);  // a dirty bitmap, 40 bytes of data
  StoreLE(&feature, 16, 36, 4);
  std::string bitmap = feature + std::string(40, '\0');
  // Dirty bitmaps only: accepted, and the data reads as before.
  auto decoded = kPloopFormat.open(std::make_shared<MemByteSource>(WithExtension(bitmap + bitmap)));
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  EXPECT_EQ(decoded->info.facts.back(),
            (std::pair<std::string, std::string>("dirty_bitmaps", "2")));
  std::string want =
      QemuRaw(dir_.path() + "/img" + std::to_string(11 * kMiB + 29184) + "-64k.ploop");
  EXPECT_TRUE(DecodeAll(*decoded->raw) == want);
  // Any other feature could name anything: refused.
  std::string other = feature;
  StoreLE(&other, 0, 0x1122334455667788, 8);
  Status s = OpenStatus(WithExtension(bitmap + other));
  EXPECT_EQ(s.code(), Status::Code::kRefused);
  EXPECT_EQ(s.message(),
            "parallels: format extension feature 0x1122334455667788 is not "
            "supported (only dirty bitmaps); refused");
  // A bad magic, a cluster outside the file, features past the cluster: corrupt.
  s = OpenStatus(WithExtension("", 0x1234));
  EXPECT_TRUE(s.IsCorruption());
  std::ostringstream at;
  at << std::hex << bytes_.size();
  EXPECT_EQ(s.message(),
            "parallels: format extension at 0x" + at.str() + " has a bad magic 0x1234");
  std::string b = bytes_;
  StoreLE(&b, 56, uint64_t{1} << 60, 8);
  EXPECT_EQ(OpenStatus(b).message(),
            "parallels: format extension at sector 1152921504606846976 "
            "is outside the file (" +
                std::to_string(b.size()) + " bytes)");
  // Empty dirty bitmaps filling the cluster, with no end marker.
  std::string endless;
  while (endless.size() < (64 << 10)) endless += feature;
  for (size_t i = 0; i < endless.size(); i += 24) StoreLE(&endless, i + 16, 0, 4);
  PloopLimits many;
  many.max_extension_features = 1 << 20;
  s = OpenStatus(WithExtension(endless.substr(0, (64 << 10) - 24)), many);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("runs past its cluster or the file"), std::string::npos);
  PloopLimits few;
  few.max_extension_features = 5;
  s = OpenStatus(WithExtension(endless.substr(0, 24 * 10)), few);
  EXPECT_EQ(s.message(), "parallels: format extension has more than 5 features");
  std::string big = feature;
  StoreLE(&big, 16, 1 << 20, 4);
  s = OpenStatus(WithExtension(big));
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_NE(s.message().find("dirty bitmap feature at"), std::string::npos);
}

}  // namespace
}  // namespace glancefs::format
