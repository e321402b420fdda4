// The VHDX decoder against its oracle, qemu-img 7.2: images made by `qemu-img convert -O vhdx`
// (fixed and dynamic, 1 MiB and 32 MiB blocks, block_state_zero on and off) from a sparse source
// with holes, zero runs, random data and a size that is not a multiple of the block size decode
// to exactly what `qemu-img convert -O raw` gives; a log written here (two entries, the second
// wrapping around the end of the log, rewriting data, zeroing and remapping a block through the
// BAT) replays in memory to exactly what qemu's on-disk replay gives; the third-party samples
// (one with a dirty log) decode to the corpus oracle (hashed where at most 2 GiB). Hostile
// images, patched here with their CRC-32C fixed so that the checksum is not what rejects them,
// are refused or reported corrupt, each with its own message.
#include "fs/format/vhdx_reader.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/fakes/fakes.h"
#include "tests/unit/format_test_util.h"

namespace glancefs::format {
namespace {

using glancefs::testing::MemByteSource;
using namespace testutil;

constexpr size_t kHeader1 = 64 * 1024, kHeader2 = 128 * 1024;
constexpr size_t kRegions1 = 192 * 1024, kRegions2 = 256 * 1024;

// The on-disk bytes of a GUID written in its usual text form.
std::string GuidBytes(const std::string& text) {
  std::string hex;
  for (char c : text) {
    if (c != '-') hex += c;
  }
  std::string be;
  for (size_t i = 0; i < 32; i += 2) be += static_cast<char>(std::stoi(hex.substr(i, 2), 0, 16));
  std::string g = be;
  const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int i = 0; i < 16; ++i) g[i] = be[order[i]];
  return g;
}

const std::string kBatGuid = GuidBytes("2DC27766-F623-4200-9D64-115E9BFD4A08");
const std::string kMetadataGuid = GuidBytes("8B7CA206-4790-4B9A-B8FE-575F050F886E");
const std::string kFileParamsGuid = GuidBytes("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
const std::string kPage83Guid = GuidBytes("BECA12AB-B2E6-4523-93EF-C309E000C746");
const std::string kLogicalSectorGuid = GuidBytes("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");

// Recomputes the CRC-32C at `at` + 4 over `n` bytes.
void FixCrc(std::string* img, size_t at, size_t n) {
  StoreLE(img, at + 4, 0, 4);
  StoreLE(img, at + 4, Crc32c(0, img->data() + at, n), 4);
}

// Where the region table (first copy) puts a region: {offset, length}; {0, 0} if absent.
std::pair<uint64_t, uint64_t> RegionOf(const std::string& img, const std::string& guid) {
  uint32_t n = static_cast<uint32_t>(LoadLE(img, kRegions1 + 8, 4));
  for (uint32_t i = 0; i < n; ++i) {
    size_t e = kRegions1 + 16 + 32 * i;
    if (img.compare(e, 16, guid) == 0) return {LoadLE(img, e + 16, 8), LoadLE(img, e + 24, 4)};
  }
  return {0, 0};
}

// The file offset of metadata item `guid`.
uint64_t MetadataItem(const std::string& img, const std::string& guid) {
  uint64_t md = RegionOf(img, kMetadataGuid).first;
  uint16_t n = static_cast<uint16_t>(LoadLE(img, md + 10, 2));
  for (uint16_t i = 0; i < n; ++i) {
    size_t e = md + 32 + 32 * i;
    if (img.compare(e, 16, guid) == 0) return md + LoadLE(img, e + 16, 4);
  }
  ADD_FAILURE() << "no such metadata item";
  return 0;
}

// The header with the higher sequence number.
size_t CurrentHeader(const std::string& img) {
  return LoadLE(img, kHeader2 + 8, 8) > LoadLE(img, kHeader1 + 8, 8) ? kHeader2 : kHeader1;
}

// A VHDX log entry under construction (the spec's layout; see vhdx_reader.h).
struct LogEntryBuilder {
  uint64_t seq = 0, tail = 0, flushed = 0, last = 0;
  std::string guid;
  struct Desc {
    bool zero;
    uint64_t offset, length;
    std::string page;  // data: 4096 bytes
  };
  std::vector<Desc> descs;

  std::string Build() const {
    const size_t desc_sectors = (descs.size() + 2 + 127) / 128;
    size_t data = 0;
    for (const Desc& d : descs) data += !d.zero;
    std::string e((desc_sectors + data) * 4096, '\0');
    e.replace(0, 4, "loge");
    StoreLE(&e, 8, e.size(), 4);
    StoreLE(&e, 12, tail, 4);
    StoreLE(&e, 16, seq, 8);
    StoreLE(&e, 24, descs.size(), 4);
    e.replace(32, 16, guid);
    StoreLE(&e, 48, flushed, 8);
    StoreLE(&e, 56, last, 8);
    size_t next_data = desc_sectors * 4096;
    for (size_t i = 0; i < descs.size(); ++i) {
      const Desc& d = descs[i];
      size_t at = 64 + 32 * i;
      if (d.zero) {
        e.replace(at, 4, "zero");
        StoreLE(&e, at + 8, d.length, 8);
      } else {
        e.replace(at, 4, "desc");
        e.replace(at + 4, 4, d.page.substr(4092, 4));  // trailing bytes
        e.replace(at + 8, 8, d.page.substr(0, 8));     // leading bytes
        e.replace(next_data, 4, "data");
        StoreLE(&e, next_data + 4, seq >> 32, 4);
        e.replace(next_data + 8, 4084, d.page.substr(8, 4084));
        StoreLE(&e, next_data + 4092, seq & 0xFFFFFFFF, 4);
        next_data += 4096;
      }
      StoreLE(&e, at + 16, d.offset, 8);
      StoreLE(&e, at + 24, seq, 8);
    }
    StoreLE(&e, 4, Crc32c(0, e.data(), e.size()), 4);
    return e;
  }
};

class VhdxReaderTest : public SourceTest {
 protected:
  std::string Make(const std::string& name, const std::string& opts) {
    return Convert("vhdx", name, opts);
  }

  // Opens the bytes; fails the test unless it gives `code` with `message` in its text.
  void ExpectOpenFails(const std::string& img, Status::Code code, const std::string& message,
                       const VhdxLimits& limits = VhdxLimits()) {
    auto r = VhdxReader::Open(std::make_shared<MemByteSource>(img), limits);
    ASSERT_FALSE(r.ok()) << "expected: " << message;
    EXPECT_EQ(r.status().code(), code) << r.status().ToString();
    EXPECT_NE(r.status().message().find(message), std::string::npos) << r.status().ToString();
  }
};

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c(0, "123456789", 9), 0xE3069283u);
  EXPECT_EQ(Crc32c(0, "", 0), 0u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(0, zeros.data(), zeros.size()), 0x8A9136AAu);
  // Continued over pieces, as over a log entry's sectors.
  std::string s = "The quick brown fox jumps over the lazy dog, twice or more: abcdefghij";
  for (size_t cut = 0; cut <= s.size(); ++cut) {
    EXPECT_EQ(Crc32c(Crc32c(0, s.data(), cut), s.data() + cut, s.size() - cut),
              Crc32c(0, s.data(), s.size()));
  }
}

