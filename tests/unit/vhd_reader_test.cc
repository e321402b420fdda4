// The VHD decoder against its oracle, qemu-img 7.2: images made by `qemu-img convert -O vpc`
// (fixed and dynamic, with and without force_size) from a sparse source with holes, zero runs,
// random data and a size that is not a multiple of the block size decode to exactly what
// `qemu-img convert -O raw` gives, with extents consistent with `qemu-img map`; the size rule
// picks what qemu picks for every creator; the third-party samples decode to the corpus oracle
// (their map, their size rules, and the hash of those of at most 2 GiB).
// Hostile images, patched here, are refused or reported corrupt, each with its own message,
// without allocating what they claim.
#include "fs/format/vhd_reader.h"

#include <gtest/gtest.h>

#include <functional>

#include "tests/fakes/fakes.h"
#include "tests/unit/format_test_util.h"

namespace glancefs::format {
namespace {

using glancefs::testing::MemByteSource;
using namespace testutil;

// Sets the footer checksum of the 512 bytes at `at`.
void FixChecksum(std::string* img, size_t at) {
  StoreBE(img, at + 64, 0, 4);
  uint32_t sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += static_cast<unsigned char>((*img)[at + i]);
  StoreBE(img, at + 64, ~sum, 4);
}

// A footer with the given fields and a valid checksum.
std::string Footer(uint32_t type, const std::string& creator, uint16_t c, uint8_t h, uint8_t s,
                   uint64_t current_size, uint64_t data_offset) {
  std::string f(512, '\0');
  f.replace(0, 8, "conectix");
  StoreBE(&f, 8, 2, 4);            // features
  StoreBE(&f, 12, 0x00010000, 4);  // version
  StoreBE(&f, 16, data_offset, 8);
  f.replace(28, 4, creator);
  StoreBE(&f, 32, 0x00050003, 4);
  f.replace(36, 4, "Wi2k");
  StoreBE(&f, 40, current_size, 8);
  StoreBE(&f, 48, current_size, 8);
  StoreBE(&f, 56, c, 2);
  f[58] = static_cast<char>(h);
  f[59] = static_cast<char>(s);
  StoreBE(&f, 60, type, 4);
  FixChecksum(&f, 0);
  return f;
}

class VhdReaderTest : public SourceTest {
 protected:
  // qemu-img convert -O vpc with `opts`; returns the image path.
  std::string Make(const std::string& name, const std::string& opts) {
    return Convert("vpc", name, opts);
  }
};

TEST_F(VhdReaderTest, QemuImagesDecodeExactlyAsQemuImg) {
  struct Case {
    const char* opts;
    const char* subformat;
    const char* creator;
    const char* size_rule;
  };
  for (const Case& c : {Case{"subformat=dynamic", "dynamic", "qemu", "chs"},
                        Case{"subformat=dynamic,force_size=on", "dynamic", "qem2", "current_size"},
                        Case{"subformat=fixed", "fixed", "qemu", "chs"},
                        Case{"subformat=fixed,force_size=on", "fixed", "qem2", "current_size"}}) {
    SCOPED_TRACE(c.opts);
    std::string img = Make("test.vhd", c.opts);
    auto file = OpenFile(img);
    ASSERT_TRUE(file);
    auto reader = VhdReader::Open(file);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    VhdReader& r = **reader;
    EXPECT_EQ(r.size(), QemuVirtualSize("vpc", img));
    EXPECT_EQ(Fact(r.Facts(), "subformat"), c.subformat);
    EXPECT_EQ(Fact(r.Facts(), "creator_application"), c.creator);
    EXPECT_EQ(Fact(r.Facts(), "size_rule"), c.size_rule);
    EXPECT_EQ(Fact(r.Facts(), "creator_version"), "5.3");
    if (std::string(c.subformat) == "dynamic") {
      EXPECT_EQ(Fact(r.Facts(), "block_size"), "2097152");
    }
    if (std::string(c.size_rule) == "current_size") {
      EXPECT_EQ(Fact(r.Facts(), "disk_geometry"), "65535/16/255");
      EXPECT_EQ(r.size(), kSourceBytes);
    } else {
      EXPECT_GT(r.size(), kSourceBytes);  // qemu rounds up to a geometry
    }

    // The bytes, read whole and at random from four threads at once.
    QemuComparison q = CompareWithQemu(r, "vpc", img, {.threads = 4, .reads = 64});

    // Extents: never data where qemu has none (checked above), never a hole where qemu does not
    // read zeros; a dynamic disk's data is exactly its allocated blocks, as qemu reports them.
    EXPECT_TRUE(Covers(q.qemu.zero, q.mine.other));
    if (std::string(c.subformat) == "dynamic") {
      EXPECT_EQ(q.qemu.data, q.mine.data);
      EXPECT_FALSE(q.mine.other.empty());  // the source's holes stay holes
    }
  }
}

TEST_F(VhdReaderTest, ProbeFindsTheFooterAtEitherEnd) {
  for (const char* opts : {"subformat=dynamic", "subformat=fixed"}) {
    MemByteSource img(ReadFile(Make("probe.vhd", opts)));
    auto p = kVhdFormat.probe(img);
    ASSERT_TRUE(p.ok());
    EXPECT_TRUE(*p) << opts;
  }
  MemByteSource raw(ReadFile(src_));
  EXPECT_FALSE(*kVhdFormat.probe(raw));
  MemByteSource tiny("conectix");
  EXPECT_TRUE(*kVhdFormat.probe(tiny));
  MemByteSource empty("");
  EXPECT_FALSE(*kVhdFormat.probe(empty));
  EXPECT_STREQ(kVhdFormat.name, "vhd");
}

// The size rule against qemu-img info on the same bytes, for every creator qemu names, a few it
// does not, and both kinds of geometry.
TEST_F(VhdReaderTest, SizeRuleMatchesQemuForEveryCreator) {
  const uint64_t current = 700000;  // not a whole number of sectors: rounded down
  struct Geometry {
    uint16_t c;
    uint8_t h, s;
  };
  for (const Geometry& g : {Geometry{20, 4, 17}, Geometry{65535, 16, 255}}) {
    for (std::string creator :
         {std::string("vpc "), std::string("qemu"), std::string("qem2"), std::string("win "),
          std::string("d2v "), std::string("d2v\0", 4), std::string("CTXS"),
          std::string("tap\0", 4), std::string("tap "), std::string("vs  ")}) {
      SCOPED_TRACE(creator + " " + std::to_string(g.c));
      std::string img(1 * kMiB, '\0');
      for (size_t i = 0; i < img.size(); i += 4096) img[i] = static_cast<char>(i >> 12 | 1);
      img += Footer(2, creator, g.c, g.h, g.s, current, ~uint64_t{0});
      std::string path = dir_ / "rule.vhd";
      WriteFile(path, img);
      uint64_t qemu_size = QemuVirtualSize("vpc", path);
      auto r = VhdReader::Open(std::make_shared<MemByteSource>(img));
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      EXPECT_EQ((*r)->size(), qemu_size);
      bool chs = qemu_size == uint64_t{g.c} * g.h * g.s * 512;
      EXPECT_EQ(Fact((*r)->Facts(), "size_rule"), chs ? "chs" : "current_size");
      if (!chs) {
        EXPECT_EQ(qemu_size, current / 512 * 512);
      }
      ExpectSameBytes(**r, QemuConvertToRaw("vpc", path));
    }
  }
}

TEST_F(VhdReaderTest, FooterChecksumMismatchIsCorruptionAsInQemu) {
  std::string img = ReadFile(Make("sum.vhd", "subformat=dynamic"));
  img[70] ^= 1;  // inside the UUID, at offset 0: the copy qemu and this reader use
  std::string path = dir_ / "badsum.vhd";
  WriteFile(path, img);
  ShellResult qemu = Shell("qemu-img info -f vpc " + path);
  EXPECT_FALSE(qemu.ok());
  EXPECT_NE(qemu.output().find("checksum"), std::string::npos) << qemu.output();
  auto r = VhdReader::Open(std::make_shared<MemByteSource>(img));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
  EXPECT_NE(r.status().message().find("footer checksum mismatch"), std::string::npos)
      << r.status().ToString();
}

TEST_F(VhdReaderTest, DifferencingDiskIsRefusedNamingItsParent) {
  std::string img = ReadFile(Make("diff.vhd", "subformat=dynamic"));
  for (size_t at : {size_t{0}, img.size() - 512}) {
    StoreBE(&img, at + 60, 4, 4);
    FixChecksum(&img, at);
  }
  const std::string parent = "base.vhd";
  for (size_t i = 0; i < parent.size(); ++i) StoreBE(&img, 512 + 64 + 2 * i, parent[i], 2);
  auto r = VhdReader::Open(std::make_shared<MemByteSource>(img));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kRefused);
  EXPECT_EQ(r.status().message(), "vhd differencing disk names a parent \"base.vhd\"");
  // Through the registry's spec too.
  auto d = kVhdFormat.open(std::make_shared<MemByteSource>(img));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Status::Code::kRefused);
}

