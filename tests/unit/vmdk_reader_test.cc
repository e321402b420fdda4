// VmdkReader against its oracle: images made by qemu-img (monolithicSparse, streamOptimized,
// compat6, zeroed grains) decode to the bytes `qemu-img convert -O raw` writes and map as
// `qemu-img map` does; the VMware-made samples of shared/corpus match oracle.tsv (hashed where
// at most 2 GiB) and their maps; and every hostile variant is refused with its own message.
#include "fs/format/vmdk_reader.h"

#include <gtest/gtest.h>

#include <functional>

#include "tests/fakes/fakes.h"
#include "tests/unit/format_test_util.h"

namespace glancefs::format {
namespace {

using glancefs::testing::MemByteSource;
using namespace testutil;

// Every TEST_F here needs qemu-img and qemu-io, and a scratch directory (dir_).
class VmdkReaderTest : public QemuTest {};

Result<Decoded> Decode(std::string bytes) {
  return kVmdkFormat.open(std::make_shared<MemByteSource>(std::move(bytes)));
}

// A sparse raw file of `size` bytes: random data, a 0x55 run, explicitly written zeros and
// holes, at offsets that straddle grains (and grain tables, for sizes over 32 MiB).
void MakeVmdkSource(const std::string& path, uint64_t size) {
  std::vector<Piece> pieces = {{0, 100000},
                               {300000, 512, 0x55},
                               {1 << 20, 65536},
                               // allocated zeros: qemu-img writes no grain
                               {(2 << 20) + 4096, 131072 - 4096, 0}};
  if (size > (33 << 20)) pieces.push_back({(32 << 20) - 70000, 140000});
  pieces.push_back({size - 700, 700});
  MakeSource(path, size, pieces);
}

// Data where qemu says data, kZero where it says present zeros, holes where it says absent.
void ExpectSameMap(ByteSource& raw, const QemuMap& qemu) {
  uint64_t covered = 0;
  for (const QemuMap::Segment& q : qemu.segments) {
    EXPECT_EQ(q.start, covered);
    Extent::Kind want =
        q.data ? Extent::Kind::kData : (q.present ? Extent::Kind::kZero : Extent::Kind::kHole);
    for (uint64_t off = q.start; off < q.start + q.length;) {
      auto e = raw.MapExtent(off);
      ASSERT_TRUE(e.ok()) << e.status().ToString();
      ASSERT_EQ(e->offset, off);
      ASSERT_GT(e->length, 0u);
      EXPECT_EQ(static_cast<int>(e->kind), static_cast<int>(want)) << "at " << off;
      off = std::min(e->offset + e->length, q.start + q.length);
    }
    covered = q.start + q.length;
  }
  EXPECT_EQ(covered, raw.size());
}

// `qemu-img convert -O vmdk -o OPTS` of dir/src.raw to dir/NAME: its path.
std::string MakeVmdk(const TempDir& dir, const std::string& opts,
                     const std::string& name = "img.vmdk") {
  return QemuConvertFromRaw(dir / "src.raw", "vmdk", opts, dir / name);
}

// Checks the decoder against qemu-img's raw and map of `vmdk`: one whole read, then odd-sized
// reads that start and end inside grains.
FormatInfo ExpectDecodesLikeQemu(const std::string& vmdk) {
  std::string ref = QemuConvertToRaw("vmdk", vmdk);
  QemuMap qemu_map = QemuMapOf("vmdk", vmdk);
  auto d = Decode(ReadFile(vmdk));
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  if (!d.ok()) return {};
  EXPECT_EQ(d->info.format, "vmdk");
  EXPECT_EQ(d->info.virtual_size, d->raw->size());
  EXPECT_TRUE(DecodeAll(*d->raw) == ReadFile(ref)) << "whole read differs";
  ExpectSameBytes(*d->raw, ref, 100003);
  ExpectSameMap(*d->raw, qemu_map);
  return d->info;
}

TEST_F(VmdkReaderTest, DecodesWhatQemuImgWrites) {
  const uint64_t size = (3 << 20) + 512;
  MakeVmdkSource(dir_ / "src.raw", size);
  struct Case {
    std::string opts, subformat, version, compression, hw;
  };
  for (const Case& c :
       {Case{"subformat=monolithicSparse", "monolithicSparse", "1", "none", "4"},
        Case{"subformat=streamOptimized", "streamOptimized", "3", "deflate", "4"},
        Case{"subformat=monolithicSparse,compat6=on", "monolithicSparse", "1", "none", "6"},
        Case{"subformat=streamOptimized,compat6=on,adapter_type=lsilogic", "streamOptimized", "3",
             "deflate", "6"},
        Case{"zeroed_grain=on", "monolithicSparse", "2", "none", "4"}}) {
    SCOPED_TRACE(c.opts);
    FormatInfo info = ExpectDecodesLikeQemu(MakeVmdk(dir_, c.opts));
    EXPECT_EQ(info.virtual_size, size);
    EXPECT_EQ(Fact(info.facts, "subformat"), c.subformat);
    EXPECT_EQ(Fact(info.facts, "version"), c.version);
    EXPECT_EQ(Fact(info.facts, "grain_size"), "65536");
    EXPECT_EQ(Fact(info.facts, "compression"), c.compression);
    EXPECT_EQ(Fact(info.facts, "hardware_version"), c.hw);
    EXPECT_EQ(Fact(info.facts, "adapter_type"),
              c.opts.find("lsilogic") != std::string::npos ? "lsilogic" : "ide");
  }
}

TEST_F(VmdkReaderTest, CrossesGrainTables) {
  MakeVmdkSource(dir_ / "src.raw", (67 << 20) + 512);
  for (std::string sub : {"monolithicSparse", "streamOptimized"}) {
    SCOPED_TRACE(sub);
    ExpectDecodesLikeQemu(MakeVmdk(dir_, "subformat=" + sub));
  }
}

TEST_F(VmdkReaderTest, ZeroedGrainsMapAsZeros) {
  std::string vmdk = dir_ / "z.vmdk";
  MustRun("qemu-img create -q -f vmdk -o zeroed_grain=on " + vmdk + " 4M");
  MustRun(
      "qemu-io -f vmdk -c 'write -P 7 0 256k' -c 'write -z 64k 128k' -c 'write -z 1M 1M' "
      "-c 'write -P 9 3M 1000' " +
      vmdk + " >/dev/null");
  FormatInfo info = ExpectDecodesLikeQemu(vmdk);
  EXPECT_EQ(Fact(info.facts, "zeroed_grain"), "true");
  auto d = Decode(ReadFile(vmdk));
  ASSERT_TRUE(d.ok());
  auto e = d->raw->MapExtent(1 << 20);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kZero);
  EXPECT_EQ(e->length, 1u << 20);
}

// A stream whose header says GD_AT_END: the footer copy is the one read. Made from qemu's
// stream by moving its header to a footer, as VMware's exports lay it out.
TEST_F(VmdkReaderTest, ReadsTheFooterWhenTheGrainDirectoryIsAtTheEnd) {
  MakeVmdkSource(dir_ / "src.raw", (3 << 20) + 512);
  std::string img = ReadFile(MakeVmdk(dir_, "subformat=streamOptimized", "q.vmdk"));
  img.resize((img.size() + 511) / 512 * 512, '\0');
  std::string footer_marker(512, '\0'), eos(512, '\0');
  StoreLE(&footer_marker, 0, 1, 8);
  StoreLE(&footer_marker, 12, 3, 4);
  std::string footer_header = img.substr(0, 512);
  StoreLE(&img, 56, ~uint64_t{0}, 8);
  std::string stream = img + footer_marker + footer_header + eos;
  WriteFile(dir_ / "stream.vmdk", stream);
  FormatInfo info = ExpectDecodesLikeQemu(dir_ / "stream.vmdk");
  EXPECT_EQ(Fact(info.facts, "footer"), "true");

  // A footer that is not one.
  std::string bad = stream;
  bad[bad.size() - 512 + 12] = 2;  // the end-of-stream marker's type
  auto d = Decode(bad);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Status::Code::kCorruption);
  EXPECT_NE(d.status().message().find("no end-of-stream marker"), std::string::npos)
      << d.status().ToString();
  bad = stream;
  StoreLE(&bad, bad.size() - 1024 + 56, ~uint64_t{0}, 8);
  d = Decode(bad);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("another footer"), std::string::npos);
}

