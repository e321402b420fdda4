#include "tests/unit/format_test_util.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "backends/dir/file_byte_source.h"

namespace glancefs::format::testutil {

// ---- Commands and files ----

ShellResult Shell(const std::string& cmd) {
  ShellResult r;
  std::string err_path =
      (std::filesystem::temp_directory_path() / "glancefs-test.err.XXXXXX").string();
  int err_fd = ::mkstemp(err_path.data());
  if (err_fd < 0) {
    r.err = "mkstemp failed";
    return r;
  }
  ::close(err_fd);
  FILE* p = ::popen((cmd + " 2>'" + err_path + "'").c_str(), "r");
  if (!p) {
    std::filesystem::remove(err_path);
    r.err = "popen failed";
    return r;
  }
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = st != -1 && WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.err = ReadFile(err_path);
  std::filesystem::remove(err_path);
  return r;
}

std::string MustRun(const std::string& cmd) {
  ShellResult r = Shell(cmd);
  EXPECT_TRUE(r.ok()) << cmd << " (exit " << r.status << "): " << r.output();
  return r.out;
}

bool HaveQemuImg() { return Shell("command -v qemu-img && command -v qemu-io").ok(); }

TempDir::TempDir(const std::string& prefix, const std::string& parent) {
  std::filesystem::path base =
      parent.empty() ? std::filesystem::temp_directory_path() : std::filesystem::path(parent);
  std::string tmpl = (base / (prefix + ".XXXXXX")).string();
  path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
}

TempDir::~TempDir() {
  if (!path_.empty()) std::filesystem::remove_all(path_);
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// ---- Bytes ----

void StoreLE(std::string* s, size_t off, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) (*s)[off + i] = static_cast<char>(v >> (8 * i));
}

void StoreBE(std::string* s, size_t off, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) (*s)[off + i] = static_cast<char>(v >> (8 * (bytes - 1 - i)));
}

uint64_t LoadLE(const std::string& s, size_t off, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(s[off + i]);
  return v;
}

uint64_t LoadBE(const std::string& s, size_t off, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = v << 8 | static_cast<unsigned char>(s[off + i]);
  return v;
}

std::string RandomBytes(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() | 1);  // never a zero byte
  return s;
}

// ---- Sources ----

void MakeSource(const std::string& path, uint64_t size, const std::vector<Piece>& pieces) {
  std::mt19937_64 rng(size);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  for (const Piece& p : pieces) {
    std::string bytes = p.fill == Piece::kRandom ? RandomBytes(rng, p.length)
                                                 : std::string(p.length, static_cast<char>(p.fill));
    if (p.offset >= size) continue;
    size_t n = static_cast<size_t>(std::min<uint64_t>(bytes.size(), size - p.offset));
    ASSERT_EQ(::pwrite(fd, bytes.data(), n, static_cast<off_t>(p.offset)), static_cast<ssize_t>(n));
  }
  ::close(fd);
}

std::vector<Piece> BlockPieces(uint64_t size) {
  return {{0, 70000},
          {2 * kMiB + 4096, 300000, 0},
          {3 * kMiB + 100, 1500000},
          {size - std::min<uint64_t>(size, 1000), 1000}};
}

std::string QemuConvertFromRaw(const std::string& raw, const std::string& fmt,
                               const std::string& opts, const std::string& out) {
  MustRun("qemu-img convert -f raw -O " + fmt + (opts.empty() ? "" : " -o " + opts) + " '" + raw +
          "' '" + out + "'");
  return out;
}

std::string QemuConvertToRaw(const std::string& fmt, const std::string& image) {
  std::string raw = image + ".raw";
  MustRun("qemu-img convert -f " + fmt + " -O raw '" + image + "' '" + raw + "'");
  return raw;
}

uint64_t QemuVirtualSize(const std::string& fmt, const std::string& image) {
  auto j =
      nlohmann::json::parse(MustRun("qemu-img info --output=json -f " + fmt + " '" + image + "'"));
  return j["virtual-size"].get<uint64_t>();
}

std::shared_ptr<ByteSource> OpenFile(const std::string& path) {
  auto f = backends::FileByteSource::Open(path, std::nullopt, path);
  EXPECT_TRUE(f.ok()) << path << ": " << f.status().ToString();
  return f.ok() ? std::shared_ptr<ByteSource>(*f) : nullptr;
}

Status PinnedMem::ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
  if (off > data_.size() || n > data_.size() - off) return Status::OutOfRange("past end");
  out->push_back({data_.data() + off, n, nullptr});
  return Status::Ok();
}