TEST_F(VhdReaderTest, BatEntryPastTheEndOfTheFileIsCorruptionWhenRead) {
  std::string img = ReadFile(Make("bat.vhd", "subformat=dynamic"));
  const uint64_t bat = LoadBE(img, 512 + 16, 8);
  ASSERT_NE(LoadBE(img, bat, 4), 0xFFFFFFFFu);  // block 0 holds data
  StoreBE(&img, bat, 0x00F00000, 4);            // sector 15 Mi: 7.5 GiB, past the end
  auto r = VhdReader::Open(std::make_shared<MemByteSource>(img));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  char buf[4096];
  Status s = (*r)->ReadAt(1000, sizeof buf, buf);
  EXPECT_EQ(s.code(), Status::Code::kCorruption);
  EXPECT_NE(s.message().find("vhd: block 0 (BAT entry 0xf00000) has data at 0x1e00005e8+4096"),
            std::string::npos)
      << s.ToString();
  EXPECT_NE(s.message().find("outside the file"), std::string::npos);
  EXPECT_EQ((*r)->MapExtent(0).status().code(), Status::Code::kCorruption);
  // The other blocks still read.
  EXPECT_TRUE((*r)->ReadAt(4 * kMiB, sizeof buf, buf).ok());
}

TEST_F(VhdReaderTest, BatLargerThanTheFileIsCorruptionAtOpenWithoutAllocating) {
  std::string img = ReadFile(Make("bigbat.vhd", "subformat=dynamic"));
  StoreBE(&img, 512 + 28, 0x40000001, 4);  // max_table_entries: afl5's 1073741825
  auto counting = std::make_shared<CountingSource>(std::make_shared<MemByteSource>(img));
  auto r = VhdReader::Open(counting);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
  EXPECT_NE(r.status().message().find("BAT of 1073741825 entries at 0x600 runs past the end of "
                                      "the file"),
            std::string::npos)
      << r.status().ToString();
  EXPECT_LE(counting->total_read, 4096u);
}

