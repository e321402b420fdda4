// The qcow2 test matrix: images made by qemu-img and qemu-io covering every feature the decoder
// supports (docs/FORMATS.md). Shared by the decoder tests and the real-Glance tests.
#pragma once

#include <string>
#include <vector>

namespace glancefs::itest {

struct Case {
  std::string name;
  std::string create;  // shell commands making $IMG (qcow2) from $SRC (raw) in $W
};

// A 9 MiB + 1536 B raw source: random data, an explicit zero run, a hole, odd-sized tail.
inline constexpr char kMakeSource[] =
    "set -e; truncate -s 9438720 $SRC; "
    "head -c 2M /dev/urandom | dd of=$SRC conv=notrunc status=none; "
    "head -c 1M /dev/zero | dd of=$SRC bs=1M seek=2 conv=notrunc status=none; "
    "head -c 1500K /dev/urandom | dd of=$SRC bs=1K seek=6000 conv=notrunc status=none; "
    "head -c 3000 /dev/urandom | dd of=$SRC bs=1 seek=9435720 conv=notrunc status=none";

// qemu-io edits that make zero clusters, discarded clusters and partial subclusters.
inline constexpr char kEdits[] =
    " && qemu-io -f qcow2 -c 'write -z 1M 128k' -c 'discard 1536k 64k' "
    "-c 'write -P 0x5a 4200k 3k' -c 'write -P 0xa5 8M 1k' $IMG >/dev/null";

inline std::vector<Case> Matrix() {
  std::vector<Case> m;
  auto convert = [](const std::string& opts, bool compress) {
    return std::string("qemu-img convert -f raw -O qcow2 ") + (compress ? "-c " : "") + "-o " +
           opts + " $SRC $IMG";
  };
  for (std::string compat : {"0.10", "1.1"}) {
    for (std::string cs : {"512", "4096", "65536", "2097152"}) {
      std::string opts = "compat=" + compat + ",cluster_size=" + cs;
      std::string tag = "v" + std::string(compat == "0.10" ? "2" : "3") + "_c" + cs;
      m.push_back({tag, convert(opts, false) + kEdits});
      m.push_back({tag + "_zlib", convert(opts, true) + kEdits});
    }
  }
  for (std::string cs : {"16384", "65536", "2097152"}) {
    m.push_back({"v3_zstd_c" + cs,
                 convert("compat=1.1,compression_type=zstd,cluster_size=" + cs, true) + kEdits});
    m.push_back({"v3_extl2_c" + cs,
                 convert("compat=1.1,extended_l2=on,cluster_size=" + cs, false) + kEdits});
    m.push_back(
        {"v3_extl2_zstd_c" + cs,
         convert("compat=1.1,extended_l2=on,compression_type=zstd,cluster_size=" + cs, true) +
             kEdits});
  }
  m.push_back({"v3_snapshot", convert("compat=1.1", false) +
                                  " && qemu-img snapshot -c snap1 $IMG && qemu-io -f qcow2 -c "
                                  "'write -P 0x77 0 256k' $IMG >/dev/null"});
  m.push_back({"v2_snapshot", convert("compat=0.10", false) +
                                  " && qemu-img snapshot -c snap1 $IMG && qemu-io -f qcow2 -c "
                                  "'write -P 0x77 64k 256k' $IMG >/dev/null"});
  m.push_back({"v3_preallocated_metadata",
               "qemu-img create -q -f qcow2 -o preallocation=metadata $IMG 5M && qemu-io -f qcow2 "
               "-c 'write -P 0x11 0 1M' $IMG >/dev/null"});
  m.push_back({"v3_16TiB_sparse",
               "qemu-img create -q -f qcow2 $IMG 16T && qemu-io -f qcow2 -c "
               "'write -P 0x33 0 64k' -c 'write -P 0x44 8T 1M' -c "
               "'write -P 0x55 17592186040320 4096' $IMG >/dev/null"});
  m.push_back({"v3_empty", "qemu-img create -q -f qcow2 $IMG 0"});
  return m;
}

}  // namespace glancefs::itest
