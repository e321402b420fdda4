// The ploop (Parallels) decoder against its oracles: images made by `qemu-img convert -O
// parallels` with several cluster sizes, from a sparse source with holes, zero runs, random data
// and a size that is not a multiple of the cluster size, must decode to exactly what `qemu-img
// convert -O raw` gives, with the data extents `qemu-img map` reports; the third-party samples
// of the shared corpus must hash to oracle.tsv. Hostile headers, BATs and format extensions,
// patched here, must be refused or reported corrupt, each with its own message, without
// allocating what they claim.
#include "fs/format/ploop_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "tests/fakes/fakes.h"

namespace glancefs::format {
namespace {

using glancefs::testing::MemByteSource;
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

constexpr uint64_t kMiB = 1 << 20;

// Runs a shell command; its stdout (stderr too when it fails), and whether it exited 0.
std::pair<bool, std::string> Shell(const std::string& cmd) {
  const std::string err = "/tmp/glancefs-ploop-test." + std::to_string(::getpid()) + ".err";
  FILE* p = ::popen((cmd + " 2>" + err).c_str(), "r");
  if (!p) return {false, "popen failed"};
  std::string out;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  bool ok = ::pclose(p) == 0;
  if (!ok) {
    std::ifstream f(err);
    out += std::string(std::istreambuf_iterator<char>(f), {});
  }
  std::filesystem::remove(err);
  return {ok, out};
}

std::string MustRun(const std::string& cmd) {
  auto [ok, out] = Shell(cmd);
  EXPECT_TRUE(ok) << cmd << ": " << out;
  return out;
}

std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

void StoreLE32(std::string* s, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) (*s)[off + i] = static_cast<char>(v >> (8 * i));
}
void StoreLE64(std::string* s, size_t off, uint64_t v) {
  StoreLE32(s, off, static_cast<uint32_t>(v));
  StoreLE32(s, off + 4, static_cast<uint32_t>(v >> 32));
}

std::string Random(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() | 1);  // never a zero byte
  return s;
}

// A sparse raw file of `size` bytes: random data, a run of written zeros, holes.
void MakeSource(const std::string& path, uint64_t size) {
  std::mt19937_64 rng(size);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, size), 0);
  auto put = [&](uint64_t off, const std::string& s) {
    if (off >= size) return;
    size_t n = std::min<uint64_t>(s.size(), size - off);
    ASSERT_EQ(::pwrite(fd, s.data(), n, off), static_cast<ssize_t>(n));
  };
  put(0, Random(rng, 70000));
  put(2 * kMiB + 4096, std::string(300000, '\0'));
  put(3 * kMiB + 100, Random(rng, 1500000));
  put(size - std::min<uint64_t>(size, 1000), Random(rng, 1000));
  ::close(fd);
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/glancefs-ploop-XXXXXX";
    path_ = ::mkdtemp(tmpl) ? tmpl : "";
  }
  ~TempDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A MemByteSource that pins: ReadPinned hands out pieces of its string.
class PinnedMem : public MemByteSource {
 public:
  explicit PinnedMem(std::string data) : MemByteSource(data), data_(std::move(data)) {}
  Status ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) override {
    if (off > data_.size() || n > data_.size() - off) return Status::OutOfRange("past end");
    out->push_back({data_.data() + off, n, nullptr});
    return Status::Ok();
  }

 private:
  std::string data_;
};