TEST_F(VhdxReaderTest, QemuImagesDecodeExactlyAsQemuImg) {
  for (std::string opts :
       {"subformat=dynamic,block_size=1M", "subformat=dynamic,block_size=32M", "subformat=dynamic",
        "subformat=fixed,block_size=1M", "subformat=fixed,block_size=32M",
        "subformat=dynamic,block_size=1M,block_state_zero=off",
        "subformat=fixed,block_size=1M,block_state_zero=off"}) {
    SCOPED_TRACE(opts);
    std::string img = Make("test.vhdx", opts);
    auto file = OpenFile(img);
    ASSERT_TRUE(file);
    ASSERT_TRUE(*kVhdxFormat.probe(*file));
    auto reader = VhdxReader::Open(file);
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    VhdxReader& r = **reader;
    EXPECT_EQ(r.size(), QemuVirtualSize("vhdx", img));
    EXPECT_EQ(r.size(), kSourceBytes);
    EXPECT_EQ(Fact(r.Facts(), "subformat"),
              opts.find("fixed") != std::string::npos ? "fixed" : "dynamic");
    if (opts.find("block_size=1M") != std::string::npos) {
      EXPECT_EQ(Fact(r.Facts(), "block_size"), "1048576");
    }
    if (opts.find("block_size=32M") != std::string::npos) {
      EXPECT_EQ(Fact(r.Facts(), "block_size"), "33554432");
    }
    EXPECT_EQ(Fact(r.Facts(), "logical_sector_size"), "512");
    EXPECT_EQ(Fact(r.Facts(), "log"), "clean");
    EXPECT_EQ(Fact(r.Facts(), "creator_application").rfind("QEMU", 0), 0u)
        << Fact(r.Facts(), "creator_application");

    // The bytes, read whole and at random from four threads at once. qemu's vhdx driver
    // reports everything as data; this reader's extents are exact: its data lies within qemu's
    // (checked there), and its holes read as zeros (checked by the bytes).
    QemuComparison q = CompareWithQemu(r, "vhdx", img, {.threads = 4, .reads = 64});
    if (opts.find("subformat=dynamic,block_size=1M") == 0) {
      EXPECT_FALSE(q.mine.other.empty());  // the source's holes are holes here
    }
  }
}

