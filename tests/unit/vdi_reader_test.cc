// The VDI decoder against its oracle: images made by `qemu-img convert -O vdi` (dynamic and
// static) from a sparse source with holes, zero runs, random data and a size that is not a
// multiple of the block size must decode to exactly what `qemu-img convert -O raw` gives, with
// the data extents `qemu-img map` reports. Hostile headers and block maps, patched here, must be
// refused or reported corrupt, each with its own message, without allocating what they claim.
#include "fs/format/vdi_reader.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "tests/fakes/fakes.h"
#include "tests/unit/format_test_util.h"

namespace glancefs::format {
namespace {

using glancefs::testing::MemByteSource;
using namespace testutil;

class VdiReaderTest : public QemuTest {
 protected:
  // A qemu-made VDI of a MakeSource of `size` bytes: its path.
  std::string Make(uint64_t size, bool static_image) {
    std::string src = dir_ / ("src" + std::to_string(size) + ".raw");
    MakeSource(src, size, BlockPieces(size));
    return QemuConvertFromRaw(
        src, "vdi", static_image ? "static=on" : "static=off",
        dir_ / ("img" + std::to_string(size) + (static_image ? "-static" : "-dynamic") + ".vdi"));
  }

  std::string QemuRaw(const std::string& img) { return ReadFile(QemuConvertToRaw("vdi", img)); }
};

TEST_F(VdiReaderTest, QemuImagesDecodeExactlyAsQemuImg) {
  for (uint64_t size : {11 * kMiB + 29184, 3 * kMiB + 1000, uint64_t{700} << 10}) {
    for (bool static_image : {false, true}) {
      SCOPED_TRACE(std::to_string(size) + (static_image ? " static" : " dynamic"));
      std::string img = Make(size, static_image);
      auto file = std::make_shared<PinnedMem>(ReadFile(img));
      ASSERT_TRUE(*kVdiFormat.probe(*file));
      auto decoded = kVdiFormat.open(file);
      ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
      EXPECT_EQ(decoded->info.format, "vdi");
      const auto& facts = decoded->info.facts;
      ASSERT_GE(facts.size(), 4u);
      EXPECT_EQ(facts[0], (std::pair<std::string, std::string>(
                              "subformat", static_image ? "static" : "dynamic")));
      EXPECT_EQ(facts[1], (std::pair<std::string, std::string>("block_size", "1048576")));
      EXPECT_EQ(facts[2], (std::pair<std::string, std::string>("version", "1.1")));
      EXPECT_EQ(facts[3].first, "uuid");
      EXPECT_EQ(facts[3].second.size(), 36u);

      // The bytes, read whole, then in unaligned pieces and pinned from several threads at once;
      // the data extents qemu-img map reports.
      ByteSource& raw = *decoded->raw;
      QemuComparison q = CompareWithQemu(
          raw, "vdi", img,
          {.threads = 4, .reads = 50, .max_bytes = 3 * kMiB, .pinned = RandomReads::Pinned::kYes});
      EXPECT_EQ(decoded->info.virtual_size, q.raw.size());
      EXPECT_EQ(q.mine.data, q.qemu.data);
      EXPECT_EQ(raw.ReadAt(raw.size() - 1, 2, nullptr).code(), Status::Code::kOutOfRange);
      EXPECT_FALSE(raw.MapExtent(raw.size()).ok());
    }
  }
}

// Entry 0xfffffffe (a discarded block) reads as zeros, as in qemu, and maps as kZero; entry
// 0xffffffff (never written) is a hole.
TEST_F(VdiReaderTest, DiscardedBlocksAreZeroAndUnallocatedAreHoles) {
  std::string img = Make(11 * kMiB + 29184, false);
  std::string bytes = ReadFile(img);
  // Block 0 holds data (qemu's map says so); block 1 is unallocated.
  ASSERT_NE(LoadLE32(&bytes[0x200]), 0xffffffffu);
  ASSERT_EQ(LoadLE32(&bytes[0x204]), 0xffffffffu);
  StoreLE(&bytes, 0x200, 0xfffffffe, 4);
  WriteFile(img, bytes);
  std::string want = QemuRaw(img);
  auto reader = VdiReader::Open(std::make_shared<MemByteSource>(bytes));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_TRUE(DecodeAll(**reader) == want);
  EXPECT_EQ(want.substr(0, kMiB), std::string(kMiB, '\0'));
  auto e = (*reader)->MapExtent(100);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kZero);
  EXPECT_EQ(e->offset, 100u);
  EXPECT_EQ(e->length, kMiB - 100);
  e = (*reader)->MapExtent(kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kHole);
  EXPECT_EQ(e->length, 2 * kMiB);  // blocks 1 and 2
}

// VirtualBox may use other block sizes (qemu opens only 1 MiB): a hand-made image with 64 KiB
// blocks stored out of order must decode to the bytes it was made from.
TEST_F(VdiReaderTest, HandMadeSmallBlocksOutOfOrder) {
  constexpr uint32_t kBlock = 64 << 10, kBlocks = 7;
  const uint64_t disk = kBlocks * kBlock - 3 * 512;
  std::mt19937_64 rng(7);
  std::string want = RandomBytes(rng, disk);
  std::string h(0x400, '\0');
  h.replace(0, 5, "<<< x");
  StoreLE(&h, 0x40, 0xbeda107f, 4);
  StoreLE(&h, 0x44, 0x00010001, 4);
  StoreLE(&h, 0x48, 0x180, 4);
  StoreLE(&h, 0x4c, 1, 4);
  StoreLE(&h, 0x154, 0x200, 4);
  StoreLE(&h, 0x158, 0x400, 4);
  StoreLE(&h, 0x168, 512, 4);
  StoreLE(&h, 0x170, static_cast<uint32_t>(disk), 4);
  StoreLE(&h, 0x178, kBlock, 4);
  StoreLE(&h, 0x180, kBlocks, 4);
  // Blocks 1 and 4 are holes (their bytes zeroed in `want`); the rest stored in reverse order.
  std::vector<uint32_t> order = {4, 0xffffffff, 3, 2, 0xffffffff, 1, 0};
  std::string data(5 * kBlock, '\0');
  for (uint32_t b = 0; b < kBlocks; ++b) {
    uint64_t n = std::min<uint64_t>(kBlock, disk - uint64_t{b} * kBlock);
    if (order[b] == 0xffffffff) {
      std::memset(&want[uint64_t{b} * kBlock], 0, n);
    } else {
      data.replace(uint64_t{order[b]} * kBlock, n, want, uint64_t{b} * kBlock, n);
    }
    StoreLE(&h, 0x200 + 4 * b, order[b], 4);
  }
  auto reader = VdiReader::Open(std::make_shared<MemByteSource>(h + data));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ((*reader)->info().block_size, kBlock);
  ASSERT_EQ((*reader)->size(), disk);
  EXPECT_TRUE(DecodeAll(**reader) == want);
  EXPECT_EQ(MapOf(**reader).data,
            (Ranges{{0, kBlock}, {2 * kBlock, 2 * kBlock}, {5 * kBlock, disk - 5 * kBlock}}));
}

class VdiHostileTest : public VdiReaderTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(VdiReaderTest::SetUp());
    bytes_ = ReadFile(Make(11 * kMiB + 29184, false));
    ASSERT_GT(bytes_.size(), 0x400u);
  }
  Status OpenStatus(const std::string& bytes, const VdiLimits& limits = VdiLimits()) {
    return VdiReader::Open(std::make_shared<MemByteSource>(bytes), limits).status();
  }
  std::string bytes_;
};

