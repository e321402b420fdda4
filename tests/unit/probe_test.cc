#include "fs/format/probe.h"

#include <gtest/gtest.h>

#include "tests/fakes/fakes.h"

namespace glancefs::format {
namespace {

using glancefs::testing::MemByteSource;

std::string Probe(std::string bytes) {
  MemByteSource src(std::move(bytes));
  return *ProbeFormat(src);
}

TEST(ProbeTest, RecognizesMagics) {
  EXPECT_EQ(Probe(std::string("QFI\xfb", 4) + std::string(100, '\0')), "qcow2");
  EXPECT_EQ(Probe("KDMV" + std::string(100, '\0')), "vmdk");
  EXPECT_EQ(Probe("vhdxfile" + std::string(100, '\0')), "vhdx");
  std::string iso(0x9000, '\0');
  iso.replace(0x8001, 5, "CD001");
  EXPECT_EQ(Probe(iso), "iso");
  std::string vhd(4096, '\0');
  vhd.replace(4096 - 512, 8, "conectix");
  EXPECT_EQ(Probe(vhd), "vhd");
  EXPECT_EQ(Probe(std::string(4096, 'x')), "raw");
  EXPECT_EQ(Probe(""), "raw");
}

TEST(ProbeTest, Qcow2VirtualSize) {
  std::string hdr("QFI\xfb\0\0\0\x03", 8);
  hdr += std::string(16, '\0');
  hdr += std::string("\0\0\0\x01\0\0\0\0", 8);  // 4 GiB
  MemByteSource src(hdr);
  EXPECT_EQ(**ProbeVirtualSize(src, "qcow2"), 4ull << 30);
  MemByteSource truncated(hdr.substr(0, 20));
  EXPECT_TRUE(ProbeVirtualSize(truncated, "qcow2").status().IsCorruption());
  EXPECT_EQ(**ProbeVirtualSize(truncated, "raw"), 20u);
  EXPECT_FALSE(*ProbeVirtualSize(truncated, "vmdk"));
}

}  // namespace
}  // namespace glancefs::format
