// Helpers shared by the disk format decoder tests (tests/unit/*_reader_test.cc,
// qcow2_synth_test.cc): shell commands (qemu-img is the oracle), scratch directories, byte
// stores, sparse sources, byte-for-byte and extent comparisons with `qemu-img convert` and
// `qemu-img map`, and the third-party sample corpus (shared/corpus/samples beside the checkout,
// with qemu-img 7.2's oracle.tsv and maps/).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <ostream>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "fs/base/byte_source.h"
#include "fs/format/format.h"
#include "tests/fakes/fakes.h"

namespace glancefs::format::testutil {

constexpr uint64_t kKiB = 1024, kMiB = kKiB * 1024, kGiB = kMiB * 1024, kTiB = kGiB * 1024;

// ---- Commands and files ----

struct ShellResult {
  int status = -1;  // the exit status; -1 if the command did not exit normally
  std::string out;  // its standard output
  std::string err;  // its standard error
  bool ok() const { return status == 0; }
  std::string output() const { return out + err; }
};

// Runs a shell command, capturing its standard output and error apart.
ShellResult Shell(const std::string& cmd);

// Runs a shell command; its standard output. A failure fails the test, with what it printed.
std::string MustRun(const std::string& cmd);

// True iff qemu-img and qemu-io (package qemu-utils, the oracle) are installed.
bool HaveQemuImg();

// A directory removed with its contents at the end of the test ("" if it could not be made).
class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "glancefs-format-test",
                   const std::string& parent = "");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& bytes);

// ---- Bytes ----

// Integers of `bytes` bytes at `off`, little- or big-endian.
void StoreLE(std::string* s, size_t off, uint64_t v, int bytes);
void StoreBE(std::string* s, size_t off, uint64_t v, int bytes);
uint64_t LoadLE(const std::string& s, size_t off, int bytes);
uint64_t LoadBE(const std::string& s, size_t off, int bytes);

// `n` random bytes, never a zero byte (so that no run of them reads as a hole or a zero run).
std::string RandomBytes(std::mt19937_64& rng, size_t n);

// ---- Sources ----

// What MakeSource writes: `length` bytes at `offset` (clipped to the file), random (never a zero
// byte) or `fill` repeated.
struct Piece {
  static constexpr int kRandom = -1;
  uint64_t offset, length;
  int fill = kRandom;
};

// A sparse file of `size` bytes holding `pieces` (random ones drawn in order from a generator
// seeded with `size`), holes elsewhere.
void MakeSource(const std::string& path, uint64_t size, const std::vector<Piece>& pieces);

// Random data in 1 MiB blocks 0, 3, 4 and the last, a run of written zeros in block 2, holes:
// the vdi and ploop tests' source (their messages name these blocks).
std::vector<Piece> BlockPieces(uint64_t size);

// `qemu-img convert -f raw -O FMT -o OPTS RAW OUT`; returns `out`.
std::string QemuConvertFromRaw(const std::string& raw, const std::string& fmt,
                               const std::string& opts, const std::string& out);

// `qemu-img convert -f FMT -O raw IMAGE IMAGE.raw`; returns the raw file's path.
std::string QemuConvertToRaw(const std::string& fmt, const std::string& image);

// `qemu-img info`'s virtual size.
uint64_t QemuVirtualSize(const std::string& fmt, const std::string& image);

// A FileByteSource over `path` (nullptr, and a failure, if it cannot be opened).
std::shared_ptr<ByteSource> OpenFile(const std::string& path);

// A MemByteSource that pins: ReadPinned hands out pieces of its string.
class PinnedMem : public glancefs::testing::MemByteSource {
 public:
  explicit PinnedMem(std::string data) : MemByteSource(data), data_(std::move(data)) {}
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override;

 private:
  std::string data_;
};

// A source that counts what is read through it: the largest single read and the total.
class CountingSource final : public ByteSource {
 public:
  explicit CountingSource(std::shared_ptr<ByteSource> base) : base_(std::move(base)) {}
  uint64_t size() const override { return base_->size(); }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  uint64_t largest_read = 0, total_read = 0;

 private:
  std::mutex mu_;
  const std::shared_ptr<ByteSource> base_;
};

// The value of a decoder's fact `key` ("<none>" if it has none).
std::string Fact(const std::vector<std::pair<std::string, std::string>>& facts,
                 const std::string& key);

// ---- Comparisons ----

// All of the source's bytes, read in reads of at most `chunk` bytes (one read by default).
std::string DecodeAll(ByteSource& src, uint64_t chunk = UINT64_MAX);

// Reads of 4 KiB at `bad` are Corruption saying exactly `message` (ReadPinned too, handing out
// no piece); one at `good` still succeeds.
void ExpectCorruptionOnRead(ByteSource& src, uint64_t bad, const std::string& message,
                            uint64_t good);

// Reads the whole source in reads of `chunk` bytes and compares it with the file at `raw_path`.
void ExpectSameBytes(ByteSource& src, const std::string& raw_path, size_t chunk = 4 * kMiB);

// Random reads (unaligned, some crossing blocks) from `threads` threads at once.
struct RandomReads {
  enum class Pinned {
    kNo,         // ReadAt only
    kYes,        // ReadPinned too, whose pieces must hold the same bytes
    kMayRefuse,  // the same, but a read of too many pieces may answer NotSupported
  };
  int threads = 1;
  int reads = 64;             // per thread
  uint64_t max_bytes = kMiB;  // each read is 1 to max_bytes bytes, at a random offset
  Pinned pinned = Pinned::kNo;
};
// Every read of `src` gives the bytes of `want` at the same offset.
void ExpectRandomReadsMatch(ByteSource& src, const std::string& want, const RandomReads& how);