TEST_F(VdiHostileTest, BlockMapLargerThanTheFile) {
  std::string b = bytes_;
  StoreLE(&b, 0x180, 0x3ff00000, 4);  // blocks_in_image: a 4 GiB block map
  Status s = OpenStatus(b);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_EQ(s.message(),
            "vdi with a block map larger than the file: 1072693248 entries (4290772992 bytes) at "
            "0x200, the file has " +
                std::to_string(b.size()) + " bytes");
  StoreLE(&b, 0x154, 0xfffffe00, 4);  // the map itself past the end
  StoreLE(&b, 0x180, 12, 4);
  StoreLE(&b, 0x158, 0xfffffe00 + 512, 4);
  s = OpenStatus(b);
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_NE(s.message().find("block map larger than the file"), std::string::npos);
}

TEST_F(VdiHostileTest, BlockPastTheEndOfTheFileIsCorruptOnRead) {
  std::string b = bytes_;
  StoreLE(&b, 0x200, 0x100000, 4);  // block 0 at 1 TiB
  auto reader = VdiReader::Open(std::make_shared<MemByteSource>(b));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  ExpectCorruptionOnRead(**reader, 10,
                         "vdi: block 0 (map entry 0x100000) is stored at 0x10000000400, past "
                         "the end of the file (" +
                             std::to_string(b.size()) + " bytes)",
                         3 * kMiB);  // other blocks still read
  // A file cut short: the last stored block (block 11, entry 3) is no longer all in it.
  std::string cut = bytes_.substr(0, 0x400 + 3 * kMiB + 512);
  reader = VdiReader::Open(std::make_shared<MemByteSource>(cut));
  ASSERT_TRUE(reader.ok());
  std::string all((*reader)->size(), '\0');
  Status s = (*reader)->ReadAt(0, all.size(), all.data());
  EXPECT_EQ(s.message(),
            "vdi: block 11 (map entry 0x3) is stored at 0x300400, past the end of "
            "the file (" +
                std::to_string(cut.size()) + " bytes)");
}