// A dirty log, written here: qemu refuses the read-only open, replays it on `qemu-img check -r
// all`; the reader replays it in memory to the same bytes, without touching the file.
TEST_F(VhdxReaderTest, DirtyLogReplaysInMemoryAsQemuReplaysOnDisk) {
  std::string path = Make("log.vhdx", "subformat=dynamic,block_size=1M");
  std::string img = ReadFile(path);
  const size_t hdr = CurrentHeader(img);
  const uint64_t log_off = LoadLE(img, hdr + 72, 8), log_len = LoadLE(img, hdr + 68, 4);
  ASSERT_EQ(log_len, 1 * kMiB);
  const uint64_t bat = RegionOf(img, kBatGuid).first;
  const uint64_t entry0 = LoadLE(img, bat, 8);
  ASSERT_EQ(entry0 & 7, 6u);                   // block 0 holds data
  ASSERT_EQ(LoadLE(img, bat + 8, 8) & 7, 2u);  // block 1 is zero (block_state_zero=on)
  const uint64_t block0 = entry0 & ~uint64_t{0xFFFFF};

  std::mt19937_64 rng(99);
  std::string guid = RandomBytes(rng, 16);
  for (size_t h : {kHeader1, kHeader2}) {
    img.replace(h + 48, 16, guid);
    FixCrc(&img, h, 4096);
  }
  // e1 (seq 10, three sectors) ends 4 KiB before the end of the log; e2 (seq 11, three sectors)
  // starts there and wraps to the start. e2 rewrites e1's page, zeroes 8 KiB of block 0 and
  // maps block 1 onto block 0's data through the first BAT page.
  LogEntryBuilder e1;
  e1.seq = 10;
  e1.guid = guid;
  e1.flushed = e1.last = img.size();
  e1.tail = log_len - 4 * 4096;
  e1.descs.push_back({false, block0 + 8192, 0, RandomBytes(rng, 4096)});
  e1.descs.push_back({false, block0 + 40960, 0, RandomBytes(rng, 4096)});
  LogEntryBuilder e2 = e1;
  e2.seq = 11;
  e2.descs.clear();
  e2.descs.push_back({false, block0 + 8192, 0, RandomBytes(rng, 4096)});
  e2.descs.push_back({true, block0 + 16384, 8192, ""});
  std::string bat_page = img.substr(bat, 4096);
  StoreLE(&bat_page, 8, entry0, 8);
  e2.descs.push_back({false, bat, 0, bat_page});
  std::string b1 = e1.Build(), b2 = e2.Build();
  ASSERT_EQ(b1.size(), 3 * 4096u);
  ASSERT_EQ(b2.size(), 3 * 4096u);
  img.replace(log_off + log_len - 4 * 4096, b1.size(), b1);
  img.replace(log_off + log_len - 4096, 4096, b2.substr(0, 4096));
  img.replace(log_off, 2 * 4096, b2.substr(4096));
  WriteFile(path, img);

  ShellResult info = Shell("qemu-img info -f vhdx " + path);
  EXPECT_FALSE(info.ok());
  EXPECT_NE(info.output().find("log that needs to be replayed"), std::string::npos)
      << info.output();

  auto reader = VhdxReader::Open(std::make_shared<MemByteSource>(img));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_EQ(Fact((*reader)->Facts(), "log"), "replayed");
  EXPECT_EQ((*reader)->info().log_entries_replayed, 2u);

  std::string copy = dir_ / "replayed.vhdx";
  MustRun("cp " + path + " " + copy + " && qemu-img check -q -r all -f vhdx " + copy + " || true");
  ExpectSameBytes(**reader, QemuConvertToRaw("vhdx", copy));
  // What the log changed: block 1 is block 0 now, with e2's page and a zeroed run.
  std::string got(4096, '\0');
  ASSERT_TRUE((*reader)->ReadAt(1 * kMiB + 8192, 4096, got.data()).ok());
  EXPECT_EQ(got, e2.descs[0].page);
  ASSERT_TRUE((*reader)->ReadAt(16384, 4096, got.data()).ok());
  EXPECT_EQ(got, std::string(4096, '\0'));
  ASSERT_TRUE((*reader)->ReadAt(40960, 4096, got.data()).ok());
  EXPECT_EQ(got, e1.descs[1].page);
  // The file itself is as it was.
  EXPECT_EQ(ReadFile(path), img);

  // A log larger than the limit is refused rather than ignored.
  VhdxLimits small;
  small.max_log_bytes = 512 * 1024;
  ExpectOpenFails(img, Status::Code::kRefused, "vhdx log of 1048576 bytes needs replay", small);

  // A log whose head names a tail outside its run is no sequence: nothing is replayed (qemu
  // would replay the run; the spec says a sequence starts at its head's tail).
  std::string torn = img;
  torn.replace(log_off + log_len - 4 * 4096, 4, "xxxx");  // e1 gone: e2's tail points nowhere
  auto t = VhdxReader::Open(std::make_shared<MemByteSource>(torn));
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(Fact((*t)->Facts(), "log"), "clean");

  // FlushedFileOffset past the end of the file: truncated, Corruption.
  LogEntryBuilder e3 = e2;
  e3.seq = 12;
  e3.tail = 8192;
  e3.flushed = img.size() + kMiB;
  e3.descs.resize(1);
  std::string trunc = img;
  trunc.replace(log_off + 8192, 2 * 4096, e3.Build());
  ExpectOpenFails(trunc, Status::Code::kCorruption, "past the end of the file");
}

