// The disk-format matrix: images of every format and subformat glancefs decodes, made by
// qemu-img from the qcow2 matrix's raw source (qcow2_matrix.h), plus an OVA made with tar. Shared
// by the local-catalog tests (formats_test.cc) and the real-Glance tests.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace glancefs::itest {

struct FormatCase {
  std::string name;
  std::string disk_format;       // Glance's name
  std::string qemu_format;       // qemu-img's name, for the oracle
  std::string container_format;  // "bare" or "ova"
  std::string create;            // shell commands making $IMG from $SRC (raw) in $W
  // Some of what the decoder must learn (user.glancefs.<key> and format.json).
  std::vector<std::pair<std::string, std::string>> facts = {};
};

// An OVF descriptor naming one disk file, DISK (a shell variable).
inline constexpr char kOvfDescriptor[] =
    "<?xml version=\"1.0\"?>\n"
    "<Envelope xmlns=\"http://schemas.dmtf.org/ovf/envelope/1\" "
    "xmlns:ovf=\"http://schemas.dmtf.org/ovf/envelope/1\">\n"
    "  <References><File ovf:href=\"$DISK\" ovf:id=\"file1\"/></References>\n"
    "  <DiskSection><Info>disks</Info><Disk ovf:diskId=\"vmdisk1\" ovf:fileRef=\"file1\" "
    "ovf:capacity=\"9438720\" ovf:format=\"http://www.vmware.com/interfaces/specifications/"
    "vmdk.html#streamOptimized\"/></DiskSection>\n"
    "</Envelope>\n";

inline std::vector<FormatCase> FormatMatrix() {
  auto convert = [](const std::string& fmt, const std::string& opts) {
    return "qemu-img convert -f raw -O " + fmt + (opts.empty() ? "" : " -o " + opts) +
           " $SRC $IMG";
  };
  std::vector<FormatCase> m = {
      {"vmdk_monolithic_sparse", "vmdk", "vmdk", "bare",
       convert("vmdk", "subformat=monolithicSparse"), {{"subformat", "monolithicSparse"}}},
      {"vmdk_stream_optimized", "vmdk", "vmdk", "bare",
       convert("vmdk", "subformat=streamOptimized"),
       {{"subformat", "streamOptimized"}, {"compression", "deflate"}}},
      {"vmdk_compat6", "vmdk", "vmdk", "bare",
       convert("vmdk", "subformat=monolithicSparse,compat6=on,adapter_type=lsilogic"),
       {{"adapter_type", "lsilogic"}, {"hardware_version", "6"}}},
      {"vhd_fixed", "vhd", "vpc", "bare", convert("vpc", "subformat=fixed"),
       {{"subformat", "fixed"}, {"creator_application", "qemu"}}},
      {"vhd_dynamic", "vhd", "vpc", "bare", convert("vpc", "subformat=dynamic"),
       {{"subformat", "dynamic"}, {"size_rule", "chs"}}},
      {"vhd_dynamic_force_size", "vhd", "vpc", "bare",
       convert("vpc", "subformat=dynamic,force_size=on"), {{"size_rule", "current_size"}}},
      {"vhdx_dynamic", "vhdx", "vhdx", "bare", convert("vhdx", "subformat=dynamic"),
       {{"subformat", "dynamic"}}},
      {"vhdx_dynamic_1M_blocks", "vhdx", "vhdx", "bare",
       convert("vhdx", "subformat=dynamic,block_size=1M")},
      {"vhdx_fixed", "vhdx", "vhdx", "bare", convert("vhdx", "subformat=fixed"),
       {{"subformat", "fixed"}}},
      {"vdi_dynamic", "vdi", "vdi", "bare", convert("vdi", ""), {{"subformat", "dynamic"}}},
      {"vdi_static", "vdi", "vdi", "bare", convert("vdi", "static=on"), {{"subformat", "static"}}},
      {"ploop", "ploop", "parallels", "bare", convert("parallels", ""), {{"version", "2"}}},
      {"ploop_256k_clusters", "ploop", "parallels", "bare", convert("parallels", "cluster_size=256k")},
  };
  // An OVA as VMware exports it: a ustar archive, the descriptor first, then the disk.
  m.push_back({"ova_stream_optimized", "vmdk", "vmdk", "ova",
               "set -e; D=$(mktemp -d -p $W); DISK=disk1.vmdk; " +
                   convert("vmdk", "subformat=streamOptimized") +
                   "; mv $IMG $D/$DISK; cat > $D/appliance.ovf <<OVF\n" + std::string(kOvfDescriptor) +
                   "OVF\ntar --format=ustar -C $D -cf $IMG appliance.ovf $DISK; "
                   "cp $D/$DISK $IMG.disk; rm -r $D"});
  return m;
}

}  // namespace glancefs::itest