Status CountingSource::ReadAt(uint64_t off, size_t n, char* dst) {
  std::lock_guard<std::mutex> lock(mu_);
  largest_read = std::max<uint64_t>(largest_read, n);
  total_read += n;
  return base_->ReadAt(off, n, dst);
}

std::string Fact(const std::vector<std::pair<std::string, std::string>>& facts,
                 const std::string& key) {
  for (const auto& [k, v] : facts) {
    if (k == key) return v;
  }
  return "<none>";
}

// ---- Comparisons ----

std::string DecodeAll(ByteSource& src, uint64_t chunk) {
  std::string out(src.size(), '\0');
  for (uint64_t off = 0; off < out.size();) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, out.size() - off));
    Status s = src.ReadAt(off, n, out.data() + off);
    EXPECT_TRUE(s.ok()) << "read of " << n << " at " << off << ": " << s.ToString();
    off += n;
  }
  return out;
}

void ExpectCorruptionOnRead(ByteSource& src, uint64_t bad, const std::string& message,
                            uint64_t good) {
  char buf[4096];
  Status s = src.ReadAt(bad, sizeof buf, buf);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_EQ(s.message(), message);
  std::vector<PinnedSlice> pieces;
  s = src.ReadPinned(bad, sizeof buf, &pieces);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_TRUE(pieces.empty());
  s = src.ReadAt(good, sizeof buf, buf);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

void ExpectSameBytes(ByteSource& src, const std::string& raw_path, size_t chunk) {
  std::ifstream raw(raw_path, std::ios::binary);
  ASSERT_EQ(std::filesystem::file_size(raw_path), src.size()) << raw_path;
  std::vector<char> got(chunk), want(chunk);
  for (uint64_t off = 0; off < src.size();) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(chunk, src.size() - off));
    Status s = src.ReadAt(off, n, got.data());
    ASSERT_TRUE(s.ok()) << "read of " << n << " at " << off << ": " << s.ToString();
    raw.read(want.data(), static_cast<std::streamsize>(n));
    ASSERT_TRUE(std::memcmp(got.data(), want.data(), n) == 0)
        << "bytes differ in [" << off << ", " << off + n << ")";
    off += n;
  }
}

void ExpectRandomReadsMatch(ByteSource& src, const std::string& want, const RandomReads& how) {
  ASSERT_EQ(src.size(), want.size());
  ASSERT_GT(want.size(), 0u);
  std::atomic<int> bad{0};
  std::mutex mu;
  std::string first;  // the first bad read, said
  auto fail = [&](const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    if (bad++ == 0) first = what;
  };
  auto reader = [&](int t) {
    std::mt19937_64 rng(t + 7);
    std::string got;
    for (int i = 0; i < how.reads; ++i) {
      uint64_t off = rng() % want.size();
      size_t n =
          static_cast<size_t>(1 + rng() % std::min<uint64_t>(how.max_bytes, want.size() - off));
      std::string at = " of " + std::to_string(n) + " bytes at " + std::to_string(off);
      got.assign(n, '\x55');
      Status s = src.ReadAt(off, n, got.data());
      if (!s.ok() || want.compare(off, n, got) != 0) fail("read" + at + ": " + s.ToString());
      if (how.pinned == RandomReads::Pinned::kNo) continue;
      std::vector<PinnedSlice> pieces;
      s = src.ReadPinned(off, n, &pieces);
      if (s.IsNotSupported() && how.pinned == RandomReads::Pinned::kMayRefuse) continue;
      std::string pinned;
      for (const PinnedSlice& p : pieces) pinned.append(p.data, p.size);
      if (!s.ok() || pinned != got) fail("pinned read" + at + ": " + s.ToString());
    }
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < how.threads; ++t) threads.emplace_back(reader, t);
  reader(0);
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0) << "first: " << first;
}

// ---- Extents ----

void Append(Ranges* out, uint64_t start, uint64_t len) {
  if (len == 0) return;
  if (!out->empty() && out->back().first + out->back().second == start) {
    out->back().second += len;
  } else {
    out->emplace_back(start, len);
  }
}

QemuMap ParseQemuMap(const std::string& json) {
  QemuMap m;
  for (const auto& seg : nlohmann::json::parse(json)) {
    QemuMap::Segment s;
    s.start = seg["start"];
    s.length = seg["length"];
    s.present = seg.value("present", false);
    s.zero = seg["zero"];
    s.data = seg["data"];
    if (s.data) Append(&m.data, s.start, s.length);
    if (s.zero) Append(&m.zero, s.start, s.length);
    m.segments.push_back(s);
  }
  return m;
}