TEST_F(VhdxReaderTest, RegionTableOutsideTheFileIsCorruption) {
  std::string img = ReadFile(Make("region.vhdx", "subformat=dynamic,block_size=1M"));
  uint32_t n = static_cast<uint32_t>(LoadLE(img, kRegions1 + 8, 4));
  size_t bat_entry = 0;
  for (uint32_t i = 0; i < n; ++i) {
    if (img.compare(kRegions1 + 16 + 32 * i, 16, kBatGuid) == 0)
      bat_entry = kRegions1 + 16 + 32 * i;
  }
  ASSERT_NE(bat_entry, 0u);
  std::string bad = img;
  StoreLE(&bad, bat_entry + 16, (img.size() / kMiB + 16) * kMiB, 8);
  // Without its CRC fixed, the first copy is invalid and the second one is used.
  auto r = VhdxReader::Open(std::make_shared<MemByteSource>(bad));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->size(), kSourceBytes);
  // With it fixed, the table is believed and points outside the file.
  FixCrc(&bad, kRegions1, 64 * 1024);
  ExpectOpenFails(bad, Status::Code::kCorruption, "region table points outside the file: the BAT");
  // A length running past the end is the same.
  bad = img;
  StoreLE(&bad, bat_entry + 24, 0xFFF00000u, 4);
  FixCrc(&bad, kRegions1, 64 * 1024);
  ExpectOpenFails(bad, Status::Code::kCorruption, "region table points outside the file");
  // Both copies broken.
  bad = img;
  bad[kRegions1 + 100] ^= 1;
  bad[kRegions2 + 100] ^= 1;
  ExpectOpenFails(bad, Status::Code::kCorruption, "no valid region table");
  // Overlapping regions: the BAT moved onto the metadata.
  bad = img;
  StoreLE(&bad, bat_entry + 16, RegionOf(img, kMetadataGuid).first, 8);
  FixCrc(&bad, kRegions1, 64 * 1024);
  ExpectOpenFails(bad, Status::Code::kCorruption, "overlaps");
  // An unknown required region.
  bad = img;
  size_t extra = kRegions1 + 16 + 32 * n;
  bad.replace(extra, 16, GuidBytes("01234567-89AB-CDEF-0123-456789ABCDEF"));
  StoreLE(&bad, extra + 16, 64 * kMiB, 8);
  StoreLE(&bad, extra + 24, kMiB, 4);
  StoreLE(&bad, extra + 28, 1, 4);
  StoreLE(&bad, kRegions1 + 8, n + 1, 4);
  FixCrc(&bad, kRegions1, 64 * 1024);
  ExpectOpenFails(bad, Status::Code::kRefused,
                  "required region 01234567-89AB-CDEF-0123-456789ABCDEF is unknown");
  // The same region, not required: ignored.
  StoreLE(&bad, extra + 28, 0, 4);
  FixCrc(&bad, kRegions1, 64 * 1024);
  EXPECT_TRUE(VhdxReader::Open(std::make_shared<MemByteSource>(bad)).ok());
}