TEST_F(VhdReaderTest, MalformedHeadersAreCorruption) {
  std::string good = ReadFile(Make("hdr.vhd", "subformat=dynamic"));
  struct Case {
    const char* what;
    std::function<void(std::string*)> patch;
    const char* message;
  };
  std::vector<Case> cases = {
      {"no magic anywhere",
       [](std::string* s) {
         (*s)[0] = 'x';
         (*s)[s->size() - 512] = 'x';
       },
       "no footer"},
      {"block size not a power of two", [](std::string* s) { StoreBE(s, 512 + 32, 3000, 4); },
       "block size 3000 is not a power of two"},
      {"no dynamic header magic", [](std::string* s) { (*s)[512] = 'X'; },
       "no dynamic header (\"cxsparse\") at 0x200"},
      {"dynamic header outside the file",
       [](std::string* s) {
         StoreBE(s, 16, 1ULL << 40, 8);
         FixChecksum(s, 0);
       },
       "dynamic header at 0x10000000000 is outside the file"},
      {"BAT too small for the disk", [](std::string* s) { StoreBE(s, 512 + 28, 3, 4); },
       "BAT of 3 entries is too small"},
      {"unknown disk type",
       [](std::string* s) {
         StoreBE(s, 60, 6, 4);
         FixChecksum(s, 0);
       },
       "disk type 6 is not fixed (2), dynamic (3) or differencing (4)"},
      {"over 2040 GiB",
       [](std::string* s) {
         StoreBE(s, 48, 3ULL << 40, 8);
         s->replace(28, 4, "win ");
         FixChecksum(s, 0);
       },
       "over the 2040 GiB maximum"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::string img = good;
    c.patch(&img);
    auto r = VhdReader::Open(std::make_shared<MemByteSource>(img));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Status::Code::kCorruption);
    EXPECT_NE(r.status().message().find(c.message), std::string::npos) << r.status().ToString();
  }
  // A fixed disk whose footer claims more bytes than precede it.
  std::string fixed(64 * 1024, '\0');
  fixed += Footer(2, "win ", 1, 1, 1, 1 * kMiB, ~uint64_t{0});
  auto r = VhdReader::Open(std::make_shared<MemByteSource>(fixed));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("does not fit before its footer"), std::string::npos)
      << r.status().ToString();
  EXPECT_EQ(VhdReader::Open(std::make_shared<MemByteSource>("conectix")).status().code(),
            Status::Code::kCorruption);
}

