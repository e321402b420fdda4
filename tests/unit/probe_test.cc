#include "fs/format/probe.h"

#include <gtest/gtest.h>

#include "fs/format/inspect.h"
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

TEST(ProbeTest, InspectJudgesAgainstTheRecord) {
  MemByteSource qcow2(glancefs::testing::TinyQcow2());
  auto v = Inspect(qcow2, "qcow2");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(v->format, "qcow2");
  EXPECT_TRUE(v->refused.empty());
  EXPECT_EQ(v->virtual_size, 0u);
  // The same bytes labelled raw are exposed as they are.
  v = Inspect(qcow2, "raw");
  EXPECT_TRUE(v->refused.empty());
  EXPECT_EQ(v->virtual_size, 72u);
  MemByteSource random(std::string(4096, 'x'));
  v = Inspect(random, "qcow2");
  EXPECT_EQ(v->refused, "the record says qcow2 but the bytes are raw");
  EXPECT_FALSE(v->virtual_size);
  EXPECT_NE(Inspect(random, "vmdk")->refused, "");
}

}  // namespace
}  // namespace glancefs::format
