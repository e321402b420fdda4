// Helpers shared by the VHD and VHDX decoder tests: shell commands (qemu-img is the oracle),
// sparse sources, byte-for-byte and extent comparisons with `qemu-img convert` and `qemu-img
// map`, hashing a raw view with its holes as zeros, and the third-party sample corpus
// (../shared/corpus/samples beside the source tree, with qemu-img 7.2's oracle.tsv).
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "backends/dir/file_byte_source.h"
#include "fs/base/byte_source.h"

namespace glancefs::vhdtest {

constexpr uint64_t kMiB = 1 << 20;
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;  // [offset, length), merged

// Runs a shell command; its stdout (stderr too when it fails), and whether it exited 0.
inline std::pair<bool, std::string> Shell(const std::string& cmd) {
  static int serial = 0;
  const std::string err = "/tmp/glancefs-vhd-test." + std::to_string(::getpid()) + "." +
                          std::to_string(serial++) + ".err";
  FILE* p = ::popen((cmd + " 2>" + err).c_str(), "r");
  if (!p) return {false, "popen failed"};
  std::string out;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  bool ok = ::pclose(p) == 0;
  std::ifstream f(err);
  std::string errors((std::istreambuf_iterator<char>(f)), {});
  if (!ok) out += errors;
  std::filesystem::remove(err);
  return {ok, out};
}

inline std::string MustRun(const std::string& cmd) {
  auto [ok, out] = Shell(cmd);
  EXPECT_TRUE(ok) << cmd << ": " << out;
  return out;
}

inline bool HaveQemuImg() { return Shell("command -v qemu-img").first; }

// A directory removed with its contents at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix) {
    std::string tmpl = (std::filesystem::temp_directory_path() / (prefix + ".XXXXXX")).string();
    path_ = ::mkdtemp(tmpl.data()) ? tmpl : "";
  }
  ~TempDir() {
    if (!path_.empty()) std::filesystem::remove_all(path_);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::string ReadFile(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

inline void StoreBE(std::string* s, size_t off, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) (*s)[off + i] = static_cast<char>(v >> (8 * (bytes - 1 - i)));
}
inline void StoreLE(std::string* s, size_t off, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) (*s)[off + i] = static_cast<char>(v >> (8 * i));
}
inline uint64_t LoadLE(const std::string& s, size_t off, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(s[off + i]);
  return v;
}
inline uint64_t LoadBE(const std::string& s, size_t off, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = v << 8 | static_cast<unsigned char>(s[off + i]);
  return v;
}

inline std::string Random(std::mt19937_64& rng, size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() | 1);  // never a zero byte
  return s;
}

// A sparse raw file of `size` bytes: random data (some of it straddling 1 MiB and 2 MiB
// boundaries), 2 MiB of written zeros, a lone 4 KiB, holes, and data in the last bytes.
inline void MakeSource(const std::string& path, uint64_t size) {
  std::mt19937_64 rng(size);
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  auto put = [&](uint64_t off, const std::string& s) {
    if (off >= size) return;
    size_t n = static_cast<size_t>(std::min<uint64_t>(s.size(), size - off));
    ASSERT_EQ(::pwrite(fd, s.data(), n, static_cast<off_t>(off)), static_cast<ssize_t>(n));
  };
  put(0, Random(rng, 300 * 1024));
  put(3 * kMiB, std::string(2 * kMiB, '\0'));
  put(5 * kMiB + 4096, Random(rng, 4096));
  put(9 * kMiB - 1000, Random(rng, 2000));
  put(16 * kMiB - 5000, Random(rng, 10000));
  put(33 * kMiB - 1000, Random(rng, 2000));
  if (size > 3000) put(size - 3000, Random(rng, 3000));
  ::close(fd);
}

inline std::shared_ptr<ByteSource> OpenFile(const std::string& path) {
  auto f = backends::FileByteSource::Open(path, std::nullopt, path);
  EXPECT_TRUE(f.ok()) << path << ": " << f.status().ToString();
  return f.ok() ? std::shared_ptr<ByteSource>(*f) : nullptr;
}

// `qemu-img info`'s virtual size.
inline uint64_t QemuVirtualSize(const std::string& fmt, const std::string& image) {
  auto j = nlohmann::json::parse(MustRun("qemu-img info --output=json -f " + fmt + " " + image));
  return j["virtual-size"].get<uint64_t>();
}

inline void AppendRange(Ranges* out, uint64_t start, uint64_t len) {
  if (len == 0) return;
  if (!out->empty() && out->back().first + out->back().second == start) {
    out->back().second += len;
  } else {
    out->emplace_back(start, len);
  }
}

// `qemu-img map --output=json` as two range sets: data, and reads-as-zero.
struct QemuMap {
  Ranges data, zero;
};
inline QemuMap ParseQemuMap(const std::string& json) {
  QemuMap m;
  for (const auto& seg : nlohmann::json::parse(json)) {
    uint64_t start = seg["start"], len = seg["length"];
    if (seg["data"].get<bool>()) AppendRange(&m.data, start, len);
    if (seg["zero"].get<bool>()) AppendRange(&m.zero, start, len);
  }
  return m;
}

// A source's MapExtent walked from 0 to the end: its data runs and its other (hole, zero) runs.
// The walk must tile the source exactly.
struct ReaderMap {
  Ranges data, other;
};
inline ReaderMap MapOf(ByteSource& src) {
  ReaderMap m;
  for (uint64_t off = 0; off < src.size();) {
    auto e = src.MapExtent(off);
    EXPECT_TRUE(e.ok()) << "at " << off << ": " << e.status().ToString();
    if (!e.ok()) break;
    EXPECT_EQ(e->offset, off);
    EXPECT_GT(e->length, 0u);
    EXPECT_LE(e->length, src.size() - off);
    if (e->length == 0) break;
    AppendRange(e->kind == Extent::Kind::kData ? &m.data : &m.other, off, e->length);
    off += e->length;
  }
  return m;
}