TEST_F(VdiHostileTest, DifferencingImagesAreRefused) {
  std::string b = bytes_;
  StoreLE(&b, 0x4c, 4, 4);
  Status s = OpenStatus(b);
  EXPECT_EQ(s.code(), Status::Code::kRefused);
  EXPECT_EQ(s.message(),
            "vdi differencing image (diff type): its unallocated blocks are in a "
            "parent image; refused");
  StoreLE(&b, 0x4c, 3, 4);
  EXPECT_EQ(OpenStatus(b).message(),
            "vdi differencing image (undo type): its unallocated "
            "blocks are in a parent image; refused");
  StoreLE(&b, 0x4c, 9, 4);
  EXPECT_EQ(OpenStatus(b).message(), "vdi: unknown image type 9");
  // A dynamic image that names a parent.
  b = bytes_;
  b[0x1b8] = 1;
  s = OpenStatus(b);
  EXPECT_EQ(s.code(), Status::Code::kRefused);
  EXPECT_EQ(s.message(),
            "vdi: names a parent image (link null, parent 00000001-0000-0000-0000-"
            "000000000000); refused");
}

TEST_F(VdiHostileTest, HeaderChecks) {
  auto patched = [&](size_t off, uint32_t v) {
    std::string b = bytes_;
    StoreLE(&b, off, v, 4);
    return OpenStatus(b);
  };
  EXPECT_EQ(patched(0x40, 0x12345678).message(), "vdi: bad signature 0x12345678");
  EXPECT_TRUE(patched(0x40, 0x12345678).IsCorruption());
  EXPECT_EQ(patched(0x44, 0x00010000).message(), "vdi: version 1.0 is not supported (only 1.1)");
  EXPECT_EQ(patched(0x168, 4096).message(), "vdi: sector size 4096 is not supported (only 512)");
  EXPECT_EQ(patched(0x178, 3 << 19).message(),
            "vdi: block size 1572864 is not a power of two from 512 B to 256 MiB");
  EXPECT_EQ(patched(0x178, 1u << 29).code(), Status::Code::kRefused);
  EXPECT_EQ(patched(0x17c, 16).message(), "vdi: blocks carry 16 extra bytes each; not supported");
  EXPECT_EQ(patched(0x158, 0x401).message(),
            "vdi: block map offset 0x200 or data offset 0x401 is not sector-aligned");
  EXPECT_EQ(patched(0x158, 0x200).message(),
            "vdi: data area at 0x200 overlaps the block map at 0x200 (+48)");
  EXPECT_EQ(patched(0x180, 11).message(),
            "vdi: disk size 11563520 is larger than its 11 blocks of 1048576 bytes");
  EXPECT_EQ(patched(0x180, 0x40000000).message(), "vdi: 1073741824 blocks is too many");
  Status big = patched(0x174, 0x100000);  // disk size above 2^52
  EXPECT_EQ(big.code(), Status::Code::kRefused);
  EXPECT_EQ(big.message(),
            "vdi: disk size " + std::to_string((uint64_t{1} << 52) + 11563520) + " is too large");
  VdiLimits small;
  small.max_map_bytes = 40;
  Status s = OpenStatus(bytes_, small);
  EXPECT_EQ(s.code(), Status::Code::kRefused);
  EXPECT_EQ(s.message(), "vdi: block map of 48 bytes is larger than the limit (40)");
  EXPECT_EQ(OpenStatus(bytes_.substr(0, 511)).message(), "vdi: file too short for a header");
  auto f = std::make_shared<MemByteSource>(bytes_);
  f->fail_reads = true;
  EXPECT_EQ(VdiReader::Open(f).status().code(), Status::Code::kIOError);
  EXPECT_EQ(kVdiFormat.probe(*f).status().code(), Status::Code::kIOError);
  MemByteSource not_vdi(std::string(4096, 'x'));
  EXPECT_FALSE(*kVdiFormat.probe(not_vdi));
}

}  // namespace
}  // namespace glancefs::format