TEST_F(VhdxReaderTest, HostileMetadataAndHeaders) {
  std::string img = ReadFile(Make("meta.vhdx", "subformat=dynamic,block_size=1M"));
  const uint64_t params = MetadataItem(img, kFileParamsGuid);

  std::string bad = img;
  StoreLE(&bad, params + 4, LoadLE(img, params + 4, 4) | 2, 4);
  ExpectOpenFails(bad, Status::Code::kRefused, "vhdx differencing disk");

  bad = img;
  StoreLE(&bad, params, 3 * kMiB, 4);
  ExpectOpenFails(bad, Status::Code::kCorruption, "block size 3145728 is not a power of two");

  bad = img;
  StoreLE(&bad, MetadataItem(img, kLogicalSectorGuid), 1024, 4);
  ExpectOpenFails(bad, Status::Code::kCorruption, "logical sector size 1024");

  // The page 83 item renamed: missing, and then an unknown required item.
  bad = img;
  uint64_t md = RegionOf(img, kMetadataGuid).first;
  size_t item = bad.find(kPage83Guid, md);
  ASSERT_NE(item, std::string::npos);
  bad[item] ^= 0x55;
  StoreLE(&bad, item + 24, 0, 4);
  ExpectOpenFails(bad, Status::Code::kCorruption, "metadata lacks the page 83 data");
  StoreLE(&bad, item + 24, 4, 4);
  ExpectOpenFails(bad, Status::Code::kRefused, "required metadata item");

  bad = img;
  StoreLE(&bad, item + 16, 2 * kMiB, 4);  // the page 83 data past its region
  ExpectOpenFails(bad, Status::Code::kCorruption, "metadata item page 83 data");

  // The newer header damaged: the other one is used.
  size_t newer = CurrentHeader(img);
  bad = img;
  bad[newer + 200] ^= 1;
  auto r = VhdxReader::Open(std::make_shared<MemByteSource>(bad));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Both damaged.
  bad[(newer == kHeader1 ? kHeader2 : kHeader1) + 200] ^= 1;
  ExpectOpenFails(bad, Status::Code::kCorruption, "no valid header");
  // Equal sequence numbers, different headers.
  bad = img;
  StoreLE(&bad, kHeader2 + 8, LoadLE(img, kHeader1 + 8, 8), 8);
  FixCrc(&bad, kHeader2, 4096);
  ExpectOpenFails(bad, Status::Code::kCorruption, "both headers have sequence number");
  // Equal and identical (as Disk2VHD writes them): fine.
  bad = img;
  bad.replace(kHeader2, 4096, img.substr(kHeader1, 4096));
  EXPECT_TRUE(VhdxReader::Open(std::make_shared<MemByteSource>(bad)).ok());
  // A log offset that is not 1 MiB aligned (qemu refuses it too).
  bad = img;
  for (size_t h : {kHeader1, kHeader2}) {
    StoreLE(&bad, h + 72, 1 * kMiB + 4096, 8);
    FixCrc(&bad, h, 4096);
  }
  ExpectOpenFails(bad, Status::Code::kCorruption, "log offset 0x101000");

  bad = img.substr(0, 200 * 1024);
  ExpectOpenFails(bad, Status::Code::kCorruption, "too small for its header section");
  bad = img;
  bad[3] = 'X';
  ExpectOpenFails(bad, Status::Code::kCorruption, "no file identifier");
}

