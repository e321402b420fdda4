// Qcow2Synth against the oracle: every synthesized file is written out and judged by
// `qemu-img check` (clean: no errors, no leaks), `qemu-img compare` against the raw view
// (identical) and `qemu-img map` (data exactly where the raw map has data, by cluster).
// Requires qemu-img; the tests fail, not skip, without it.
#include "fs/format/qcow2_synth.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "backends/dir/file_byte_source.h"
#include "fs/format/qcow2_reader.h"
#include "tests/fakes/fakes.h"
#include "tests/unit/format_test_util.h"

namespace glancefs::format {
namespace {

using glancefs::testing::MemByteSource;
using namespace testutil;

// A raw source of any size whose data bytes are a function of their offset, with an extent map
// given as sorted, disjoint segments (data or zero); the gaps are holes and read as zeros.
// Counts data reads, so a test can check that Open reads none.
class FakeRawSource : public ByteSource {
 public:
  FakeRawSource(uint64_t size, std::vector<Extent> segments)
      : size_(size), segments_(std::move(segments)) {}
  static char ByteAt(uint64_t off) {
    uint64_t x = (off >> 3) * 0x9E3779B97F4A7C15ULL + 0x1234567;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 29;
    return static_cast<char>(x >> ((off & 7) * 8));
  }
  uint64_t size() const override { return size_; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override {
    if (off > size_ || n > size_ - off) return Status::OutOfRange("past end");
    reads++;
    std::memset(dst, 0, n);
    for (const Extent& s : segments_) {
      if (s.kind != Extent::Kind::kData) continue;
      uint64_t from = std::max(off, s.offset), to = std::min(off + n, s.offset + s.length);
      for (uint64_t o = from; o < to; ++o) dst[o - off] = ByteAt(o);
    }
    return Status::Ok();
  }
  Result<Extent> MapExtent(uint64_t off) override {
    for (const Extent& s : segments_) {
      if (off < s.offset) return Extent{off, s.offset - off, Extent::Kind::kHole};
      if (off < s.offset + s.length) return Extent{off, s.offset + s.length - off, s.kind};
    }
    return Extent{off, size_ - off, Extent::Kind::kHole};
  }
  const std::vector<Extent>& segments() const { return segments_; }
  std::atomic<int> reads{0};

 private:
  uint64_t size_;
  std::vector<Extent> segments_;
};

Extent Data(uint64_t off, uint64_t len) { return Extent{off, len, Extent::Kind::kData}; }
Extent Zero(uint64_t off, uint64_t len) { return Extent{off, len, Extent::Kind::kZero}; }

// Writes src's bytes to a new file at path, skipping all-zero chunks (so a sparse raw view of
// any size becomes a sparse file). Returns false when the file system cannot hold it.
bool WriteSparse(ByteSource& src, const std::string& path, const std::vector<Extent>* only) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = ::ftruncate(fd, static_cast<off_t>(src.size())) == 0;
  std::vector<Extent> all{Data(0, src.size())};
  std::vector<char> buf(4 * kMiB);
  for (const Extent& e : only ? *only : all) {
    for (uint64_t off = e.offset; ok && off < e.offset + e.length; off += buf.size()) {
      size_t n = std::min<uint64_t>(buf.size(), e.offset + e.length - off);
      ok = src.ReadAt(off, n, buf.data()).ok();
      if (ok && std::all_of(buf.begin(), buf.begin() + n, [](char c) { return c == 0; })) continue;
      ok = ok && ::pwrite(fd, buf.data(), n, static_cast<off_t>(off)) == static_cast<ssize_t>(n);
    }
  }
  return ::close(fd) == 0 && ok;
}

// The data ranges the synthesized file must have: the raw data extents rounded out to whole
// clusters (clipped to the virtual size: the raw size rounded up to 512), merged.
Ranges ExpectedDataRanges(const std::vector<Extent>& segs, uint64_t size, uint64_t c) {
  size = (size + 511) / 512 * 512;
  Ranges ranges;
  for (const Extent& e : segs) {
    if (e.kind != Extent::Kind::kData || e.length == 0) continue;
    uint64_t s = e.offset / c * c;
    uint64_t t = std::min(size, (e.offset + e.length + c - 1) / c * c);
    if (!ranges.empty() && ranges.back().first + ranges.back().second >= s) {
      ranges.back().second = t - ranges.back().first;
    } else {
      ranges.emplace_back(s, t - s);
    }
  }
  return ranges;
}

// qemu-img map's data ranges of the qcow2 file at `path`.
Ranges QemuDataRanges(const std::string& path) { return QemuMapOf("qcow2", path).data; }

// What qemu-img check cannot see: a refcount for a cluster past the end of the file (it
// compares clusters inside the file only). Parsed from the file's bytes: every refcount is 1
// inside the file and 0 beyond, and the refcount table names no block past the last needed.
void ExpectRefcountsExact(const std::string& file) {
  const uint64_t c = uint64_t{1} << LoadBE(file, 20, 4);
  const uint64_t table = LoadBE(file, 48, 8), table_clusters = LoadBE(file, 56, 4);
  const uint64_t per_block = c / 2, clusters = file.size() / c;
  ASSERT_EQ(file.size() % c, 0u);
  for (uint64_t k = 0; k < table_clusters * c / 8; ++k) {
    const uint64_t block = LoadBE(file, table + 8 * k, 8);
    if (k * per_block >= clusters) {
      EXPECT_EQ(block, 0u) << "refcount table entry " << k;
      continue;
    }
    ASSERT_TRUE(block != 0 && block % c == 0 && block < file.size()) << k;
    for (uint64_t j = 0; j < per_block; ++j) {
      const uint64_t refcount = LoadBE(file, block + 2 * j, 2);
      ASSERT_EQ(refcount, k * per_block + j < clusters ? 1u : 0u)
          << "cluster " << k * per_block + j;
    }
  }
}

class Qcow2SynthTest : public QemuTest {
 protected:
  // The verdicts of qemu-img on synth (written to disk) against the raw view written at
  // raw_path: clean check, right virtual size, identical contents.
  void ExpectValid(Qcow2Synth& synth, const std::string& raw_path,
                   const std::string& raw_format = "raw") {
    std::string path = dir_ / "synth.qcow2";
    ASSERT_TRUE(WriteSparse(synth, path, nullptr));
    ExpectRefcountsExact(DecodeAll(synth, 4 * kMiB));
    // Each command's standard output and error, together.
    ShellResult check = Shell("qemu-img check -f qcow2 " + path);
    const std::string checked = check.output();
    EXPECT_EQ(check.status, 0) << checked;
    EXPECT_NE(checked.find("No errors were found"), std::string::npos) << checked;
    EXPECT_EQ(checked.find("leak"), std::string::npos) << checked;
    EXPECT_EQ(checked.find("OFLAG_COPIED"), std::string::npos) << checked;
    const std::string info = Shell("qemu-img info --output=json -f qcow2 " + path).output();
    EXPECT_NE(info.find("\"virtual-size\": " + std::to_string(synth.layout().virtual_size) + ","),
              std::string::npos)
        << info;
    ShellResult cmp =
        Shell("qemu-img compare -f " + raw_format + " -F qcow2 " + raw_path + " " + path);
    const std::string compared = cmp.output();
    EXPECT_EQ(cmp.status, 0) << compared;
    EXPECT_NE(compared.find("Images are identical"), std::string::npos) << compared;
    EXPECT_EQ(compared.find("mismatch"), std::string::npos) << compared;
  }