QemuMap QemuMapOf(const std::string& fmt, const std::string& image) {
  return ParseQemuMap(MustRun("qemu-img map --output=json -f " + fmt + " '" + image + "'"));
}

ReaderMap MapOf(ByteSource& src) {
  ReaderMap m;
  for (uint64_t off = 0; off < src.size();) {
    auto e = src.MapExtent(off);
    EXPECT_TRUE(e.ok()) << "at " << off << ": " << e.status().ToString();
    if (!e.ok()) break;
    EXPECT_EQ(e->offset, off);
    EXPECT_GT(e->length, 0u);
    EXPECT_LE(e->length, src.size() - off);
    if (e->offset != off || e->length == 0) break;
    switch (e->kind) {
      case Extent::Kind::kData:
        Append(&m.data, off, e->length);
        break;
      case Extent::Kind::kZero:
        Append(&m.zero, off, e->length);
        Append(&m.other, off, e->length);
        break;
      case Extent::Kind::kHole:
        Append(&m.hole, off, e->length);
        Append(&m.other, off, e->length);
        break;
    }
    off += e->length;
  }
  return m;
}

bool Covers(const Ranges& outer, const Ranges& inner) {
  size_t j = 0;
  for (const auto& [start, len] : inner) {
    while (j < outer.size() && outer[j].first + outer[j].second <= start) ++j;
    if (j == outer.size() || outer[j].first > start ||
        outer[j].first + outer[j].second < start + len) {
      return false;
    }
  }
  return true;
}

QemuComparison CompareWithQemu(ByteSource& src, const std::string& fmt, const std::string& image,
                               const RandomReads& how) {
  QemuComparison c;
  c.raw = ReadFile(QemuConvertToRaw(fmt, image));
  EXPECT_EQ(src.size(), c.raw.size());
  if (src.size() == c.raw.size()) {
    EXPECT_TRUE(DecodeAll(src) == c.raw) << "a whole read differs from qemu-img convert";
    ExpectRandomReadsMatch(src, c.raw, how);
  }
  c.qemu = QemuMapOf(fmt, image);
  c.mine = MapOf(src);
  EXPECT_TRUE(Covers(c.qemu.data, c.mine.data)) << "data where qemu-img map has none";
  return c;
}

// ---- The sample corpus ----

std::string CorpusDir() {
  const char* env = std::getenv("GLANCEFS_CORPUS_DIR");
  return env && *env ? env : std::string(GLANCEFS_SOURCE_DIR) + "/../shared/corpus/samples";
}

::testing::AssertionResult CorpusPresent() {
  if (!std::filesystem::exists(CorpusDir() + "/oracle.tsv")) {
    return ::testing::AssertionFailure()
           << "the sample corpus is absent: no " << CorpusDir()
           << "/oracle.tsv. These tests require it: put shared/ beside the checkout (as CI does) "
              "or name the samples directory in GLANCEFS_CORPUS_DIR";
  }
  if (!Shell("command -v bzip2").ok()) {
    return ::testing::AssertionFailure() << "bzip2 is missing: run scripts/install-deps.sh";
  }
  return ::testing::AssertionSuccess();
}

