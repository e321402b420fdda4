// The qcow2 decoder against its oracle: every image of a generated matrix must decode to
// exactly what `qemu-img convert -O raw` gives, with the data extents `qemu-img map` reports,
// directly and through a mount; unsafe or corrupt images must be refused without opening any
// path they name.
#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "backends/dir/file_byte_source.h"
#include "fs/format/inspect.h"
#include "fs/format/qcow2_reader.h"
#include "tests/integration/harness.h"
#include "tests/integration/qcow2_matrix.h"
#include "tests/integration/qemu_map.h"

namespace glancefs::itest {
namespace {

namespace fs = std::filesystem;
using format::Qcow2Reader;

class Qcow2Test : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(HaveCommand("qemu-img") && HaveCommand("qemu-io"))
        << "qemu-utils is missing: run scripts/install-deps.sh";
    work_ = MakeTempDir("glancefs-qcow2");
    src_ = work_ + "/src.raw";
    MustSh(std::string("SRC=") + src_ + "; " + kMakeSource);
  }
  void TearDown() override { fs::remove_all(work_); }

  std::string Make(const Case& c) {
    std::string img = work_ + "/" + c.name + ".qcow2";
    MustSh("W=" + work_ + " SRC=" + src_ + " IMG=" + img + "; " + c.create);
    MustSh("qemu-img check -q " + img);
    return img;
  }

  std::shared_ptr<ByteSource> OpenFile(const std::string& path) {
    auto f = backends::FileByteSource::Open(path, std::nullopt, path);
    EXPECT_TRUE(f.ok()) << f.status().ToString();
    return *f;
  }

  std::string work_, src_;
};

TEST_F(Qcow2Test, MatrixDecodesExactlyAsQemuImg) {
  std::mt19937_64 rng(42);
  for (const Case& c : Matrix()) {
    SCOPED_TRACE(c.name);
    std::string img = Make(c);
    auto reader = Qcow2Reader::Open(OpenFile(img));
    ASSERT_TRUE(reader.ok()) << reader.status().ToString();
    uint64_t vsize = std::stoull(MustSh("qemu-img info --output=json " + img +
                                        " | sed -n 's/.*\"virtual-size\": \\([0-9]*\\).*/\\1/p'"));
    ASSERT_EQ((*reader)->size(), vsize);
    EXPECT_EQ(QemuDataRanges(MustSh("qemu-img map --output=json -f qcow2 " + img)),
              ReaderDataRanges(**reader));
    if (vsize > (1ull << 30)) {
      // Too big to convert: qemu-io verifies each written pattern and a hole, and the reader
      // must give the same bytes.
      struct Region {
        uint64_t off, len;
        int pattern;
      };
      for (const Region& r : std::vector<Region>{{0, 64 << 10, 0x33},
                                                 {64 << 10, 64 << 10, 0},
                                                 {8ull << 40, 1 << 20, 0x44},
                                                 {1ull << 40, 1 << 20, 0},
                                                 {vsize - 4096, 4096, 0x55}}) {
        std::string qemu =
            MustSh("qemu-io -f qcow2 -c 'read -P " + std::to_string(r.pattern) + " " +
                   std::to_string(r.off) + " " + std::to_string(r.len) + "' " + img);
        ASSERT_EQ(qemu.find("failed"), std::string::npos) << qemu;
        std::string got(r.len, '\0');
        ASSERT_TRUE((*reader)->ReadAt(r.off, r.len, got.data()).ok());
        EXPECT_TRUE(got == std::string(r.len, static_cast<char>(r.pattern))) << "at " << r.off;
      }
      continue;
    }
    std::string raw = work_ + "/expected.raw";
    MustSh("qemu-img convert -f qcow2 -O raw " + img + " " + raw);
    std::string expected = ReadFile(raw);
    ASSERT_EQ(expected.size(), vsize);
    std::string got(vsize, '\0');
    if (vsize > 0) {
      ASSERT_TRUE((*reader)->ReadAt(0, vsize, got.data()).ok());
    }
    ASSERT_TRUE(got == expected) << "whole-image decode differs from qemu-img convert";
    // Odd offsets and lengths, across cluster and table boundaries.
    for (int i = 0; i < 200 && vsize > 0; ++i) {
      uint64_t off = rng() % vsize;
      uint64_t len = std::min<uint64_t>(1 + rng() % (300 << 10), vsize - off);
      std::string part(len, '\0');
      ASSERT_TRUE((*reader)->ReadAt(off, len, part.data()).ok());
      ASSERT_TRUE(part == expected.substr(off, len)) << "read at " << off << " len " << len;
    }
  }
}