std::string DecodeAll(ByteSource& src) {
  std::string out(src.size(), '\0');
  Status s = src.ReadAt(0, out.size(), out.data());
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

void Append(Ranges* r, uint64_t start, uint64_t len) {
  if (!r->empty() && r->back().first + r->back().second == start) {
    r->back().second += len;
  } else {
    r->emplace_back(start, len);
  }
}

Ranges QemuDataRanges(const std::string& json) {
  Ranges r;
  for (const auto& seg : nlohmann::json::parse(json)) {
    if (seg["data"].get<bool>()) Append(&r, seg["start"], seg["length"]);
  }
  return r;
}

Ranges DataRanges(ByteSource& src) {
  Ranges r;
  for (uint64_t off = 0; off < src.size();) {
    auto e = src.MapExtent(off);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    if (!e.ok() || e->length == 0 || e->offset != off) break;
    EXPECT_NE(e->kind, Extent::Kind::kZero);  // ploop has no zero clusters
    if (e->kind == Extent::Kind::kData) Append(&r, off, e->length);
    off += e->length;
  }
  return r;
}

// SHA-256 of the whole raw view, hex: data extents read, holes hashed as zeros unread.
std::string Sha256OfRaw(ByteSource& src) {
  static const std::string kZeros(4 * kMiB, '\0');
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EXPECT_EQ(EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr), 1);
  std::string buf(kZeros.size(), '\0');
  for (uint64_t off = 0; off < src.size();) {
    auto e = src.MapExtent(off);
    if (!e.ok() || e->length == 0) {
      ADD_FAILURE() << "MapExtent at " << off << ": " << e.status().ToString();
      return "";
    }
    for (uint64_t left = e->length; left > 0;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      const char* p = kZeros.data();
      if (e->kind == Extent::Kind::kData) {
        Status s = src.ReadAt(off, n, buf.data());
        if (!s.ok()) {
          ADD_FAILURE() << "read at " << off << ": " << s.ToString();
          return "";
        }
        p = buf.data();
      }
      EVP_DigestUpdate(ctx.get(), p, n);
      off += n;
      left -= n;
    }
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex;
  char two[3];
  for (unsigned int i = 0; i < len; ++i) {
    std::snprintf(two, sizeof two, "%02x", md[i]);
    hex += two;
  }
  return hex;
}

class PloopReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Shell("qemu-img --version").first)
        << "qemu-img is missing: run scripts/install-deps.sh";
    ASSERT_FALSE(dir_.path().empty());
  }

  // A qemu-made parallels image of a MakeSource of `size` bytes: its path.
  std::string Make(uint64_t size, const std::string& cluster_size) {
    std::string src = dir_.path() + "/src" + std::to_string(size) + ".raw";
    if (!std::filesystem::exists(src)) MakeSource(src, size);
    std::string img = dir_.path() + "/img" + std::to_string(size) + "-" + cluster_size + ".ploop";
    MustRun("qemu-img convert -f raw -O parallels -o cluster_size=" + cluster_size + " " + src +
            " " + img);
    return img;
  }

  std::string QemuRaw(const std::string& img) {
    std::string raw = img + ".raw";
    MustRun("qemu-img convert -f parallels -O raw " + img + " " + raw);
    return ReadFile(raw);
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
    ByteSource& raw = *decoded->raw;
    std::string want = QemuRaw(img);
    ASSERT_EQ(raw.size(), want.size());
    EXPECT_EQ(decoded->info.virtual_size, want.size());
    EXPECT_TRUE(DecodeAll(raw) == want) << "decoded bytes differ from qemu-img convert";
    EXPECT_EQ(DataRanges(raw),
              QemuDataRanges(MustRun("qemu-img map --output=json -f parallels " + img)));
    std::mt19937_64 rng(cluster_size);
    for (int i = 0; i < 100; ++i) {
      uint64_t off = rng() % want.size();
      size_t n = 1 + rng() % std::min<uint64_t>(want.size() - off, 3 * kMiB);
      std::string got(n, '\0');
      Status s = raw.ReadAt(off, n, got.data());
      EXPECT_TRUE(s.ok() && got == want.substr(off, n)) << s.ToString() << " at " << off;
      std::vector<PinnedSlice> pieces;
      s = raw.ReadPinned(off, n, &pieces);
      std::string pinned;
      for (const auto& p : pieces) pinned.append(p.data, p.size);
      // A read of many small clusters may come back NotSupported (too many pieces).
      if (!s.IsNotSupported()) {
        EXPECT_TRUE(s.ok() && pinned == got) << s.ToString() << " pinned at " << off;
      }
    }
    EXPECT_EQ(raw.ReadAt(want.size() - 1, 2, nullptr).code(), Status::Code::kOutOfRange);
    EXPECT_FALSE(raw.MapExtent(want.size()).ok());
  }

  TempDir dir_;
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
      StoreLE32(&b, 64 + 4 * i, LoadLE32(&b[64 + 4 * i]) * tracks);
    }
    StoreLE32(&b, 40, 0x1234);  // the high half of nb_sectors: ignored in version 1, as qemu
    WriteFile(img, b);
    ExpectLikeQemu(img, 1, uint64_t{tracks} * 512);
  }
}

TEST(PloopCorpusTest, SamplesHashToTheOracle) {
  const char* env = std::getenv("GLANCEFS_CORPUS_DIR");
  const std::string dir =
      env ? env : std::string(GLANCEFS_SOURCE_DIR) + "/../shared/corpus/samples";
  ASSERT_TRUE(std::filesystem::exists(dir + "/oracle.tsv"))
      << "the shared corpus is missing: no " << dir << "/oracle.tsv (set GLANCEFS_CORPUS_DIR)";
  ASSERT_TRUE(Shell("bzip2 --help").first) << "bzip2 is missing";
  std::map<std::string, std::pair<uint64_t, std::string>> oracle;  // sample: size, sha256
  std::istringstream tsv(ReadFile(dir + "/oracle.tsv"));
  for (std::string line; std::getline(tsv, line);) {
    std::istringstream f(line);
    std::string sample, fmt, size, sha;
    if (std::getline(f, sample, '\t') && std::getline(f, fmt, '\t') &&
        std::getline(f, size, '\t') && std::getline(f, sha, '\t') && fmt == "parallels") {
      oracle[sample] = {std::stoull(size), sha};
    }
  }
  TempDir tmp;
  for (const std::string name :
       {"fake.parallels", "parallels-v1", "parallels-v2", "parallels-with-bitmap"}) {
    SCOPED_TRACE(name);
    ASSERT_EQ(oracle.count(name), 1u) << "oracle.tsv has no line for " << name;
    std::string path = tmp.path() + "/" + name;
    MustRun("bzip2 -dc " + dir + "/" + name + ".bz2 > " + path);
    auto file = std::make_shared<MemByteSource>(ReadFile(path));
    ASSERT_TRUE(*kPloopFormat.probe(*file));
    auto decoded = kPloopFormat.open(file);
    ASSERT_TRUE(decoded.ok()) << decoded.status().ToString();
    ByteSource& raw = *decoded->raw;
    EXPECT_EQ(raw.size(), oracle[name].first);
    EXPECT_EQ(DataRanges(raw), QemuDataRanges(ReadFile(dir + "/maps/" + name + ".map.json")));
    EXPECT_EQ(Sha256OfRaw(raw), oracle[name].second);
    if (name == "parallels-with-bitmap") {
      EXPECT_EQ(decoded->info.facts.back(),
                (std::pair<std::string, std::string>("dirty_bitmaps", "1")));
    }
  }
}