TEST_F(VhdxReaderTest, HostileBatEntriesAreCorruptionWhenRead) {
  std::string img = ReadFile(Make("bat.vhdx", "subformat=dynamic,block_size=1M"));
  const uint64_t bat = RegionOf(img, kBatGuid).first;
  char buf[4096];
  struct Case {
    uint64_t entry;
    const char* message;
  };
  for (const Case& c :
       {Case{((img.size() / kMiB + 64) * kMiB) | 6, "outside the file"},
        Case{(uint64_t{1} << 63) | 6, "outside the file"}, Case{6, "lies in the header section"},
        Case{(5 * kMiB) | 7, "partially present, which only a differencing disk may be"},
        Case{(5 * kMiB) | 4, "invalid state 4"}}) {
    SCOPED_TRACE(c.message);
    std::string bad = img;
    StoreLE(&bad, bat, c.entry, 8);
    auto r = VhdxReader::Open(std::make_shared<MemByteSource>(bad));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    Status s = (*r)->ReadAt(100, sizeof buf, buf);
    EXPECT_EQ(s.code(), Status::Code::kCorruption);
    EXPECT_NE(s.message().find(c.message), std::string::npos) << s.ToString();
    EXPECT_EQ((*r)->MapExtent(0).status().code(), Status::Code::kCorruption);
    EXPECT_TRUE((*r)->ReadAt(5 * kMiB, sizeof buf, buf).ok());  // the rest still reads
  }
  // The highest offset with 32 MiB blocks: offset + position in the block wraps past 2^64.
  std::string wrap = ReadFile(Make("bat32.vhdx", "subformat=dynamic,block_size=32M"));
  StoreLE(&wrap, RegionOf(wrap, kBatGuid).first, 0xFFFFFFFFFFF00006ULL, 8);
  auto w = VhdxReader::Open(std::make_shared<MemByteSource>(wrap));
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  Status ws = (*w)->ReadAt(8 * kMiB, sizeof buf, buf);
  EXPECT_EQ(ws.code(), Status::Code::kCorruption) << ws.ToString();
  EXPECT_NE(ws.message().find("outside the file"), std::string::npos) << ws.ToString();
  // The ZERO state reads zeros and maps as kZero.
  std::string zero = img;
  StoreLE(&zero, bat, 2, 8);
  auto r = VhdxReader::Open(std::make_shared<MemByteSource>(zero));
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE((*r)->ReadAt(100, sizeof buf, buf).ok());
  EXPECT_EQ(std::string(buf, sizeof buf), std::string(sizeof buf, '\0'));
  auto e = (*r)->MapExtent(0);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kZero);
  EXPECT_EQ(e->length % kMiB, 0u);  // block 0 and the zero blocks after it
  // A BAT region too small for the disk; a BAT over the limit.
  std::string small = img;
  uint32_t n = static_cast<uint32_t>(LoadLE(img, kRegions1 + 8, 4));
  for (uint32_t i = 0; i < n; ++i) {
    size_t at = kRegions1 + 16 + 32 * i;
    if (small.compare(at, 16, kBatGuid) == 0) StoreLE(&small, at + 24, 64, 4);
  }
  FixCrc(&small, kRegions1, 64 * 1024);
  ExpectOpenFails(small, Status::Code::kCorruption, "BAT region of 64 bytes is too small");
  VhdxLimits limits;
  limits.max_bat_bytes = 128;
  ExpectOpenFails(img, Status::Code::kRefused, "BAT of 304 bytes is over the limit", limits);
}