// ---- The third-party samples (qemu-iotests' sample_images), against qemu-img 7.2's oracle ----

class VhdCorpusTest : public ::testing::TestWithParam<CorpusSample> {};

TEST_P(VhdCorpusTest, DecodesToTheOracle) {
  // The size, the facts, and the hash of all but the 127 GiB ones (see ExpectMatchesOracle).
  auto d = DecodeSample(kVhdFormat, "vpc", GetParam());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  // The allocated blocks are exactly qemu's data.
  QemuMap qemu = CorpusMap(GetParam().name);
  ReaderMap mine = MapOf(*d->raw);
  EXPECT_EQ(mine.data, qemu.data);
  EXPECT_TRUE(Covers(qemu.zero, mine.other));
}

// With the size rules of the real producers: the creator, the rule qemu picks for it, the
// geometry.
CorpusSample VhdSample(const char* name, const char* creator, const char* rule,
                       const char* geometry) {
  return {name,
          {{"creator_application", creator},
           {"size_rule", rule},
           {"disk_geometry", geometry},
           {"subformat", "dynamic"}}};
}

INSTANTIATE_TEST_SUITE_P(
    Samples, VhdCorpusTest,
    ::testing::Values(VhdSample("d2v-zerofilled.vhd", "d2v", "current_size", "65535/16/255"),
                      VhdSample("hyperv2012r2-dynamic.vhd", "win", "current_size", "65278/16/255"),
                      VhdSample("virtualpc-dynamic.vhd", "vpc", "chs", "65278/16/255")),
    CorpusSampleName);

// afl5.img: a fuzzed VHD whose BAT claims 1073741825 entries; qemu refuses it, so must this,
// cleanly and without a giant allocation.
TEST(VhdCorpusFacts, FuzzedSampleIsRefusedCleanly) {
  TempDir dir("glancefs-vhd-afl");
  std::string path = Unpack("afl5.img", dir.path());
  ASSERT_FALSE(path.empty());
  auto counting = std::make_shared<CountingSource>(OpenFile(path));
  ASSERT_TRUE(*kVhdFormat.probe(*counting));
  auto d = kVhdFormat.open(counting);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Status::Code::kCorruption);
  EXPECT_NE(d.status().message().find("BAT of 1073741825 entries"), std::string::npos)
      << d.status().ToString();
  EXPECT_LE(counting->largest_read, 4096u);
}

}  // namespace
}  // namespace glancefs::format