Oracle OracleFor(const std::string& sample) {
  std::ifstream tsv(CorpusDir() + "/oracle.tsv");
  if (!tsv.good()) {
    ADD_FAILURE() << CorpusPresent().message();
    return {};
  }
  for (std::string line; std::getline(tsv, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::vector<std::string> cols;
    std::stringstream ss(line);
    for (std::string c; std::getline(ss, c, '\t');) cols.push_back(c);
    if (cols.size() >= 4 && cols[0] == sample) {
      Oracle o;
      o.format = cols[1];
      if (cols[2] != "-") o.virtual_size = std::stoull(cols[2]);
      o.sha256 = cols[3];
      return o;
    }
  }
  ADD_FAILURE() << "no row for " << sample << " in " << CorpusDir() << "/oracle.tsv";
  return {};
}

// The path of SAMPLE.bz2; "" and a failure if it is absent.
static std::string CompressedSample(const std::string& sample) {
  std::string bz2 = CorpusDir() + "/" + sample + ".bz2";
  if (std::filesystem::exists(bz2)) return bz2;
  ADD_FAILURE() << bz2 << " is absent. " << CorpusPresent().message();
  return "";
}

std::string Unpack(const std::string& sample, const std::string& dir) {
  std::string bz2 = CompressedSample(sample);
  if (bz2.empty()) return "";
  std::string out = dir + "/" + sample;
  MustRun("bzip2 -dc '" + bz2 + "' | cp --sparse=always /dev/stdin '" + out + "'");
  return out;
}

std::string ReadSample(const std::string& sample) {
  std::string bz2 = CompressedSample(sample);
  return bz2.empty() ? "" : MustRun("bzip2 -dc '" + bz2 + "'");
}

QemuMap CorpusMap(const std::string& sample) {
  std::string json = ReadFile(CorpusDir() + "/maps/" + sample + ".map.json");
  EXPECT_FALSE(json.empty()) << "no map for " << sample << " in " << CorpusDir() << "/maps";
  return json.empty() ? QemuMap{} : ParseQemuMap(json);
}

std::string Sha256OfRaw(ByteSource& src) {
  static const std::vector<char> zeros(8 * kMiB);
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(zeros.size());
  for (uint64_t off = 0; off < src.size();) {
    auto e = src.MapExtent(off);
    if (!e.ok()) return "MapExtent at " + std::to_string(off) + ": " + e.status().ToString();
    if (e->offset != off || e->length == 0) return "MapExtent at " + std::to_string(off) + ": bad";
    for (uint64_t o = off, end = off + e->length; o < end;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - o));
      const char* p = zeros.data();
      if (e->kind == Extent::Kind::kData) {
        Status s = src.ReadAt(o, n, buf.data());
        if (!s.ok()) return "ReadAt " + std::to_string(o) + ": " + s.ToString();
        p = buf.data();
      }
      EVP_DigestUpdate(ctx.get(), p, n);
      o += n;
    }
    off += e->length;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex;
  char two[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(two, sizeof two, "%02x", md[i]);
    hex += two;
  }
  return hex;
}

void ExpectMatchesOracle(ByteSource& raw, const Oracle& oracle) {
  EXPECT_EQ(raw.size(), oracle.virtual_size);
  if (oracle.virtual_size <= kMaxHashedBytes) {
    EXPECT_EQ(Sha256OfRaw(raw), oracle.sha256);
  }
}

void PrintTo(const CorpusSample& sample, std::ostream* os) { *os << sample.name; }

std::string CorpusSampleName(const ::testing::TestParamInfo<CorpusSample>& info) {
  std::string name = info.param.name;
  for (char& c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  }
  return name;
}

Result<Decoded> DecodeSample(const FormatSpec& format, const std::string& qemu_format,
                             const CorpusSample& sample) {
  ::testing::AssertionResult present = CorpusPresent();
  if (!present) {
    ADD_FAILURE() << present.message();
    return Status::NotFound("no corpus");
  }
  Oracle oracle = OracleFor(sample.name);
  EXPECT_EQ(oracle.format, qemu_format);
  TempDir dir("glancefs-sample");
  std::string path = Unpack(sample.name, dir.path());
  if (path.empty()) return Status::NotFound("no sample " + sample.name);
  std::shared_ptr<ByteSource> file = OpenFile(path);
  if (!file) return Status::IOError("cannot open " + path);
  auto probed = format.probe(*file);
  EXPECT_TRUE(probed.ok() && *probed) << sample.name << " does not probe as " << format.name;
  auto d = format.open(file);
  if (!d.ok()) return d.status();
  EXPECT_EQ(d->info.format, format.name);
  EXPECT_EQ(d->info.virtual_size, oracle.virtual_size);
  for (const auto& [key, value] : sample.facts) EXPECT_EQ(Fact(d->info.facts, key), value) << key;
  ExpectMatchesOracle(*d->raw, oracle);
  return d;
}

// ---- Fixtures ----

void QemuTest::SetUp() {
  ASSERT_TRUE(HaveQemuImg()) << "qemu-img and qemu-io (package qemu-utils) are the oracle of "
                                "these tests: run scripts/install-deps.sh";
  ASSERT_FALSE(dir_.path().empty()) << "no scratch directory";
}

void SourceTest::SetUp() {
  ASSERT_NO_FATAL_FAILURE(QemuTest::SetUp());
  src_ = dir_ / "src.raw";
  const uint64_t size = kSourceBytes;
  MakeSource(src_, size,
             {{0, 300 * kKiB},
              {3 * kMiB, 2 * kMiB, 0},
              {5 * kMiB + 4096, 4096},
              {9 * kMiB - 1000, 2000},
              {16 * kMiB - 5000, 10000},
              {33 * kMiB - 1000, 2000},
              {size - 3000, 3000}});
}

std::string SourceTest::Convert(const std::string& fmt, const std::string& name,
                                const std::string& opts) {
  return QemuConvertFromRaw(src_, fmt, opts, dir_ / name);
}

}  // namespace glancefs::format::testutil