TEST_F(Qcow2Test, MatrixThroughTheMount) {
  std::string catalog = work_ + "/catalog";
  fs::create_directory(catalog);
  std::vector<std::pair<std::string, std::string>> images;  // id, qcow2 path
  for (const Case& c : Matrix()) {
    if (c.name == "v3_16TiB_sparse") continue;
    std::string img = Make(c);
    images.emplace_back(AddImage(catalog, img, "--name " + c.name), img);
  }
  Mount m("dir:" + catalog);
  ASSERT_TRUE(m.mounted());
  for (const auto& [id, img] : images) {
    SCOPED_TRACE(img);
    std::string view = m.path() + "/images/" + id + "/disk.raw";
    MustSh("qemu-img convert -f qcow2 -O raw " + img + " " + work_ + "/expected.raw");
    MustSh("cmp " + view + " " + work_ + "/expected.raw");
    MustSh("cmp " + m.path() + "/images/" + id + "/disk.qcow2 " + img);
    // What qemu-img map sees in the raw view (SEEK_DATA/SEEK_HOLE) is the qcow2's allocation.
    EXPECT_EQ(QemuDataRanges(MustSh("qemu-img map --output=json -f raw " + view)),
              QemuDataRanges(MustSh("qemu-img map --output=json -f qcow2 " + img)));
    EXPECT_EQ(MustSh("getfattr --absolute-names --only-values -n user.glancefs.format " + m.path() +
                     "/images/" + id),
              "qcow2");
  }
  // A sparse copy skips the holes.
  const auto& [id0, img0] = images[0];
  MustSh("cp --sparse=always " + m.path() + "/images/" + id0 + "/disk.raw " + work_ + "/copy");
  MustSh("qemu-img compare -f raw -F qcow2 " + work_ + "/copy " + img0);
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

struct BadCase {
  std::string name;
  std::string make;     // makes $IMG
  std::string message;  // part of the refusal
};

TEST_F(Qcow2Test, UnsafeAndCorruptImagesAreRefusedWithoutOpeningPaths) {
  std::string watched = work_ + "/watched-backing-file";
  MustSh("qemu-img create -q -f raw " + watched + " 1M");
  // Flips header fields of a good v3 image: writes BYTES (printf escapes) at OFFSET.
  auto patch = [](const std::string& offset, const std::string& bytes) {
    return "qemu-img create -q -f qcow2 $IMG 1M && qemu-io -f qcow2 -c 'write 0 64k' $IMG "
           ">/dev/null && printf '" +
           bytes + "' | dd of=$IMG bs=1 seek=" + offset + " conv=notrunc status=none";
  };
  std::vector<BadCase> cases = {
      {"backing", "qemu-img create -q -f qcow2 -b " + watched + " -F raw $IMG", "backing file"},
      {"data_file", "qemu-img create -q -f qcow2 -o data_file=$IMG.data $IMG 1M",
       "external data file"},
      // qemu-img times its key derivation and can fail on a busy machine: retry.
      {"encrypted_luks",
       "for i in 1 2 3 4 5; do qemu-img create -q -f qcow2 --object "
       "secret,id=s0,data=123456 -o encrypt.format=luks,encrypt.key-secret=s0 "
       "$IMG 1M && break; sleep 1; done",
       "encrypted"},
      {"encrypted_aes", patch("35", "\\001"), "encrypted"},
      {"corrupt_bit", patch("79", "\\002"), "marked corrupt"},
      {"unknown_incompat", patch("79", "\\040"), "unknown incompatible features"},
      {"version4", patch("7", "\\004"), "version 4"},
      {"cluster_bits", patch("23", "\\036"), "cluster_bits"},
      {"l1_outside", patch("40", "\\177\\000\\000\\000\\000\\000\\000\\000"), "L1 table"},
      {"l1_huge", patch("36", "\\177\\377\\377\\377"), "L1 table"},
      {"l1_on_header", patch("40", "\\000\\000\\000\\000\\000\\000\\000\\000"), "header"},
      {"not_qcow2", "head -c 1M /dev/urandom > $IMG", "bytes are raw"},
  };
  std::string catalog = work_ + "/catalog";
  fs::create_directory(catalog);
  std::vector<std::pair<std::string, BadCase>> ids;
  for (const auto& c : cases) {
    std::string img = work_ + "/" + c.name + ".qcow2";
    MustSh("IMG=" + img + "; " + c.make);  // qemu-img itself opens the backing file here
    ids.emplace_back(AddImage(catalog, img, "--disk-format qcow2 --name " + c.name), c);
  }
  // From now on, nothing may open the backing file: not the decoder, not glancefs.
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_GE(inotify_add_watch(fd, watched.c_str(), IN_OPEN | IN_ACCESS), 0);
  for (const auto& c : cases) {
    std::string img = work_ + "/" + c.name + ".qcow2";
    auto src = OpenFile(img);
    auto verdict = format::Inspect(*src, "qcow2");
    ASSERT_TRUE(verdict.ok()) << c.name;
    EXPECT_NE(verdict->refused.find(c.message), std::string::npos)
        << c.name << ": " << verdict->refused;
  }
  Mount m("dir:" + catalog);
  ASSERT_TRUE(m.mounted());
  for (const auto& [id, c] : ids) {
    SCOPED_TRACE(c.name);
    std::string dir = m.path() + "/images/" + id;
    EXPECT_EQ(MustSh("ls " + dir), "format.json\nmetadata.json\n");
    EXPECT_NE(Sh("cat " + dir + "/disk.raw").status, 0);
    std::string why =
        MustSh("getfattr --absolute-names --only-values -n user.glancefs.refused " + dir);
    EXPECT_NE(why.find(c.message), std::string::npos) << why;
    MustSh("cat " + dir + "/metadata.json > /dev/null");
  }
  EXPECT_NE(m.Log().find("disk views refused: qcow2: has a backing file"), std::string::npos)
      << m.Log();
  EXPECT_EQ(m.Unmount(), 0);
  // Nothing, neither the decoder nor glancefs, ever opened the backing file.
  char buf[4096];
  EXPECT_LT(::read(fd, buf, sizeof buf), 0) << "the backing file was opened";
  ::close(fd);
}

TEST_F(Qcow2Test, CorruptTablesFailReadsWithEio) {
  // A good image whose first L2 entry is pointed past the end of the file.
  std::string img = work_ + "/badl2.qcow2";
  MustSh("qemu-img create -q -f qcow2 " + img + " 4M && qemu-io -f qcow2 -c 'write -P 1 0 64k' " +
         img + " >/dev/null");
  // L1 at 0x30000 (qemu's default layout for a small image): entry 0 -> L2 at 2^40.
  MustSh("printf '\\200\\000\\001\\000\\000\\000\\000\\000' | dd of=" + img +
         " bs=1 seek=$((0x30000)) conv=notrunc status=none");
  auto reader = Qcow2Reader::Open(OpenFile(img));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  char buf[512];
  Status s = (*reader)->ReadAt(0, sizeof buf, buf);
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  EXPECT_NE(s.message().find("outside the file"), std::string::npos) << s.ToString();

  std::string catalog = work_ + "/catalog";
  fs::create_directory(catalog);
  std::string id = AddImage(catalog, img, "--name badl2");
  Mount m("dir:" + catalog);
  ASSERT_TRUE(m.mounted());
  CmdResult r = Sh("cat " + m.path() + "/images/" + id + "/disk.raw > /dev/null");
  EXPECT_NE(r.out.find("Input/output error"), std::string::npos) << r.out;
  EXPECT_NE(m.Log().find("outside the file"), std::string::npos) << m.Log();
  EXPECT_EQ(m.Unmount(), 0);
}

}  // namespace
}  // namespace glancefs::itest
