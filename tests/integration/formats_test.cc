// Every disk format through the mount, against qemu-img as the oracle: disk.raw equal to
// `qemu-img convert -O raw` with the extents `qemu-img map` reports, disk.qcow2 clean under
// `qemu-img check` and identical under `qemu-img compare`; the third-party samples of
// ../shared/corpus with their oracle; hostile images refused without opening any path they name.
#include <gtest/gtest.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/integration/format_matrix.h"
#include "tests/integration/harness.h"
#include "tests/integration/qcow2_matrix.h"
#include "tests/integration/qemu_map.h"

namespace glancefs::itest {
namespace {

namespace fs = std::filesystem;

std::string Xattr(const std::string& path, const std::string& name) {
  return MustSh("getfattr --absolute-names --only-values -n " + name + " " + Quote(path));
}

class FormatsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(HaveCommand("qemu-img") && HaveCommand("getfattr"))
        << "qemu-utils or attr is missing: run scripts/install-deps.sh";
    work_ = MakeTempDir("glancefs-formats");
    src_ = work_ + "/src.raw";
    catalog_ = work_ + "/catalog";
    fs::create_directory(catalog_);
    MustSh(std::string("SRC=") + src_ + "; " + kMakeSource);
  }
  void TearDown() override {
    fs::remove_all(work_);
    for (const auto& f : big_files_) fs::remove(f);
  }

  // The disk.qcow2 view: clean, identical to the image, and a sparse copy of it too.
  void CheckQcow2View(const std::string& view, const std::string& img, const std::string& fmt) {
    CmdResult check = Sh("qemu-img check -f qcow2 " + Quote(view));
    EXPECT_EQ(check.status, 0) << check.out;
    EXPECT_NE(check.out.find("No errors were found"), std::string::npos) << check.out;
    MustSh("qemu-img compare -q -f qcow2 -F " + fmt + " " + Quote(view) + " " + Quote(img), 600);
  }

  std::string work_, src_, catalog_;
  std::vector<std::string> big_files_;
};