  // A fake raw source judged whole: raw written sparse, synthesized, checked; the qcow2's data
  // map equals the raw data map by cluster.
  std::shared_ptr<Qcow2Synth> CheckFake(std::shared_ptr<FakeRawSource> raw, uint64_t cluster) {
    std::string raw_path = dir_ / "raw.img";
    EXPECT_TRUE(WriteSparse(*raw, raw_path, &raw->segments()));
    raw->reads = 0;
    auto synth = Qcow2Synth::Open(raw, Qcow2SynthOptions{cluster});
    EXPECT_TRUE(synth.ok()) << synth.status().ToString();
    if (!synth.ok()) return nullptr;
    EXPECT_EQ(raw->reads.load(), 0) << "Open must read no data";
    ExpectValid(**synth, raw_path);
    EXPECT_EQ(QemuDataRanges(dir_ / "synth.qcow2"),
              ExpectedDataRanges(raw->segments(), raw->size(), cluster));
    return *synth;
  }

  std::optional<TempDir> shm_dir_;  // on /dev/shm, when /tmp cannot hold a file
};

TEST_F(Qcow2SynthTest, Empty) {
  auto synth = CheckFake(std::make_shared<FakeRawSource>(0, std::vector<Extent>{}), 64 * kKiB);
  ASSERT_TRUE(synth);
  const Qcow2SynthLayout& l = synth->layout();
  EXPECT_EQ(l.file_clusters, 3u);  // header, refcount table, one refcount block; as qemu-img
  EXPECT_EQ(l.l1_entries, 0u);
  EXPECT_EQ(l.l1_offset, 0u);
}

TEST_F(Qcow2SynthTest, OneByte) {
  auto synth =
      CheckFake(std::make_shared<FakeRawSource>(1, std::vector<Extent>{Data(0, 1)}), 64 * kKiB);
  ASSERT_TRUE(synth);
  EXPECT_EQ(synth->layout().data_clusters, 1u);
  EXPECT_EQ(synth->layout().raw_size, 1u);
  EXPECT_EQ(synth->layout().virtual_size, 512u);  // what qemu-img convert writes, too
  EXPECT_EQ(synth->size(), 6 * 64 * kKiB);        // header, reftable, refblock, L1, L2, data
}

TEST_F(Qcow2SynthTest, ThreeClustersAnd17Bytes) {
  const uint64_t c = 64 * kKiB, size = 3 * c + 17;
  CheckFake(std::make_shared<FakeRawSource>(size, std::vector<Extent>{Data(0, size)}), c);
  // A hole over the whole second cluster and a zero extent over the third: two data clusters.
  auto synth =
      CheckFake(std::make_shared<FakeRawSource>(
                    size, std::vector<Extent>{Data(0, c), Zero(2 * c, c), Data(3 * c, 17)}),
                c);
  ASSERT_TRUE(synth);
  EXPECT_EQ(synth->layout().data_clusters, 2u);
}

TEST_F(Qcow2SynthTest, FullyAllocatedRandom64MiB) {
  std::string bytes(64 * kMiB, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i < bytes.size(); i += 8) {
    uint64_t v = rng();
    std::memcpy(&bytes[i], &v, 8);
  }
  auto raw = std::make_shared<MemByteSource>(bytes);
  std::string raw_path = dir_ / "raw.img";
  ASSERT_TRUE(WriteSparse(*raw, raw_path, nullptr));
  auto synth = Qcow2Synth::Open(raw);
  ASSERT_TRUE(synth.ok()) << synth.status().ToString();
  EXPECT_EQ((*synth)->runs(), 1u);
  EXPECT_EQ((*synth)->layout().data_clusters, 1024u);
  // 1 header + 1 reftable + 1 refblock + 1 L1 + 1 L2 + 1024 data.
  EXPECT_EQ((*synth)->size(), 1029 * 64 * kKiB);
  ExpectValid(**synth, raw_path);
}

// Scattered data: unaligned, one byte, adjacent to zero extents, in the last partial cluster.
std::vector<Extent> Scattered(uint64_t size) {
  std::vector<Extent> segs;
  std::mt19937_64 rng(7);
  uint64_t off = 4096;
  while (true) {
    off += rng() % (size / 40);
    uint64_t len = 1 + rng() % (3 * kMiB);
    if (off + len > size - 100) break;
    segs.push_back(rng() % 5 == 0 ? Zero(off, len) : Data(off, len));
    off += len;
  }
  segs.push_back(Data(size - 100, 100));
  return segs;
}

TEST_F(Qcow2SynthTest, Sparse1GiB) {
  const uint64_t size = kGiB + 12345;
  auto raw = std::make_shared<FakeRawSource>(size, Scattered(size));
  auto synth = CheckFake(raw, 64 * kKiB);
  ASSERT_TRUE(synth);
  EXPECT_LT(synth->size(), size / 4) << "a sparse source gives a smaller file";
  EXPECT_EQ(synth->allocated_bytes(), synth->size());
}

class Qcow2SynthClusterTest : public Qcow2SynthTest,
                              public ::testing::WithParamInterface<uint64_t> {};

// Data straddling L2 boundaries (each L2 table maps C * C / 8 bytes), runs that start in the
// table where the previous ended, and an unaligned end.
TEST_P(Qcow2SynthClusterTest, DataCrossingL2Boundaries) {
  const uint64_t c = GetParam(), span = c * (c / 8);
  const uint64_t size = 2 * span + 5 * c + 3;
  auto raw = std::make_shared<FakeRawSource>(
      size,
      std::vector<Extent>{Data(100, 2 * c), Data(span - c - 7, 2 * c + 14), Data(span + 3 * c, 10),
                          Data(2 * span - 1, 2), Zero(2 * span + 2 * c, c), Data(size - 1, 1)});
  auto synth = CheckFake(raw, c);
  ASSERT_TRUE(synth);
  EXPECT_EQ(synth->layout().l2_tables, 3u);
  EXPECT_EQ(synth->layout().l1_entries, 3u);
}

INSTANTIATE_TEST_SUITE_P(ClusterSizes, Qcow2SynthClusterTest,
                         ::testing::Values(4 * kKiB, 64 * kKiB, 2 * kMiB));

// 16 TiB with a few MiB at the start, the middle and the end. The raw file is sparse; ext4
// stops at 16 TiB - 4 KiB, so it goes to tmpfs (/dev/shm) when /tmp refuses it.
TEST_F(Qcow2SynthTest, Sparse16TiB) {
  const uint64_t size = 16 * kTiB;
  auto raw = std::make_shared<FakeRawSource>(
      size, std::vector<Extent>{Data(0, 3 * kMiB + 5), Data(size / 2 - kMiB, 2 * kMiB),
                                Data(size - 3 * kMiB, 3 * kMiB)});
  std::string raw_path = dir_ / "raw.img";
  if (!WriteSparse(*raw, raw_path, &raw->segments())) {  // EFBIG on ext4
    shm_dir_.emplace("qcow2_synth_test", "/dev/shm");
    ASSERT_FALSE(shm_dir_->path().empty());
    raw_path = *shm_dir_ / "raw.img";
    std::filesystem::remove(dir_ / "raw.img");
    ASSERT_TRUE(WriteSparse(*raw, raw_path, &raw->segments())) << "no sparse 16 TiB file";
    std::cerr << "[ NOTE     ] /tmp cannot hold a 16 TiB file: raw written to " << raw_path << "\n";
  }
  raw->reads = 0;
  auto synth = Qcow2Synth::Open(raw);
  ASSERT_TRUE(synth.ok()) << synth.status().ToString();
  EXPECT_EQ(raw->reads.load(), 0);
  EXPECT_EQ((*synth)->runs(), 3u);
  EXPECT_EQ((*synth)->layout().l1_entries, 32768u);
  EXPECT_LT((*synth)->size(), 16 * kMiB);
  ExpectValid(**synth, raw_path);
  EXPECT_EQ(QemuDataRanges(dir_ / "synth.qcow2"),
            ExpectedDataRanges(raw->segments(), size, 64 * kKiB));
}

// The refcount fixed point where it is tight: 512 B clusters, so a refcount block counts 256
// clusters and a refcount table cluster names 64 blocks (16384 clusters). The layout is the
// least fixed point for every data size up to 16500 clusters; qemu-img judges the files whose
// cluster count lies within 2 of the first four block boundaries, or from 4 below to 8 above
// the second table cluster's (a file that needs it jumps past 16384 by a block and a cluster).
TEST_F(Qcow2SynthTest, RefcountFixedPointAtBoundaries) {
  const uint64_t c = 512;
  int checked = 0;
  bool two_table_clusters = false;
  for (uint64_t n = 1; n < 16500; ++n) {
    auto raw = std::make_shared<FakeRawSource>(n * c, std::vector<Extent>{Data(0, n * c)});
    auto synth = Qcow2Synth::Open(raw, Qcow2SynthOptions{c});
    ASSERT_TRUE(synth.ok());
    const Qcow2SynthLayout& l = (*synth)->layout();
    // Least fixed point: enough blocks and table clusters for every cluster, none to spare.
    ASSERT_EQ(l.refcount_blocks, (l.file_clusters + 255) / 256) << n;
    ASSERT_EQ(l.refcount_table_clusters, (l.refcount_blocks + 63) / 64) << n;
    ASSERT_GT(l.file_clusters, (l.refcount_blocks - 1) * 256) << n;
    const uint64_t to_block = (l.file_clusters + 2) % 256, to_table = (l.file_clusters + 4) % 16384;
    if ((to_block > 4 || l.file_clusters > 1100) && to_table > 12) continue;
    SCOPED_TRACE("data clusters " + std::to_string(n) + ", file clusters " +
                 std::to_string(l.file_clusters));
    ASSERT_TRUE(WriteSparse(*raw, dir_ / "raw.img", nullptr));
    ExpectValid(**synth, dir_ / "raw.img");
    ++checked;
    two_table_clusters |= l.refcount_table_clusters == 2;
    if (HasFailure()) return;
  }
  EXPECT_GE(checked, 15);
  EXPECT_TRUE(two_table_clusters);
}

// A 1 TiB fully allocated source is one run: Open and any table read are cheap.
TEST_F(Qcow2SynthTest, FullyAllocated1TiBIsOneRun) {
  auto raw = std::make_shared<FakeRawSource>(kTiB, std::vector<Extent>{Data(0, kTiB)});
  auto synth = Qcow2Synth::Open(raw);
  ASSERT_TRUE(synth.ok());
  const Qcow2SynthLayout& l = (*synth)->layout();
  EXPECT_EQ((*synth)->runs(), 1u);
  EXPECT_EQ(l.l1_entries, 2048u);
  EXPECT_EQ(l.l2_tables, 2048u);
  EXPECT_EQ(l.data_clusters, kTiB / (64 * kKiB));
  // The last L2 entry of the last table points at the last data cluster, COPIED.
  std::string e(8, '\0');
  ASSERT_TRUE((*synth)->ReadAt(l.data_offset - 8, 8, e.data()).ok());
  EXPECT_EQ(LoadBE(e, 0, 8), (l.file_size - 64 * kKiB) | (uint64_t{1} << 63));
  // And that cluster holds the raw's last bytes.
  std::string got(64 * kKiB, '\0'), want(64 * kKiB, '\0');
  ASSERT_TRUE((*synth)->ReadAt(l.file_size - got.size(), got.size(), got.data()).ok());
  ASSERT_TRUE(raw->ReadAt(kTiB - want.size(), want.size(), want.data()).ok());
  EXPECT_EQ(got, want);
}

// A local sparse file through FileByteSource: the map comes from SEEK_DATA/SEEK_HOLE.
TEST_F(Qcow2SynthTest, LocalSparseFile) {
  const uint64_t size = 300 * kMiB + 999;
  FakeRawSource pattern(
      size, {Data(kMiB, 200 * kKiB), Data(100 * kMiB, 5 * kMiB), Data(size - 999, 999)});
  std::string raw_path = dir_ / "raw.img";
  ASSERT_TRUE(WriteSparse(pattern, raw_path, &pattern.segments()));
  auto file = backends::FileByteSource::Open(raw_path, size, "raw");
  ASSERT_TRUE(file.ok());
  auto synth = Qcow2Synth::Open(*file);
  ASSERT_TRUE(synth.ok()) << synth.status().ToString();
  EXPECT_LT((*synth)->size(), 10 * kMiB);
  ExpectValid(**synth, raw_path);
  EXPECT_EQ(QemuDataRanges(dir_ / "synth.qcow2"),
            ExpectedDataRanges(pattern.segments(), size, 64 * kKiB));
}

// Through a decoder: a qcow2 made by qemu (data, zero clusters, a lone byte) decoded by
// Qcow2Reader, whose MapExtent comes from its L2 tables, then synthesized again.
TEST_F(Qcow2SynthTest, FromQcow2Decoder) {
  const std::string src = dir_ / "src.qcow2";
  MustRun("qemu-img create -q -f qcow2 " + src + " 3G");
  MustRun(
      "qemu-io -f qcow2 -c 'write -P 0x11 0 100k' -c 'write -P 0x22 1G 5M' "
      "-c 'write -z 2G 10M' -c 'write -P 0x33 2100M 1' " +
      src);
  ASSERT_FALSE(HasFailure());
  auto file = backends::FileByteSource::Open(src, std::nullopt, "src");
  ASSERT_TRUE(file.ok());
  auto decoded = Qcow2Reader::Open(*file);
  ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
  auto synth = Qcow2Synth::Open(*decoded);
  ASSERT_TRUE(synth.ok()) << synth.status().ToString();
  EXPECT_EQ((*synth)->layout().data_clusters, 2u + 80u + 1u);
  ExpectValid(**synth, src, "qcow2");
  Ranges want = {{0, 128 * kKiB}, {kGiB, 5 * kMiB}, {2100 * kMiB, 64 * kKiB}};
  EXPECT_EQ(QemuDataRanges(dir_ / "synth.qcow2"), want);
}

TEST_F(Qcow2SynthTest, HeaderFields) {
  auto synth = Qcow2Synth::Open(std::make_shared<MemByteSource>(std::string(100000, 'x')));
  ASSERT_TRUE(synth.ok());
  std::string h(4096, '\1');
  ASSERT_TRUE((*synth)->ReadAt(0, h.size(), h.data()).ok());
  auto be32 = [&](size_t at) { return LoadBE(h, at, 4); };
  EXPECT_EQ(h.substr(0, 4), std::string("QFI\xfb", 4));
  EXPECT_EQ(be32(4), 3u);                                   // version
  EXPECT_EQ(be32(20), 16u);                                 // cluster_bits
  EXPECT_EQ(LoadBE(h, 24, 8), 100352u);                     // 100000 rounded up to 512
  EXPECT_EQ(be32(36), 1u);                                  // l1_size
  EXPECT_EQ(be32(96), 4u);                                  // refcount_order
  EXPECT_EQ(be32(100), 104u);                               // header_length
  EXPECT_EQ(h.substr(8, 20 - 8), std::string(12, '\0'));    // no backing file
  EXPECT_EQ(h.substr(60, 96 - 60), std::string(36, '\0'));  // no snapshots, no features
  EXPECT_EQ(h.substr(104), std::string(4096 - 104, '\0'));  // end of extensions
}

TEST_F(Qcow2SynthTest, DeterministicAndRandomReadsMatchSerialization) {
  const uint64_t size = 64 * kMiB + 3;
  auto raw = std::make_shared<FakeRawSource>(size, Scattered(size));
  for (uint64_t c : {4 * kKiB, 64 * kKiB}) {
    auto a = Qcow2Synth::Open(raw, Qcow2SynthOptions{c});
    auto b = Qcow2Synth::Open(raw, Qcow2SynthOptions{c});
    ASSERT_TRUE(a.ok() && b.ok());
    const std::string whole = DecodeAll(**a, 4 * kMiB);
    ASSERT_EQ(whole, DecodeAll(**b, 4 * kMiB)) << "two Opens differ";
    std::mt19937_64 rng(c);
    std::string buf;
    for (int i = 0; i < 2000; ++i) {
      uint64_t off = rng() % whole.size();
      uint64_t n = std::min<uint64_t>(whole.size() - off, rng() % (i % 10 == 0 ? 3 * c : 600));
      buf.assign(n, '\x55');
      ASSERT_TRUE((*a)->ReadAt(off, n, buf.data()).ok());
      ASSERT_EQ(buf, whole.substr(off, n)) << "at " << off << " +" << n;
    }
  }
}

// A raw source that hands out pieces of buffers it keeps, as the block cache does.
class PinnedRawSource : public FakeRawSource {
 public:
  using FakeRawSource::FakeRawSource;
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override {
    auto buf = std::make_shared<std::string>(n, '\0');
    GLANCEFS_RETURN_IF_ERROR(ReadAt(off, n, buf->data()));
    out->push_back({buf->data(), n, buf});
    return Status::Ok();
  }
};

// Data clusters go out as pieces of the raw source's buffers, byte for byte what ReadAt makes;
// a read that touches the metadata, or over a source with no buffers, is NotSupported and
// leaves *out as it was.
TEST_F(Qcow2SynthTest, PinnedReadsOfDataClustersMatchReadAt) {
  const uint64_t size = 64 * kMiB + 3;
  auto pinned = std::make_shared<PinnedRawSource>(size, Scattered(size));
  auto synth = Qcow2Synth::Open(pinned, Qcow2SynthOptions{64 * kKiB});
  ASSERT_TRUE(synth.ok());
  const std::string whole = DecodeAll(**synth, 4 * kMiB);
  const uint64_t data = (*synth)->layout().data_offset;
  std::mt19937_64 rng(7);
  for (int i = 0; i < 500; ++i) {
    uint64_t off = data + rng() % (whole.size() - data);
    uint64_t n = std::min<uint64_t>(whole.size() - off, rng() % (3 * kMiB));
    std::vector<PinnedSlice> out{{"x", 1, nullptr}};
    ASSERT_TRUE((*synth)->ReadPinned(off, n, &out).ok()) << "at " << off << " +" << n;
    std::string got;
    for (size_t k = 1; k < out.size(); ++k) got.append(out[k].data, out[k].size);
    ASSERT_EQ(got, whole.substr(off, n)) << "at " << off << " +" << n;
  }
  std::vector<PinnedSlice> out{{"x", 1, nullptr}};
  EXPECT_TRUE((*synth)->ReadPinned(data - 512, 4096, &out).IsNotSupported());
  EXPECT_TRUE((*synth)->ReadPinned(whole.size() - 10, 11, &out).IsNotSupported());
  auto plain = Qcow2Synth::Open(std::make_shared<FakeRawSource>(size, Scattered(size)),
                                Qcow2SynthOptions{64 * kKiB});
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE((*plain)->ReadPinned(data, 4096, &out).IsNotSupported());
  EXPECT_EQ(out.size(), 1u);
}

TEST_F(Qcow2SynthTest, ConcurrentReadsMatchSingleThreaded) {
  const uint64_t size = 100 * kMiB;
  auto synth = Qcow2Synth::Open(std::make_shared<FakeRawSource>(size, Scattered(size)),
                                Qcow2SynthOptions{4 * kKiB});
  ASSERT_TRUE(synth.ok());
  ExpectRandomReadsMatch(**synth, DecodeAll(**synth, 4 * kMiB),
                         {.threads = 4, .reads = 3000, .max_bytes = 64 * kKiB});
}

TEST_F(Qcow2SynthTest, RefusesWhatQemuCouldNotOpenOrMemoryWouldNotHold) {
  auto raw = std::make_shared<FakeRawSource>(kGiB, std::vector<Extent>{});
  for (uint64_t c : {uint64_t{0}, uint64_t{256}, uint64_t{3 * kKiB}, uint64_t{4 * kMiB}}) {
    EXPECT_EQ(Qcow2Synth::Open(raw, Qcow2SynthOptions{c}).status().code(),
              Status::Code::kInvalidArgument);
  }
  // 16 TiB at 4 KiB clusters needs a 64 MiB L1.
  auto huge = std::make_shared<FakeRawSource>(16 * kTiB, std::vector<Extent>{});
  EXPECT_EQ(Qcow2Synth::Open(huge, Qcow2SynthOptions{4 * kKiB}).status().code(),
            Status::Code::kNotSupported);
  // 100 separate runs against room for 10.
  std::vector<Extent> many;
  for (uint64_t i = 0; i < 100; ++i) many.push_back(Data(i * kMiB, 10));
  auto fragmented = std::make_shared<FakeRawSource>(kGiB, many);
  Qcow2SynthOptions small;
  small.max_map_bytes = 10 * 32;
  EXPECT_EQ(Qcow2Synth::Open(fragmented, small).status().code(), Status::Code::kNotSupported);
  small.max_map_bytes = 100 * 32;
  EXPECT_TRUE(Qcow2Synth::Open(fragmented, small).ok());
}

// A raw MapExtent that breaks its contract, and raw read errors, are reported.
class BadMapSource : public MemByteSource {
 public:
  using MemByteSource::MemByteSource;
  Result<Extent> MapExtent(uint64_t off) override { return Extent{off, 0, Extent::Kind::kData}; }
};

TEST_F(Qcow2SynthTest, ReportsRawErrors) {
  auto bad = std::make_shared<BadMapSource>(std::string(1000, 'x'));
  EXPECT_EQ(Qcow2Synth::Open(bad).status().code(), Status::Code::kCorruption);
  auto failing = std::make_shared<MemByteSource>(std::string(100000, 'x'));
  auto synth = Qcow2Synth::Open(failing);
  ASSERT_TRUE(synth.ok());
  failing->fail_reads = true;
  std::string buf(64 * kKiB, '\0');
  EXPECT_TRUE((*synth)->ReadAt(0, buf.size(), buf.data()).ok()) << "metadata needs no reads";
  EXPECT_EQ((*synth)->ReadAt((*synth)->layout().data_offset, 10, buf.data()).code(),
            Status::Code::kIOError);
  EXPECT_EQ((*synth)->ReadAt((*synth)->size() - 1, 2, buf.data()).code(),
            Status::Code::kOutOfRange);
  auto extent = (*synth)->MapExtent(100);
  ASSERT_TRUE(extent.ok());
  EXPECT_EQ(extent->length, (*synth)->size() - 100);
  EXPECT_EQ(extent->kind, Extent::Kind::kData);
}

}  // namespace
}  // namespace glancefs::format