class PloopHostileTest : public PloopReaderTest {
 protected:
  void SetUp() override {
    PloopReaderTest::SetUp();
    bytes_ = ReadFile(Make(11 * kMiB + 29184, "64k"));
    ASSERT_GT(bytes_.size(), 64u << 10);
  }
  Status OpenStatus(const std::string& bytes, const PloopLimits& limits = PloopLimits()) {
    return PloopReader::Open(std::make_shared<MemByteSource>(bytes), limits).status();
  }
  // bytes_ with a Format Extension cluster appended, holding `features` after its header.
  std::string WithExtension(const std::string& features, uint64_t magic = 0xab234cef23dcea87) {
    std::string b = bytes_;
    StoreLE64(&b, 56, b.size() / 512);
    std::string ext(64 << 10, '\0');
    StoreLE64(&ext, 0, magic);
    ext.replace(24, features.size(), features);
    return b + ext;
  }
  std::string bytes_;
};

TEST_F(PloopHostileTest, ClusterPastTheEndOfTheFileIsCorruptOnRead) {
  std::string b = bytes_;
  StoreLE32(&b, 64, 0x100000);  // cluster 0 at 64 GiB
  auto reader = PloopReader::Open(std::make_shared<MemByteSource>(b));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  char buf[4096];
  Status s = (*reader)->ReadAt(10, sizeof buf, buf);
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_EQ(s.message(),
            "parallels: cluster 0 (BAT entry 0x100000) is stored at 0x1000000000, "
            "past the end of the file (" +
                std::to_string(b.size()) + " bytes)");
  std::vector<PinnedSlice> pieces;
  EXPECT_TRUE((*reader)->ReadPinned(10, sizeof buf, &pieces).IsCorruption());
  EXPECT_TRUE(pieces.empty());
  EXPECT_TRUE((*reader)->ReadAt(3 * kMiB + 4096, sizeof buf, buf).ok());  // others still read
}

TEST_F(PloopHostileTest, HugeBatIsCorruptWithoutAllocating) {
  std::string b = bytes_;
  StoreLE32(&b, 32, 0xffffffff);
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
  StoreLE64(&b, 36, uint64_t{1} << 40);  // 512 TiB
  auto reader = PloopReader::Open(std::make_shared<MemByteSource>(b));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  auto e = (*reader)->MapExtent(12 * kMiB);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kHole);
  EXPECT_EQ(e->offset + e->length, uint64_t{1} << 49);
  char buf[512];
  EXPECT_TRUE((*reader)->ReadAt((uint64_t{1} << 49) - 512, 512, buf).ok());
  EXPECT_EQ(std::string(buf, 512), std::string(512, '\0'));
  StoreLE64(&b, 36, uint64_t{1} << 60);
  EXPECT_EQ(OpenStatus(b).message(), "parallels: 1152921504606846976 sectors is too large");
}

TEST_F(PloopHostileTest, HeaderChecks) {
  auto patched = [&](size_t off, uint32_t v) {
    std::string b = bytes_;
    StoreLE32(&b, off, v);
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
  StoreLE32(&b, 44, 0x746f6e59);
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
  StoreLE64(&feature, 0, 0x20385fae252cb34a);  // a dirty bitmap, 40 bytes of data
  StoreLE32(&feature, 16, 36);
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
  StoreLE64(&other, 0, 0x1122334455667788);
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
  StoreLE64(&b, 56, uint64_t{1} << 60);
  EXPECT_EQ(OpenStatus(b).message(),
            "parallels: format extension at sector 1152921504606846976 "
            "is outside the file (" +
                std::to_string(b.size()) + " bytes)");
  // Empty dirty bitmaps filling the cluster, with no end marker.
  std::string endless;
  while (endless.size() < (64 << 10)) endless += feature;
  for (size_t i = 0; i < endless.size(); i += 24) StoreLE32(&endless, i + 16, 0);
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
  StoreLE32(&big, 16, 1 << 20);
  s = OpenStatus(WithExtension(big));
  EXPECT_TRUE(s.IsCorruption());
  EXPECT_NE(s.message().find("dirty bitmap feature at"), std::string::npos);
}

}  // namespace
}  // namespace glancefs::format