TEST_F(FormatsTest, EveryFormatDecodesAsQemuImgThroughTheMount) {
  struct Added {
    FormatCase c;
    std::string id, img, disk;  // disk: the image file qemu-img reads (the OVA's member)
  };
  std::vector<Added> added;
  for (const FormatCase& c : FormatMatrix()) {
    std::string img = work_ + "/" + c.name + "." + c.disk_format;
    MustSh("W=" + work_ + " SRC=" + src_ + " IMG=" + img + "; " + c.create);
    std::string disk = c.container_format == "ova" ? img + ".disk" : img;
    std::string id = AddImage(catalog_, img,
                              "--name " + c.name + " --disk-format " + c.disk_format +
                                  " --container-format " + c.container_format);
    added.push_back({c, id, img, disk});
  }
  Mount m("dir:" + catalog_);
  ASSERT_TRUE(m.mounted());
  for (const Added& a : added) {
    SCOPED_TRACE(a.c.name);
    std::string dir = m.path() + "/images/" + a.id;
    EXPECT_EQ(MustSh("ls " + dir), "disk.qcow2\ndisk.raw\nformat.json\nmetadata.json\n");
    std::string expected = work_ + "/expected.raw";
    MustSh("qemu-img convert -f " + a.c.qemu_format + " -O raw " + a.disk + " " + expected);
    MustSh("cmp " + dir + "/disk.raw " + expected);
    ExpectSameData(QemuDataRanges(MustSh("qemu-img map --output=json -f raw " + dir + "/disk.raw")),
                   QemuDataRanges(MustSh("qemu-img map --output=json -f " + a.c.qemu_format + " " +
                                         a.disk)),
                   a.c.qemu_format);
    EXPECT_EQ(Xattr(dir, "user.glancefs.format"), a.c.disk_format);
    auto info = nlohmann::json::parse(ReadFile(dir + "/format.json"));
    EXPECT_EQ(info["format"], a.c.disk_format);
    EXPECT_EQ(info["virtual_size"].get<uint64_t>(), fs::file_size(expected));
    if (a.c.container_format == "ova") {
      EXPECT_NE(info["container"].get<std::string>().find("disk1.vmdk"), std::string::npos);
    }
    for (const auto& [key, value] : a.c.facts) {
      EXPECT_EQ(info[key], value) << key;
      EXPECT_EQ(Xattr(dir, "user.glancefs." + key), value) << key;
    }
    CheckQcow2View(dir + "/disk.qcow2", a.disk, a.c.qemu_format);
    MustSh("cp --sparse=always " + dir + "/disk.raw " + work_ + "/copy && cmp " + work_ +
           "/copy " + expected);
  }
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

// glancefs-catalog add detects each format by content when no --disk-format is given.
TEST_F(FormatsTest, CatalogAddDetectsEveryFormat) {
  for (const FormatCase& c : FormatMatrix()) {
    if (c.container_format != "bare") continue;
    SCOPED_TRACE(c.name);
    std::string img = work_ + "/" + c.name + "." + c.disk_format;
    MustSh("W=" + work_ + " SRC=" + src_ + " IMG=" + img + "; " + c.create);
    std::string id = AddImage(catalog_, img, "--name " + c.name);
    auto record = nlohmann::json::parse(ReadFile(catalog_ + "/" + id + ".json"));
    EXPECT_EQ(record["disk_format"], c.disk_format);
    EXPECT_EQ(record["virtual_size"].get<uint64_t>(),
              std::stoull(MustSh("qemu-img info --output=json -f " + c.qemu_format + " " + img +
                                 " | sed -n 's/.*\"virtual-size\": \\([0-9]*\\).*/\\1/p'")));
  }
}

TEST_F(FormatsTest, Qcow2ViewOfRawImages) {
  std::string id = AddImage(catalog_, src_, "--name sparse --disk-format raw");
  // A 16 TiB sparse raw image with data at both ends and in the middle; its record is written
  // by hand (glancefs-catalog would hash 16 TiB).
  std::string big_id = "0e5c1b8a-16ff-4d2a-9a61-16e1b0000016";
  // ext4 stops a file 4 KiB short of 16 TiB: the data lives on tmpfs, linked from the catalog.
  std::string big = MustSh("mktemp /dev/shm/glancefs-16t-XXXXXX");
  big.pop_back();
  big_files_.push_back(big);
  fs::create_symlink(big, catalog_ + "/" + big_id);
  MustSh("truncate -s 16T " + big + " && for off in 0 8796093022208 17592185978880; do "
         "head -c 65536 /dev/urandom | dd of=" + big + " bs=65536 seek=$((off / 65536)) "
         "conv=notrunc status=none; done");
  WriteFile(catalog_ + "/" + big_id + ".json",
            "{\"id\": \"" + big_id + "\", \"name\": \"big\", \"status\": \"active\", "
            "\"disk_format\": \"raw\", \"container_format\": \"bare\", "
            "\"size\": 17592186044416, \"visibility\": \"public\", "
            "\"created_at\": \"2026-12-07T00:00:00Z\", \"updated_at\": \"2026-12-07T00:00:00Z\"}");
  Mount m("dir:" + catalog_);
  ASSERT_TRUE(m.mounted());
  for (const auto& [image, file] : {std::pair{id, src_}, std::pair{big_id, big}}) {
    SCOPED_TRACE(file);
    std::string dir = m.path() + "/images/" + image;
    CheckQcow2View(dir + "/disk.qcow2", file, "raw");
    // Smaller than the raw view: the holes take no clusters.
    EXPECT_LT(fs::file_size(dir + "/disk.qcow2"), fs::file_size(dir + "/disk.raw"));
    // Deterministic: a second open reads the same bytes.
    EXPECT_EQ(MustSh("head -c 1M " + dir + "/disk.qcow2 | md5sum"),
              MustSh("head -c 1M " + dir + "/disk.qcow2 | md5sum"));
  }
  // A sparse copy of the qcow2 view is a qcow2 image qemu reads as the source.
  MustSh("cp --sparse=always " + m.path() + "/images/" + id + "/disk.qcow2 " + work_ + "/c.qcow2");
  MustSh("qemu-img compare -q -f qcow2 -F raw " + work_ + "/c.qcow2 " + src_);
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

// ../shared/corpus/samples: real images from other producers, with qemu-img 7.2's oracle.
TEST_F(FormatsTest, ThirdPartySamplesMatchTheirOracle) {
  std::string samples = std::string(GLANCEFS_SOURCE_DIR) + "/../shared/corpus/samples";
  ASSERT_TRUE(fs::exists(samples + "/oracle.tsv"))
      << "../shared/corpus/samples is absent (it sits beside the clone in CI): this test needs it";
  // qemu's format names to Glance's; formats Glance has no name for are served as stored (raw).
  std::map<std::string, std::string> glance_name = {
      {"vpc", "vhd"}, {"parallels", "ploop"}, {"vmdk", "vmdk"}, {"vhdx", "vhdx"}, {"raw", "raw"}};
  // The two fuzzed images qemu refuses, and what glancefs says of them.
  std::map<std::string, std::pair<std::string, std::string>> refused = {
      {"afl5.img", {"vhd", "BAT"}}, {"afl9.vmdk", {"vmdk", "capacity"}}};
  struct Sample {
    std::string name, disk_format, qemu_format, sha256, id;
    uint64_t virtual_size = 0;
  };
  std::vector<Sample> list;
  std::istringstream tsv(ReadFile(samples + "/oracle.tsv"));
  for (std::string line; std::getline(tsv, line);) {
    if (line.empty() || line[0] == '#' || line.rfind("sample\t", 0) == 0) continue;
    std::istringstream f(line);
    Sample s;
    std::string vsize;
    std::getline(f, s.name, '\t');
    std::getline(f, s.qemu_format, '\t');
    std::getline(f, vsize, '\t');
    std::getline(f, s.sha256, '\t');
    if (refused.count(s.name)) {
      s.disk_format = refused[s.name].first;
    } else {
      s.disk_format = glance_name.count(s.qemu_format) ? glance_name[s.qemu_format] : "raw";
      s.virtual_size = std::stoull(vsize);
    }
    std::string file = work_ + "/" + s.name;
    MustSh("bunzip2 -c " + Quote(samples + "/" + s.name + ".bz2") + " > " + Quote(file));
    s.id = AddImage(catalog_, file, "--name " + s.name + " --disk-format " + s.disk_format);
    list.push_back(s);
  }
  ASSERT_GE(list.size(), 17u);
  Mount m("dir:" + catalog_);
  ASSERT_TRUE(m.mounted());
  for (const Sample& s : list) {
    SCOPED_TRACE(s.name);
    std::string dir = m.path() + "/images/" + s.id;
    std::string file = work_ + "/" + s.name;
    if (refused.count(s.name)) {
      EXPECT_EQ(MustSh("ls " + dir), "format.json\nmetadata.json\n");
      std::string why = Xattr(dir, "user.glancefs.refused");
      EXPECT_NE(why.find(refused.at(s.name).second), std::string::npos) << why;
      continue;
    }
    std::string raw = dir + "/disk.raw";
    if (s.disk_format == "raw" && s.qemu_format != "raw") {
      // bochs, cloop, dmg: Glance has no name for them; a raw record serves them as stored.
      EXPECT_EQ(Xattr(dir, "user.glancefs.format"), "raw");
      MustSh("cmp " + raw + " " + Quote(file));
      continue;
    }
    ASSERT_EQ(fs::file_size(raw), s.virtual_size);
    EXPECT_EQ(Xattr(dir, "user.glancefs.format"), s.disk_format);
    if (s.virtual_size <= (2ull << 30)) {
      EXPECT_EQ(MustSh("sha256sum < " + raw + " | cut -d' ' -f1"), s.sha256 + "\n");
    }
    // The oracle's own allocation map, against SEEK_DATA/SEEK_HOLE on the view.
    ExpectSameData(QemuDataRanges(MustSh("qemu-img map --output=json -f raw " + raw)),
                   QemuDataRanges(ReadFile(samples + "/maps/" + s.name + ".map.json")),
                   s.qemu_format);
    // Every byte, the big sparse ones included (qemu-img compare skips holes on both sides). A
    // log qemu must replay first is replayed on a copy, as the oracle was made.
    std::string oracle_file = file;
    if (s.name.find("dirtylog") != std::string::npos) {
      oracle_file = file + ".replayed";
      MustSh("cp --sparse=always " + Quote(file) + " " + oracle_file +
             " && qemu-img check -q -r all -f vhdx " + oracle_file + " || true");
    }
    MustSh("qemu-img compare -q -f raw -F " + s.qemu_format + " " + raw + " " + oracle_file, 600);
    CheckQcow2View(dir + "/disk.qcow2", oracle_file, s.qemu_format);
  }
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

struct Hostile {
  std::string name, disk_format, container_format;
  std::string make;     // makes $IMG in $W; host files it names are $W/host*
  std::string message;  // part of the refusal
};

// Appends LINE to the descriptor embedded in the vmdk $IMG (in its zero padding).
std::string AppendToEmbeddedDescriptor(const std::string& line) {
  return "/usr/bin/python3 -c 'import sys; p=sys.argv[1]; d=bytearray(open(p,\"rb\").read()); "
         "i=d.index(b\"\\0\", 512); l=sys.argv[2].encode()+b\"\\n\"; d[i:i+len(l)]=l; "
         "open(p,\"wb\").write(d)' $IMG '" + line + "'";
}

TEST_F(FormatsTest, HostileImagesAreRefusedWithoutOpeningPaths) {
  std::string host = work_ + "/host-file";
  MustSh("qemu-img create -q -f raw " + host + " 1M");
  const std::string ova = "set -e; D=$(mktemp -d -p $W); qemu-img convert -O vmdk -o "
                          "subformat=streamOptimized $SRC $D/disk1.vmdk; "
                          "echo '<Envelope><File href=\"disk1.vmdk\"/></Envelope>' > $D/a.ovf; ";
  std::vector<Hostile> cases = {
      {"qcow2_backing_as_raw", "raw", "bare",
       "qemu-img create -q -f qcow2 -b " + host + " -F raw $IMG", "backing file"},
      {"qcow2_data_file_as_raw", "raw", "bare",
       "qemu-img create -q -f qcow2 -o data_file=$W/host-data $IMG 1M", "data file"},
      {"vmdk_monolithic_flat", "vmdk", "bare",
       "qemu-img create -q -f vmdk -o subformat=monolithicFlat $IMG 1M", "monolithicFlat"},
      {"vmdk_flat_as_raw", "raw", "bare",
       "qemu-img create -q -f vmdk -o subformat=monolithicFlat $IMG 1M", "monolithicFlat"},
      {"vmdk_two_gb_sparse", "vmdk", "bare",
       "qemu-img create -q -f vmdk -o subformat=twoGbMaxExtentSparse $IMG 1M",
       "twoGbMaxExtentSparse"},
      {"vmdk_parent_hint", "vmdk", "bare",
       "qemu-img create -q -f vmdk $IMG 1M && " +
           AppendToEmbeddedDescriptor("parentFileNameHint=\"" + host + "\""),
       "parent"},
      {"vdi_block_map_past_eof", "vdi", "bare",
       "qemu-img create -q -f vdi $IMG 4M && /usr/bin/python3 -c 'import struct,sys; "
       "p=sys.argv[1]; d=bytearray(open(p,\"rb\").read()); n=1<<28; "
       "struct.pack_into(\"<Q\", d, 0x170, n<<20); struct.pack_into(\"<I\", d, 0x180, n); "
       "open(p,\"wb\").write(d)' $IMG",
       "block map"},
      {"ova_two_disks", "vmdk", "ova",
       ova + "cp $D/disk1.vmdk $D/disk2.vmdk; tar --format=ustar -C $D -cf $IMG a.ovf disk1.vmdk "
             "disk2.vmdk; rm -r $D",
       "2 disks"},
      {"ova_dotdot_member", "vmdk", "ova",
       ova + "tar --format=ustar -P -C $D --transform 's,^disk1,../disk1,' -cf $IMG a.ovf "
             "disk1.vmdk; rm -r $D",
       "names a path"},
      {"ova_symlink_member", "vmdk", "ova",
       ova + "ln -s " + host + " $D/host.vmdk; tar --format=ustar -C $D -cf $IMG a.ovf "
             "host.vmdk; rm -r $D",
       "not a regular file"},
  };
  std::vector<std::pair<std::string, Hostile>> ids;
  for (const Hostile& c : cases) {
    std::string img = work_ + "/" + c.name + ".img";
    MustSh("W=" + work_ + " SRC=" + src_ + " IMG=" + img + "; " + c.make);
    ids.emplace_back(AddImage(catalog_, img,
                              "--name " + c.name + " --disk-format " + c.disk_format +
                                  " --container-format " + c.container_format),
                     c);
  }
  // From now on nothing may open a host file an image names: not glancefs, not its decoders.
  int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  ASSERT_GE(fd, 0);
  for (const auto& f : fs::directory_iterator(work_)) {
    std::string name = f.path().filename();
    if (name.rfind("host", 0) == 0 || name.find("-flat") != std::string::npos ||
        name.find("-s00") != std::string::npos) {
      ASSERT_GE(inotify_add_watch(fd, f.path().c_str(), IN_OPEN | IN_ACCESS), 0) << name;
    }
  }
  Mount m("dir:" + catalog_);
  ASSERT_TRUE(m.mounted());
  for (const auto& [id, c] : ids) {
    SCOPED_TRACE(c.name);
    std::string dir = m.path() + "/images/" + id;
    EXPECT_EQ(MustSh("ls " + dir), "format.json\nmetadata.json\n");
    CmdResult cat = Sh("cat " + dir + "/disk.raw");
    EXPECT_NE(cat.out.find("No such file"), std::string::npos) << cat.out;
    std::string why = Xattr(dir, "user.glancefs.refused");
    EXPECT_NE(why.find(c.message), std::string::npos) << why;
    auto info = nlohmann::json::parse(ReadFile(dir + "/format.json"));
    EXPECT_EQ(info["refused"], why);
    EXPECT_NE(m.Log().find(why), std::string::npos) << "no log line for " << why;
  }
  EXPECT_EQ(m.Unmount(), 0);
  char buf[4096];
  EXPECT_LT(::read(fd, buf, sizeof buf), 0) << "a host file named by an image was opened";
  ::close(fd);
}

}  // namespace
}  // namespace glancefs::itest