// True iff every byte of `inner` lies in `outer` (both sorted and merged).
inline bool Covers(const Ranges& outer, const Ranges& inner) {
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

// Reads the whole source in chunks and compares it with the file at `raw_path`.
inline void ExpectSameBytes(ByteSource& src, const std::string& raw_path) {
  std::ifstream raw(raw_path, std::ios::binary);
  std::filesystem::path p(raw_path);
  ASSERT_EQ(std::filesystem::file_size(p), src.size());
  std::vector<char> got(4 * kMiB), want(4 * kMiB);
  for (uint64_t off = 0; off < src.size();) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(got.size(), src.size() - off));
    Status s = src.ReadAt(off, n, got.data());
    ASSERT_TRUE(s.ok()) << "at " << off << ": " << s.ToString();
    raw.read(want.data(), static_cast<std::streamsize>(n));
    ASSERT_TRUE(std::memcmp(got.data(), want.data(), n) == 0)
        << "bytes differ in [" << off << ", " << off + n << ")";
    off += n;
  }
}

// Random spans (some crossing block boundaries, some unaligned) read from `src` equal the raw
// file's.
inline void ExpectRandomReadsMatch(ByteSource& src, const std::string& raw_path, int count) {
  std::string raw = ReadFile(raw_path);
  ASSERT_EQ(raw.size(), src.size());
  std::mt19937_64 rng(7);
  for (int i = 0; i < count; ++i) {
    uint64_t off = rng() % raw.size();
    size_t n = static_cast<size_t>(std::min<uint64_t>(raw.size() - off, 1 + rng() % (1 * kMiB)));
    std::string got(n, '\x55');
    Status s = src.ReadAt(off, n, got.data());
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_TRUE(got == raw.substr(off, n)) << "read of " << n << " at " << off;
  }
}

// SHA-256 of the source's bytes, its holes and zero runs hashed as zeros without reading them.
inline std::string Sha256Hex(ByteSource& src) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  static const std::vector<char> zeros(8 * kMiB);
  std::vector<char> buf(8 * kMiB);
  for (uint64_t off = 0; off < src.size();) {
    auto e = src.MapExtent(off);
    if (!e.ok()) return "MapExtent: " + e.status().ToString();
    if (e->length == 0) return "MapExtent: empty extent";
    for (uint64_t o = off, end = off + e->length; o < end;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - o));
      if (e->kind == Extent::Kind::kData) {
        Status s = src.ReadAt(o, n, buf.data());
        if (!s.ok()) return "ReadAt: " + s.ToString();
        EVP_DigestUpdate(ctx.get(), buf.data(), n);
      } else {
        EVP_DigestUpdate(ctx.get(), zeros.data(), n);
      }
      o += n;
    }
    off += e->length;
  }
  unsigned char md[32];
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), md, &len);
  std::string hex;
  char b[3];
  for (unsigned i = 0; i < len; ++i) {
    std::snprintf(b, sizeof b, "%02x", md[i]);
    hex += b;
  }
  return hex;
}

// A source that counts what is read through it: the largest single read and the total.
class CountingSource final : public ByteSource {
 public:
  explicit CountingSource(std::shared_ptr<ByteSource> base) : base_(std::move(base)) {}
  uint64_t size() const override { return base_->size(); }
  Status ReadAt(uint64_t off, size_t n, char* dst) override {
    std::lock_guard<std::mutex> lock(mu_);
    largest_read = std::max<uint64_t>(largest_read, n);
    total_read += n;
    return base_->ReadAt(off, n, dst);
  }
  uint64_t largest_read = 0, total_read = 0;

 private:
  std::mutex mu_;
  const std::shared_ptr<ByteSource> base_;
};

// ---- The sample corpus ----

// ../shared/corpus/samples beside the source tree (where CI puts shared/).
inline std::string CorpusDir() {
  return std::string(GLANCEFS_SOURCE_DIR) + "/../shared/corpus/samples";
}

struct Oracle {
  std::string format;
  uint64_t virtual_size = 0;
  std::string sha256;
};

// The row of oracle.tsv for `sample`; fails the test if the corpus or the row is missing.
inline Oracle OracleFor(const std::string& sample) {
  std::ifstream tsv(CorpusDir() + "/oracle.tsv");
  EXPECT_TRUE(tsv.good()) << CorpusDir()
                          << "/oracle.tsv is absent: the corpus (shared/ beside the clone) is "
                             "required by this test";
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
  ADD_FAILURE() << "no row for " << sample << " in oracle.tsv";
  return {};
}

// Decompresses SAMPLE.bz2 (sparse) into `dir`; returns its path ("" and a failure if absent).
inline std::string Unpack(const std::string& sample, const std::string& dir) {
  std::string bz2 = CorpusDir() + "/" + sample + ".bz2";
  if (!std::filesystem::exists(bz2)) {
    ADD_FAILURE() << bz2 << " is absent: the corpus (shared/ beside the clone) is required";
    return "";
  }
  std::string out = dir + "/" + sample;
  MustRun("bzip2 -dc '" + bz2 + "' | cp --sparse=always /dev/stdin '" + out + "'");
  return out;
}

// qemu-img's map of the sample, from the corpus.
inline QemuMap CorpusMap(const std::string& sample) {
  std::string json = ReadFile(CorpusDir() + "/maps/" + sample + ".map.json");
  EXPECT_FALSE(json.empty()) << "no map for " << sample;
  return json.empty() ? QemuMap{} : ParseQemuMap(json);
}

}  // namespace glancefs::vhdtest