// A 4096-byte logical sector: the size is the metadata's, whole sectors.
TEST_F(VhdxReaderTest, FourKiBLogicalSectors) {
  std::string path = Make("4k.vhdx", "subformat=dynamic,block_size=32M");
  std::string img = ReadFile(path);
  StoreLE(&img, MetadataItem(img, kLogicalSectorGuid), 4096, 4);
  auto r = VhdxReader::Open(std::make_shared<MemByteSource>(img));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(Fact((*r)->Facts(), "logical_sector_size"), "4096");
  EXPECT_EQ((*r)->size(), kSourceBytes / 4096 * 4096);
  std::string raw = dir_ / "4k.raw";
  MustRun("qemu-img convert -f vhdx -O raw " + path + " " + raw + " && truncate -s " +
          std::to_string((*r)->size()) + " " + raw);
  ExpectSameBytes(**r, raw);
}

// ---- The third-party samples (qemu-iotests' sample_images), against qemu-img 7.2's oracle ----

class VhdxCorpusTest : public ::testing::TestWithParam<CorpusSample> {};

TEST_P(VhdxCorpusTest, DecodesToTheOracle) {
  // The size, the facts, and the hash of all but the 10 GiB one (see ExpectMatchesOracle; its
  // bytes are checked by PatternsTheIotestsAssert).
  auto d = DecodeSample(kVhdxFormat, "vhdx", GetParam());
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ReaderMap mine = MapOf(*d->raw);
  EXPECT_TRUE(Covers(CorpusMap(GetParam().name).data, mine.data));
}

// With their creator and the state of their log.
CorpusSample VhdxSample(const char* name, const char* creator, const char* log) {
  return {name, {{"creator_application", creator}, {"log", log}}};
}

INSTANTIATE_TEST_SUITE_P(Samples, VhdxCorpusTest,
                         ::testing::Values(VhdxSample("iotest-dynamic-1G.vhdx",
                                                      "Microsoft Windows 6.2.9200.16384", "clean"),
                                           VhdxSample("test-disk2vhd.vhdx", "d2v", "clean"),
                                           VhdxSample("iotest-dirtylog-10G-4M.vhdx", "QEMU v1.6.50",
                                                      "replayed")),
                         CorpusSampleName);

// What the iotests assert on the samples: the dirty log's replay gives 18 MiB of 0xa5, and a
// read-only qemu refuses the file; the Hyper-V image holds 0xa5, then 0x96, across blocks.
TEST(VhdxCorpusFacts, PatternsTheIotestsAssert) {
  TempDir dir("glancefs-vhdx-facts");
  std::string dirty = Unpack("iotest-dirtylog-10G-4M.vhdx", dir.path());
  ASSERT_FALSE(dirty.empty());
  ShellResult qemu = Shell("qemu-img info -f vhdx " + dirty);
  EXPECT_FALSE(qemu.ok());
  EXPECT_NE(qemu.output().find("needs to be replayed"), std::string::npos) << qemu.output();
  auto r = VhdxReader::Open(OpenFile(dirty));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::string got(18 * kMiB, '\0');
  ASSERT_TRUE((*r)->ReadAt(0, got.size(), got.data()).ok());
  EXPECT_EQ(got, std::string(got.size(), '\xa5'));
  VhdxLimits none;
  none.max_log_bytes = 0;
  auto refused = VhdxReader::Open(OpenFile(dirty), none);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Status::Code::kRefused);
  EXPECT_NE(refused.status().message().find("needs replay"), std::string::npos);

  std::string hyperv = Unpack("iotest-dynamic-1G.vhdx", dir.path());
  ASSERT_FALSE(hyperv.empty());
  auto h = VhdxReader::Open(OpenFile(hyperv));
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  std::string a(33 * kMiB, '\0'), b(33 * kMiB, '\0'), c(4096, '\0');
  ASSERT_TRUE((*h)->ReadAt(0, a.size(), a.data()).ok());
  ASSERT_TRUE((*h)->ReadAt(33 * kMiB, b.size(), b.data()).ok());
  ASSERT_TRUE((*h)->ReadAt(66 * kMiB, c.size(), c.data()).ok());
  EXPECT_EQ(a, std::string(a.size(), '\xa5'));
  EXPECT_EQ(b, std::string(b.size(), '\x96'));
  EXPECT_EQ(c, std::string(c.size(), '\0'));
}

}  // namespace
}  // namespace glancefs::format