// ---- Extents ----

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;  // [offset, length), merged

// Appends [start, start + len) to `out`, merged with the last range if they touch.
void Append(Ranges* out, uint64_t start, uint64_t len);

// `qemu-img map --output=json`: its segments, and two merged range sets: data, reads-as-zero.
struct QemuMap {
  struct Segment {
    uint64_t start = 0, length = 0;
    bool present = false, zero = false, data = false;
  };
  std::vector<Segment> segments;
  Ranges data, zero;
};
QemuMap ParseQemuMap(const std::string& json);
QemuMap QemuMapOf(const std::string& fmt, const std::string& image);

// A source's MapExtent walked from 0 to the end, by kind; `other` is zero and hole runs merged.
// The walk must tile the source exactly.
struct ReaderMap {
  Ranges data, zero, hole, other;
};
ReaderMap MapOf(ByteSource& src);

// True iff every byte of `inner` lies in `outer` (both sorted and merged).
bool Covers(const Ranges& outer, const Ranges& inner);

// `src`, the decoding of `image` (in qemu's format FMT), against qemu-img: the bytes of
// `qemu-img convert -O raw`, read whole and then as `how` says; and both maps, this one's data
// lying within qemu-img map's.
struct QemuComparison {
  std::string raw;  // qemu-img's bytes
  QemuMap qemu;
  ReaderMap mine;
};
QemuComparison CompareWithQemu(ByteSource& src, const std::string& fmt, const std::string& image,
                               const RandomReads& how);

// ---- The sample corpus ----

// shared/corpus/samples beside the checkout (where CI puts shared/), or $GLANCEFS_CORPUS_DIR.
std::string CorpusDir();

// Success iff the corpus and bzip2 are there; otherwise says what is missing. The corpus is
// required: use as ASSERT_TRUE(CorpusPresent()).
::testing::AssertionResult CorpusPresent();

struct Oracle {
  std::string format;  // qemu's name
  uint64_t virtual_size = 0;
  std::string sha256;  // of `qemu-img convert -O raw`
};

// The row of oracle.tsv for `sample`; fails the test if the corpus or the row is missing.
Oracle OracleFor(const std::string& sample);

// Decompresses SAMPLE.bz2 (sparse) into `dir`; its path ("" and a failure if it is absent).
std::string Unpack(const std::string& sample, const std::string& dir);

// The bytes of SAMPLE.bz2, decompressed ("" and a failure if it is absent).
std::string ReadSample(const std::string& sample);

// qemu-img's map of the sample, from the corpus (maps/SAMPLE.map.json).
QemuMap CorpusMap(const std::string& sample);

// SHA-256 (hex) of the source's bytes, its holes and zero runs hashed as zeros without reading.
std::string Sha256OfRaw(ByteSource& src);

// The largest sample whose raw view is hashed here: 2 GiB.
constexpr uint64_t kMaxHashedBytes = 2 * kGiB;

// The raw view has the oracle's virtual size and, for a sample of at most kMaxHashedBytes, its
// SHA-256. The big sparse samples (127 GiB vhds, a 64 GiB parallels, a 16 GiB vmdk, a 10 GiB
// vhdx) are not hashed here: that is minutes of SHA-256 over zeros, too slow for CI. Their
// callers still check the virtual size, compare the data extents with the oracle's map (the
// vhds and the parallels have none: their hash said no more than that) and read the patterns
// the iotests assert. Every byte of them is compared by tests/integration/formats_test.cc
// (ThirdPartySamplesMatchTheirOracle runs `qemu-img compare` on the mounted view).
void ExpectMatchesOracle(ByteSource& raw, const Oracle& oracle);

// A sample and facts its decoder must report (a parameter of corpus tests).
struct CorpusSample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> facts;
};
void PrintTo(const CorpusSample& sample, std::ostream* os);
// The sample's name as a test name: [A-Za-z0-9_] only.
std::string CorpusSampleName(const ::testing::TestParamInfo<CorpusSample>& info);

// The sample, unpacked (sparse) and opened as a file, decoded by `format`. It must probe as
// `format`, be in oracle.tsv as `qemu_format` (qemu's name), and match the oracle: its info
// names `format`, has the sample's facts, and ExpectMatchesOracle. The unpacked file is gone
// when this returns (the decoder holds it open).
Result<Decoded> DecodeSample(const FormatSpec& format, const std::string& qemu_format,
                             const CorpusSample& sample);

// ---- Fixtures ----

// A test that needs qemu-img (the tests fail, not skip, without it) and a scratch directory.
class QemuTest : public ::testing::Test {
 protected:
  void SetUp() override;
  TempDir dir_;
};

// A QemuTest with a sparse source, src_, of kSourceBytes (37 MiB + 12.5 KiB: not a multiple of
// any block size, nor of a CHS geometry): random data (some straddling 1 MiB and 2 MiB
// boundaries), 2 MiB of written zeros at 3 MiB, a lone 4 KiB, holes, and data in the last
// bytes. The vhd and vhdx tests convert it.
class SourceTest : public QemuTest {
 protected:
  void SetUp() override;
  // `qemu-img convert -O FMT -o OPTS` of the source to dir_/NAME: its path.
  std::string Convert(const std::string& fmt, const std::string& name, const std::string& opts);

  static constexpr uint64_t kSourceBytes = 37 * kMiB + 12 * 1024 + 512;
  std::string src_;
};

}  // namespace glancefs::format::testutil