TEST_F(VmdkReaderTest, ConcurrentReadsOfCompressedGrains) {
  MakeVmdkSource(dir_ / "src.raw", (3 << 20) + 512);
  std::string vmdk = MakeVmdk(dir_, "subformat=streamOptimized");
  VmdkLimits limits;
  limits.gt_cache_bytes = 1;  // one table: every thread evicts
  auto r = VmdkReader::Open(std::make_shared<MemByteSource>(ReadFile(vmdk)), limits);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ExpectRandomReadsMatch(**r, ReadFile(QemuConvertToRaw("vmdk", vmdk)),
                         {.threads = 4, .reads = 300, .max_bytes = 200000});
}

TEST(VmdkCorpusTest, VmwareStreamsHashToTheOracle) {
  ASSERT_TRUE(CorpusPresent());
  for (const std::string name : {"iotest-version3-old.vmdk", "iotest-version3.vmdk"}) {
    SCOPED_TRACE(name);
    // The size, the facts, and the hash of the 1 GiB one; the 16 GiB one's data is the pattern
    // below (see ExpectMatchesOracle).
    auto d = DecodeSample(kVmdkFormat, "vmdk",
                          {name,
                           {{"subformat", "streamOptimized"},
                            {"version", "3"},
                            {"footer", "true"},
                            {"adapter_type", "lsilogic"}}});
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    ExpectSameMap(*d->raw, CorpusMap(name));
  }
  // qemu-iotests 059: 512 bytes at i * 655360 + i * 512 hold 0x30 + i % 10.
  auto d = Decode(ReadSample("iotest-version3.vmdk"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(Fact(d->info.facts, "hardware_version"), "8");
  for (uint64_t i = 0; i < 100; ++i) {
    std::string buf(512, '\0');
    ASSERT_TRUE(d->raw->ReadAt(i * 655360 + i * 512, buf.size(), buf.data()).ok());
    EXPECT_EQ(buf, std::string(512, static_cast<char>(0x30 + i % 10))) << i;
  }
}

TEST(VmdkCorpusTest, FuzzedHeaderIsRefused) {
  ASSERT_TRUE(CorpusPresent());
  auto d = Decode(ReadSample("afl9.vmdk"));
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Status::Code::kRefused);
  EXPECT_NE(d.status().message().find("capacity of 2233785398448881665 sectors is too large"),
            std::string::npos)
      << d.status().ToString();
}

// ---- Refusals: descriptor files, foreign extents, parents, bad tables. ----

void ExpectStatus(const Result<Decoded>& d, Status::Code code, const std::string& needle) {
  ASSERT_FALSE(d.ok()) << "decoded; expected: " << needle;
  EXPECT_EQ(d.status().code(), code) << d.status().ToString();
  EXPECT_NE(d.status().message().find(needle), std::string::npos) << d.status().ToString();
}

TEST_F(VmdkReaderTest, RefusesDescriptorFiles) {
  MustRun("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + dir_ / "f.vmdk" + " 1M");
  ExpectStatus(Decode(ReadFile(dir_ / "f.vmdk")), Status::Code::kRefused,
               "a descriptor file (createType \"monolithicFlat\") whose data is in other files: "
               "\"f-flat.vmdk\"");
  MustRun("qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse " + dir_ / "t.vmdk" +
          " 1M");
  ExpectStatus(Decode(ReadFile(dir_ / "t.vmdk")), Status::Code::kRefused,
               "(createType \"twoGbMaxExtentSparse\") whose data is in other files: "
               "\"t-s001.vmdk\"");
  // Its extent file alone: a sparse header whose descriptor is empty.
  ExpectStatus(Decode(ReadFile(dir_ / "t-s001.vmdk")), Status::Code::kRefused,
               "the embedded descriptor has no createType");
  ExpectStatus(Decode(std::string("COWD") + std::string(2048, '\0')), Status::Code::kRefused,
               "COWD");
}

// Rewrites the embedded descriptor (sector 1 on, up to its first NUL) in place: the same
// number of bytes, NUL-padded, as a hex editor would.
std::string EditDescriptor(std::string image, const std::function<void(std::string&)>& edit) {
  uint64_t desc_bytes = LoadLE(image, 36, 8) * 512;
  std::string text = image.substr(512, desc_bytes);
  text.resize(text.find('\0'));
  edit(text);
  EXPECT_LE(text.size(), desc_bytes);
  text.resize(desc_bytes, '\0');
  return image.replace(512, desc_bytes, text);
}
void Replace(std::string& text, const std::string& from, const std::string& to) {
  size_t p = text.find(from);
  ASSERT_NE(p, std::string::npos) << from;
  text.replace(p, from.size(), to);
}

TEST_F(VmdkReaderTest, RefusesHostileDescriptors) {
  MustRun("qemu-img create -q -f vmdk " + dir_ / "a.vmdk" + " 3M");
  const std::string image = ReadFile(dir_ / "a.vmdk");
  ASSERT_TRUE(Decode(image).ok());
  const std::string extent = "RW 6144 SPARSE \"a.vmdk\"";
  struct Case {
    std::function<void(std::string&)> edit;
    Status::Code code;
    std::string message;
  };
  const Case cases[] = {
      {[](std::string& t) { t += "parentFileNameHint=\"base.vmdk\"\n"; }, Status::Code::kRefused,
       "vmdk names a parent file (parentFileNameHint \"base.vmdk\")"},
      {[](std::string& t) { t += "# parentFileNameHint=\"/etc/passwd\"\n"; },
       Status::Code::kRefused, "parentFileNameHint \"/etc/passwd\""},
      {[](std::string& t) { Replace(t, "parentCID=ffffffff", "parentCID=1234abcd"); },
       Status::Code::kRefused, "vmdk names a parent disk (parentCID \"1234abcd\")"},
      {[](std::string& t) { t += "RW 6144 SPARSE \"b.vmdk\"\n"; }, Status::Code::kRefused,
       "the descriptor lists 2 extents"},
      {[&](std::string& t) { Replace(t, extent, ""); }, Status::Code::kRefused,
       "the descriptor lists 0 extents"},
      {[&](std::string& t) { Replace(t, extent, "RW 6144 FLAT \"a-flat.vmdk\" 0"); },
       Status::Code::kRefused, "is not a sparse extent of this file"},
      {[&](std::string& t) { Replace(t, extent, "RW 6144 ZERO"); }, Status::Code::kRefused,
       "\"RW 6144 ZERO\" is not a sparse extent"},
      {[&](std::string& t) { Replace(t, extent, "RW 6144 SPARSE \"../etc/a.vmdk\""); },
       Status::Code::kRefused, "extent file name \"../etc/a.vmdk\" is empty or a path"},
      {[&](std::string& t) { Replace(t, extent, "NOACCESS 6144 SPARSE \"a.vmdk\""); },
       Status::Code::kRefused, "extent access \"NOACCESS\" is refused"},
      {[&](std::string& t) { Replace(t, extent, "RW 6143 SPARSE \"a.vmdk\""); },
       Status::Code::kCorruption,
       "the extent line says 6143 sectors, the header's capacity is "
       "6144"},
      {[](std::string& t) { Replace(t, "monolithicSparse", "vmfsSparse"); }, Status::Code::kRefused,
       "createType \"vmfsSparse\" is refused"},
      {[](std::string& t) { Replace(t, "monolithicSparse", "twoGbMaxExtentFlat"); },
       Status::Code::kRefused, "createType \"twoGbMaxExtentFlat\" is refused"},
      {[](std::string& t) { t += "# createType=\"vmfs\"\n"; }, Status::Code::kRefused,
       "names createType more than once"},
      {[](std::string& t) { t += "include /etc/passwd\n"; }, Status::Code::kRefused,
       "descriptor line \"include /etc/passwd\" is neither"},
      {[](std::string& t) { t += "ddb.comment = \"\xff\"\n"; }, Status::Code::kRefused,
       "not ASCII"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    ExpectStatus(Decode(EditDescriptor(image, c.edit)), c.code, c.message);
  }
  // Case does not matter to VMware, qemu's parent search or Glance.
  auto d = Decode(EditDescriptor(image, [](std::string& t) {
    Replace(t, "createType=\"monolithicSparse\"", "CREATETYPE=\"MonolithicSPARSE\"");
  }));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(Fact(d->info.facts, "subformat"), "monolithicSparse");
}

TEST_F(VmdkReaderTest, RefusesHostileHeaders) {
  MustRun("qemu-img create -q -f vmdk " + dir_ / "a.vmdk" + " 3M");
  const std::string image = ReadFile(dir_ / "a.vmdk");
  struct Case {
    size_t at;
    int width;
    uint64_t value;
    Status::Code code;
    std::string message;
  };
  const uint64_t past_eof = image.size() / 512 + 10;
  const Case cases[] = {
      {4, 4, 4, Status::Code::kRefused, "version 4 is not supported"},
      {12, 8, 0, Status::Code::kRefused, "capacity 0"},
      {20, 8, 3, Status::Code::kRefused, "grain of 3 sectors is not a power of two"},
      {20, 8, 8192, Status::Code::kRefused, "grain of 8192 sectors"},
      {28, 8, 2, Status::Code::kRefused, "embedded descriptor at sector 2"},
      {36, 8, 4096, Status::Code::kRefused, "(4096 sectors); it must start at sector 1"},
      {44, 4, 506, Status::Code::kRefused, "numGTEsPerGT 506 is not supported"},
      {56, 8, past_eof, Status::Code::kCorruption,
       "grain directory at sector " + std::to_string(past_eof) + " is outside the file"},
      {56, 8, image.size() / 512, Status::Code::kCorruption, "(+4) is outside the file"},
      {64, 8, past_eof, Status::Code::kCorruption, "grainOffset sector"},
      {73, 4, 0x0a0d0a0a, Status::Code::kCorruption, "newline check bytes are mangled"},
      {77, 2, 2, Status::Code::kRefused, "compression algorithm 2 is not supported"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    std::string bad = image;
    StoreLE(&bad, c.at, c.value, c.width);
    ExpectStatus(Decode(bad), c.code, c.message);
  }
  // A descriptor that would need a 64 MiB grain directory: refused before any allocation.
  std::string huge =
      EditDescriptor(image, [](std::string& t) { Replace(t, "RW 6144 ", "RW 34359738368 "); });
  StoreLE(&huge, 12, uint64_t{1} << 35, 8);
  StoreLE(&huge, 20, 1, 8);
  ExpectStatus(Decode(huge), Status::Code::kRefused,
               "grain directory of 268435456 bytes is larger than the limit");
}

// Bad tables found while reading: Corruption naming the offset, never a crash or wrong bytes.
TEST_F(VmdkReaderTest, BadGrainTablesAreCorruptionOnRead) {
  MakeVmdkSource(dir_ / "src.raw", (3 << 20) + 512);
  for (std::string sub : {"monolithicSparse", "streamOptimized"}) {
    SCOPED_TRACE(sub);
    const std::string image = ReadFile(MakeVmdk(dir_, "subformat=" + sub, "a.vmdk"));
    const uint64_t gt = LoadLE32(image.data() + LoadLE(image, 56, 8) * 512) * uint64_t{512};
    const uint64_t grain0 = LoadLE32(image.data() + gt) * uint64_t{512};
    char buf[4096];

    std::string bad = image;  // grain 0 past the end of the file
    StoreLE(&bad, gt, 0x7fffffff, 4);
    auto d = Decode(bad);
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    auto e = d->raw->MapExtent(0);
    ASSERT_TRUE(e.ok());
    EXPECT_EQ(e->kind, Extent::Kind::kData);  // from the tables only
    Status st = d->raw->ReadAt(0, sizeof buf, buf);
    EXPECT_EQ(st.code(), Status::Code::kCorruption);
    EXPECT_NE(st.message().find("at 0xfffffffe00"), std::string::npos) << st.ToString();
    EXPECT_NE(st.message().find("is outside the file"), std::string::npos) << st.ToString();
    EXPECT_TRUE(d->raw->ReadAt(1 << 20, sizeof buf, buf).ok());  // the rest reads

    bad = image;  // grain table 0 past the end of the file
    StoreLE(&bad, LoadLE(image, 56, 8) * 512, 0x7ffffff0, 4);
    d = Decode(bad);
    ASSERT_TRUE(d.ok());
    st = d->raw->ReadAt(0, sizeof buf, buf);
    EXPECT_NE(st.message().find("vmdk grain table at 0xffffffe000 (+2048) is outside the file"),
              std::string::npos)
        << st.ToString();
    EXPECT_FALSE(d->raw->MapExtent(0).ok());

    if (sub != "streamOptimized") continue;
    bad = image;  // a grain marker for another lba
    StoreLE(&bad, grain0, 128, 8);
    d = Decode(bad);
    ASSERT_TRUE(d.ok());
    st = d->raw->ReadAt(0, sizeof buf, buf);
    EXPECT_NE(st.message().find("is for lba 128, the grain table says 0"), std::string::npos)
        << st.ToString();
    bad = image;  // a compressed grain larger than two grains
    StoreLE(&bad, grain0 + 8, 3 << 16, 4);
    st = Decode(bad)->raw->ReadAt(0, sizeof buf, buf);
    EXPECT_NE(st.message().find("of 196608 bytes"), std::string::npos) << st.ToString();
    bad = image;  // a damaged deflate stream
    for (int i = 100; i < 200; ++i) bad[grain0 + i] ^= 0x5a;
    st = Decode(bad)->raw->ReadAt(0, sizeof buf, buf);
    EXPECT_EQ(st.code(), Status::Code::kCorruption);
    EXPECT_NE(st.message().find("compressed grain at"), std::string::npos) << st.ToString();
  }
}

TEST_F(VmdkReaderTest, Probe) {
  auto probe = [](std::string bytes) {
    MemByteSource src(std::move(bytes));
    auto r = kVmdkFormat.probe(src);
    EXPECT_TRUE(r.ok());
    return r.ok() && *r;
  };
  EXPECT_STREQ(kVmdkFormat.name, "vmdk");
  EXPECT_TRUE(probe("KDMV" + std::string(508, '\0')));
  EXPECT_TRUE(probe("COWD" + std::string(508, '\0')));
  EXPECT_TRUE(probe("# Disk DescriptorFile\nversion=1\n"));
  EXPECT_TRUE(probe("# a comment\n   \nversion=2\r\nCID=1\n"));
  EXPECT_FALSE(probe("# a comment\nname=x\nversion=1\n"));
  EXPECT_FALSE(probe(std::string("QFI\xfb", 4) + std::string(100, '\0')));
  EXPECT_FALSE(probe("KDM"));
  EXPECT_FALSE(probe(""));
}

}  // namespace
}  // namespace glancefs::format
