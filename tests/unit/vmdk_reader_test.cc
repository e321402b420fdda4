// VmdkReader against its oracle: images made by qemu-img (monolithicSparse, streamOptimized,
// compat6, zeroed grains) decode to the bytes `qemu-img convert -O raw` writes and map as
// `qemu-img map` does; the VMware-made samples of shared/corpus hash to oracle.tsv; and every
// hostile variant is refused with its own message.
#include "fs/format/vmdk_reader.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <thread>

#include "tests/fakes/fakes.h"

namespace glancefs::format {
namespace {

using glancefs::testing::MemByteSource;

// A scratch directory under /tmp, removed with everything in it.
class Scratch {
 public:
  Scratch() {
    char tmpl[] = "/tmp/vmdk_test.XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  ~Scratch() { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }

 private:
  std::string dir_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

// Runs a shell command; returns its standard output, or fails the test.
std::string Sh(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) {
    ADD_FAILURE() << "cannot run: " << cmd;
    return out;
  }
  char buf[65536];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  int rc = pclose(p);
  EXPECT_EQ(rc, 0) << "failed: " << cmd;
  return out;
}

void RequireQemuImg() {
  ASSERT_EQ(std::system("command -v qemu-img >/dev/null && command -v qemu-io >/dev/null"), 0)
      << "qemu-img and qemu-io (package qemu-utils) are the oracle of these tests: install them";
}

uint64_t Le64(const std::string& b, size_t at) { return LoadLE64(b.data() + at); }
void PutLe32(std::string& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = static_cast<char>(v >> (8 * i));
}
void PutLe64(std::string& b, size_t at, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[at + i] = static_cast<char>(v >> (8 * i));
}

Result<Decoded> Decode(std::string bytes) {
  return kVmdkFormat.open(std::make_shared<MemByteSource>(std::move(bytes)));
}

std::string Fact(const FormatInfo& info, const std::string& key) {
  for (const auto& [k, v] : info.facts) {
    if (k == key) return v;
  }
  return "<none>";
}

// A sparse raw file of `size` bytes: random data, a 0x55 run, explicitly written zeros and
// holes, at offsets that straddle grains (and grain tables, for sizes over 32 MiB).
void MakeSource(const std::string& path, uint64_t size) {
  std::mt19937_64 rng(size);
  int fd = open(path.c_str(), O_CREAT | O_TRUNC | O_WRONLY, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
  auto put = [&](uint64_t off, uint64_t len, int fill) {
    std::string b(len, static_cast<char>(fill));
    if (fill < 0) {
      for (char& c : b) c = static_cast<char>(rng());
    }
    ASSERT_EQ(pwrite(fd, b.data(), b.size(), static_cast<off_t>(off)), static_cast<ssize_t>(len));
  };
  put(0, 100000, -1);
  put(300000, 512, 0x55);
  put(1 << 20, 65536, -1);
  put((2 << 20) + 4096, 131072 - 4096, 0);  // allocated zeros: qemu-img writes no grain
  if (size > (33 << 20)) put((32 << 20) - 70000, 140000, -1);
  put(size - 700, 700, -1);
  close(fd);
}

struct QemuExtent {
  uint64_t start = 0, length = 0;
  bool present = false, data = false;
};

// `qemu-img map --output=json`: one object per line.
std::vector<QemuExtent> ParseQemuMap(const std::string& json) {
  std::vector<QemuExtent> out;
  std::istringstream in(json);
  for (std::string line; std::getline(in, line);) {
    auto num = [&](const char* key) {
      size_t p = line.find(key);
      return p == std::string::npos ? 0 : std::stoull(line.substr(p + std::strlen(key)));
    };
    auto flag = [&](const char* key) {
      size_t p = line.find(key);
      return p != std::string::npos && line.compare(p + std::strlen(key), 4, "true") == 0;
    };
    if (line.find("\"start\"") == std::string::npos) continue;
    out.push_back(
        {num("\"start\": "), num("\"length\": "), flag("\"present\": "), flag("\"data\": ")});
  }
  return out;
}

// Data where qemu says data, kZero where it says present zeros, holes where it says absent.
void ExpectSameMap(ByteSource& raw, const std::vector<QemuExtent>& qemu) {
  uint64_t covered = 0;
  for (const QemuExtent& q : qemu) {
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

void ExpectSameBytes(ByteSource& raw, const std::string& ref) {
  ASSERT_EQ(raw.size(), ref.size());
  std::string got(ref.size(), '\1');
  ASSERT_TRUE(raw.ReadAt(0, got.size(), got.data()).ok());
  ASSERT_TRUE(got == ref) << "whole read differs";
  // Odd-sized reads that start and end inside grains.
  std::string buf(100003, '\0');
  for (uint64_t off = 0; off < ref.size(); off += buf.size()) {
    size_t n = std::min<uint64_t>(buf.size(), ref.size() - off);
    Status s = raw.ReadAt(off, n, buf.data());
    ASSERT_TRUE(s.ok()) << s.ToString();
    ASSERT_EQ(std::memcmp(buf.data(), ref.data() + off, n), 0) << "read at " << off;
  }
}

// Converts `src` with `opts`, then checks the decoder against qemu-img's raw and map.
FormatInfo ExpectDecodesLikeQemu(const Scratch& s, const std::string& vmdk) {
  std::string ref = s.path("ref.raw");
  Sh("qemu-img convert -f vmdk -O raw '" + vmdk + "' " + ref);
  auto qemu_map = ParseQemuMap(Sh("qemu-img map --output=json -f vmdk '" + vmdk + "'"));
  auto d = Decode(ReadFile(vmdk));
  EXPECT_TRUE(d.ok()) << d.status().ToString();
  if (!d.ok()) return {};
  EXPECT_EQ(d->info.format, "vmdk");
  EXPECT_EQ(d->info.virtual_size, d->raw->size());
  ExpectSameBytes(*d->raw, ReadFile(ref));
  ExpectSameMap(*d->raw, qemu_map);
  return d->info;
}

TEST(VmdkReaderTest, DecodesWhatQemuImgWrites) {
  RequireQemuImg();
  Scratch s;
  const uint64_t size = (3 << 20) + 512;
  MakeSource(s.path("src.raw"), size);
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
    std::string vmdk = s.path("img.vmdk");
    Sh("qemu-img convert -f raw -O vmdk -o " + c.opts + " " + s.path("src.raw") + " " + vmdk);
    FormatInfo info = ExpectDecodesLikeQemu(s, vmdk);
    EXPECT_EQ(info.virtual_size, size);
    EXPECT_EQ(Fact(info, "subformat"), c.subformat);
    EXPECT_EQ(Fact(info, "version"), c.version);
    EXPECT_EQ(Fact(info, "grain_size"), "65536");
    EXPECT_EQ(Fact(info, "compression"), c.compression);
    EXPECT_EQ(Fact(info, "hardware_version"), c.hw);
    EXPECT_EQ(Fact(info, "adapter_type"),
              c.opts.find("lsilogic") != std::string::npos ? "lsilogic" : "ide");
  }
}

TEST(VmdkReaderTest, CrossesGrainTables) {
  RequireQemuImg();
  Scratch s;
  MakeSource(s.path("src.raw"), (67 << 20) + 512);
  for (const char* sub : {"monolithicSparse", "streamOptimized"}) {
    SCOPED_TRACE(sub);
    std::string vmdk = s.path("img.vmdk");
    Sh(std::string("qemu-img convert -f raw -O vmdk -o subformat=") + sub + " " +
       s.path("src.raw") + " " + vmdk);
    ExpectDecodesLikeQemu(s, vmdk);
  }
}

TEST(VmdkReaderTest, ZeroedGrainsMapAsZeros) {
  RequireQemuImg();
  Scratch s;
  std::string vmdk = s.path("z.vmdk");
  Sh("qemu-img create -q -f vmdk -o zeroed_grain=on " + vmdk + " 4M");
  Sh("qemu-io -f vmdk -c 'write -P 7 0 256k' -c 'write -z 64k 128k' -c 'write -z 1M 1M' "
     "-c 'write -P 9 3M 1000' " +
     vmdk + " >/dev/null");
  FormatInfo info = ExpectDecodesLikeQemu(s, vmdk);
  EXPECT_EQ(Fact(info, "zeroed_grain"), "true");
  auto d = Decode(ReadFile(vmdk));
  ASSERT_TRUE(d.ok());
  auto e = d->raw->MapExtent(1 << 20);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->kind, Extent::Kind::kZero);
  EXPECT_EQ(e->length, 1u << 20);
}

// A stream whose header says GD_AT_END: the footer copy is the one read. Made from qemu's
// stream by moving its header to a footer, as VMware's exports lay it out.
TEST(VmdkReaderTest, ReadsTheFooterWhenTheGrainDirectoryIsAtTheEnd) {
  RequireQemuImg();
  Scratch s;
  MakeSource(s.path("src.raw"), (3 << 20) + 512);
  Sh("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized " + s.path("src.raw") + " " +
     s.path("q.vmdk"));
  std::string img = ReadFile(s.path("q.vmdk"));
  img.resize((img.size() + 511) / 512 * 512, '\0');
  std::string footer_marker(512, '\0'), eos(512, '\0');
  PutLe64(footer_marker, 0, 1);
  PutLe32(footer_marker, 12, 3);
  std::string footer_header = img.substr(0, 512);
  PutLe64(img, 56, ~uint64_t{0});
  std::string stream = img + footer_marker + footer_header + eos;
  WriteFile(s.path("stream.vmdk"), stream);
  FormatInfo info = ExpectDecodesLikeQemu(s, s.path("stream.vmdk"));
  EXPECT_EQ(Fact(info, "footer"), "true");

  // A footer that is not one.
  std::string bad = stream;
  bad[bad.size() - 512 + 12] = 2;  // the end-of-stream marker's type
  auto d = Decode(bad);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Status::Code::kCorruption);
  EXPECT_NE(d.status().message().find("no end-of-stream marker"), std::string::npos)
      << d.status().ToString();
  bad = stream;
  PutLe64(bad, bad.size() - 1024 + 56, ~uint64_t{0});
  d = Decode(bad);
  ASSERT_FALSE(d.ok());
  EXPECT_NE(d.status().message().find("another footer"), std::string::npos);
}

TEST(VmdkReaderTest, ConcurrentReadsOfCompressedGrains) {
  RequireQemuImg();
  Scratch s;
  MakeSource(s.path("src.raw"), (3 << 20) + 512);
  Sh("qemu-img convert -f raw -O vmdk -o subformat=streamOptimized " + s.path("src.raw") + " " +
     s.path("img.vmdk"));
  Sh("qemu-img convert -f vmdk -O raw " + s.path("img.vmdk") + " " + s.path("ref.raw"));
  std::string ref = ReadFile(s.path("ref.raw"));
  VmdkLimits limits;
  limits.gt_cache_bytes = 1;  // one table: every thread evicts
  auto r = VmdkReader::Open(std::make_shared<MemByteSource>(ReadFile(s.path("img.vmdk"))), limits);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::string buf;
      for (int i = 0; i < 300; ++i) {
        uint64_t off = rng() % ref.size();
        size_t n = 1 + rng() % std::min<uint64_t>(200000, ref.size() - off);
        buf.resize(n);
        if (!(*r)->ReadAt(off, n, buf.data()).ok() || buf != ref.substr(off, n)) ++bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

// shared/corpus/samples: beside the checkout (CI lays shared/ there), or $GLANCEFS_CORPUS_DIR.
std::string CorpusDir() {
  const char* env = std::getenv("GLANCEFS_CORPUS_DIR");
  return env ? env : GLANCEFS_SOURCE_DIR "/../shared/corpus/samples";
}

// The sample NAME, decompressed. The corpus is required: missing, the test fails.
std::string LoadSample(const std::string& name) {
  std::string path = CorpusDir() + "/" + name + ".bz2";
  if (!std::filesystem::exists(path)) {
    ADD_FAILURE() << "corpus sample " << path << " is missing: these tests need shared/corpus "
                  << "beside the checkout (or GLANCEFS_CORPUS_DIR)";
    return "";
  }
  return Sh("bzip2 -dc '" + path + "'");
}

// oracle.tsv's sha256 of the raw conversion of `name`.
std::string OracleSha(const std::string& name, uint64_t* virtual_size) {
  std::ifstream in(CorpusDir() + "/oracle.tsv");
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> cols;
    std::istringstream ls(line);
    for (std::string c; std::getline(ls, c, '\t');) cols.push_back(c);
    if (cols.size() >= 4 && cols[0] == name) {
      *virtual_size = std::stoull(cols[2]);
      return cols[3];
    }
  }
  ADD_FAILURE() << name << " is not in oracle.tsv";
  return "";
}

// The sha256 of the whole raw view; holes and zeros hashed from a zero buffer, unread.
std::string RawSha256(ByteSource& raw) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20), zeros(1 << 20);
  for (uint64_t off = 0; off < raw.size();) {
    auto e = raw.MapExtent(off);
    if (!e.ok()) return "MapExtent: " + e.status().ToString();
    for (uint64_t o = off; o < e->offset + e->length;) {
      size_t n = std::min<uint64_t>(buf.size(), e->offset + e->length - o);
      const char* p = zeros.data();
      if (e->kind == Extent::Kind::kData) {
        Status s = raw.ReadAt(o, n, buf.data());
        if (!s.ok()) return "ReadAt: " + s.ToString();
        p = buf.data();
      }
      EVP_DigestUpdate(ctx.get(), p, n);
      o += n;
    }
    off = e->offset + e->length;
  }
  unsigned char md[32];
  EVP_DigestFinal_ex(ctx.get(), md, nullptr);
  char hex[65];
  for (int i = 0; i < 32; ++i) std::snprintf(hex + 2 * i, 3, "%02x", md[i]);
  return hex;
}

TEST(VmdkCorpusTest, VmwareStreamsHashToTheOracle) {
  ASSERT_TRUE(std::filesystem::is_directory(CorpusDir()))
      << "corpus " << CorpusDir() << " is missing: shared/ must be beside the checkout";
  for (const std::string name : {"iotest-version3-old.vmdk", "iotest-version3.vmdk"}) {
    SCOPED_TRACE(name);
    auto d = Decode(LoadSample(name));
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    uint64_t vsize = 0;
    std::string sha = OracleSha(name, &vsize);
    EXPECT_EQ(d->info.virtual_size, vsize);
    EXPECT_EQ(Fact(d->info, "subformat"), "streamOptimized");
    EXPECT_EQ(Fact(d->info, "version"), "3");
    EXPECT_EQ(Fact(d->info, "footer"), "true");
    EXPECT_EQ(Fact(d->info, "adapter_type"), "lsilogic");
    EXPECT_EQ(RawSha256(*d->raw), sha);
    ExpectSameMap(*d->raw, ParseQemuMap(ReadFile(CorpusDir() + "/maps/" + name + ".map.json")));
  }
  // qemu-iotests 059: 512 bytes at i * 655360 + i * 512 hold 0x30 + i % 10.
  auto d = Decode(LoadSample("iotest-version3.vmdk"));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(Fact(d->info, "hardware_version"), "8");
  for (uint64_t i = 0; i < 100; ++i) {
    std::string buf(512, '\0');
    ASSERT_TRUE(d->raw->ReadAt(i * 655360 + i * 512, buf.size(), buf.data()).ok());
    EXPECT_EQ(buf, std::string(512, static_cast<char>(0x30 + i % 10))) << i;
  }
}

TEST(VmdkCorpusTest, FuzzedHeaderIsRefused) {
  ASSERT_TRUE(std::filesystem::is_directory(CorpusDir()))
      << "corpus " << CorpusDir() << " is missing: shared/ must be beside the checkout";
  auto d = Decode(LoadSample("afl9.vmdk"));
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

TEST(VmdkReaderTest, RefusesDescriptorFiles) {
  RequireQemuImg();
  Scratch s;
  Sh("qemu-img create -q -f vmdk -o subformat=monolithicFlat " + s.path("f.vmdk") + " 1M");
  ExpectStatus(Decode(ReadFile(s.path("f.vmdk"))), Status::Code::kRefused,
               "a descriptor file (createType \"monolithicFlat\") whose data is in other files: "
               "\"f-flat.vmdk\"");
  Sh("qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse " + s.path("t.vmdk") + " 1M");
  ExpectStatus(Decode(ReadFile(s.path("t.vmdk"))), Status::Code::kRefused,
               "(createType \"twoGbMaxExtentSparse\") whose data is in other files: "
               "\"t-s001.vmdk\"");
  // Its extent file alone: a sparse header whose descriptor is empty.
  ExpectStatus(Decode(ReadFile(s.path("t-s001.vmdk"))), Status::Code::kRefused,
               "the embedded descriptor has no createType");
  ExpectStatus(Decode(std::string("COWD") + std::string(2048, '\0')), Status::Code::kRefused,
               "COWD");
}

// Rewrites the embedded descriptor (sector 1 on, up to its first NUL) in place: the same
// number of bytes, NUL-padded, as a hex editor would.
std::string EditDescriptor(std::string image, const std::function<void(std::string&)>& edit) {
  uint64_t desc_bytes = Le64(image, 36) * 512;
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

TEST(VmdkReaderTest, RefusesHostileDescriptors) {
  RequireQemuImg();
  Scratch s;
  Sh("qemu-img create -q -f vmdk " + s.path("a.vmdk") + " 3M");
  const std::string image = ReadFile(s.path("a.vmdk"));
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
  EXPECT_EQ(Fact(d->info, "subformat"), "monolithicSparse");
}

TEST(VmdkReaderTest, RefusesHostileHeaders) {
  RequireQemuImg();
  Scratch s;
  Sh("qemu-img create -q -f vmdk " + s.path("a.vmdk") + " 3M");
  const std::string image = ReadFile(s.path("a.vmdk"));
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
    for (int i = 0; i < c.width; ++i) bad[c.at + i] = static_cast<char>(c.value >> (8 * i));
    ExpectStatus(Decode(bad), c.code, c.message);
  }
  // A descriptor that would need a 64 MiB grain directory: refused before any allocation.
  std::string huge =
      EditDescriptor(image, [](std::string& t) { Replace(t, "RW 6144 ", "RW 34359738368 "); });
  PutLe64(huge, 12, uint64_t{1} << 35);
  PutLe64(huge, 20, 1);
  ExpectStatus(Decode(huge), Status::Code::kRefused,
               "grain directory of 268435456 bytes is larger than the limit");
}

// Bad tables found while reading: Corruption naming the offset, never a crash or wrong bytes.
TEST(VmdkReaderTest, BadGrainTablesAreCorruptionOnRead) {
  RequireQemuImg();
  Scratch s;
  MakeSource(s.path("src.raw"), (3 << 20) + 512);
  for (const char* sub : {"monolithicSparse", "streamOptimized"}) {
    SCOPED_TRACE(sub);
    Sh(std::string("qemu-img convert -f raw -O vmdk -o subformat=") + sub + " " +
       s.path("src.raw") + " " + s.path("a.vmdk"));
    const std::string image = ReadFile(s.path("a.vmdk"));
    const uint64_t gt = LoadLE32(image.data() + Le64(image, 56) * 512) * uint64_t{512};
    const uint64_t grain0 = LoadLE32(image.data() + gt) * uint64_t{512};
    char buf[4096];

    std::string bad = image;  // grain 0 past the end of the file
    PutLe32(bad, gt, 0x7fffffff);
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
    PutLe32(bad, Le64(image, 56) * 512, 0x7ffffff0);
    d = Decode(bad);
    ASSERT_TRUE(d.ok());
    st = d->raw->ReadAt(0, sizeof buf, buf);
    EXPECT_NE(st.message().find("vmdk grain table at 0xffffffe000 (+2048) is outside the file"),
              std::string::npos)
        << st.ToString();
    EXPECT_FALSE(d->raw->MapExtent(0).ok());

    if (std::string(sub) != "streamOptimized") continue;
    bad = image;  // a grain marker for another lba
    PutLe64(bad, grain0, 128);
    d = Decode(bad);
    ASSERT_TRUE(d.ok());
    st = d->raw->ReadAt(0, sizeof buf, buf);
    EXPECT_NE(st.message().find("is for lba 128, the grain table says 0"), std::string::npos)
        << st.ToString();
    bad = image;  // a compressed grain larger than two grains
    PutLe32(bad, grain0 + 8, 3 << 16);
    st = Decode(bad)->raw->ReadAt(0, sizeof buf, buf);
    EXPECT_NE(st.message().find("of 196608 bytes"), std::string::npos) << st.ToString();
    bad = image;  // a damaged deflate stream
    for (int i = 100; i < 200; ++i) bad[grain0 + i] ^= 0x5a;
    st = Decode(bad)->raw->ReadAt(0, sizeof buf, buf);
    EXPECT_EQ(st.code(), Status::Code::kCorruption);
    EXPECT_NE(st.message().find("compressed grain at"), std::string::npos) << st.ToString();
  }
}

TEST(VmdkReaderTest, Probe) {
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
