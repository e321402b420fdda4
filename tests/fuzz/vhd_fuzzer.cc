// libFuzzer target for the VHD decoder. Built and run by scripts/fuzz.sh (clang, ASan + UBSan).
//
// Each input is tried two ways: as an image file on its own, and as patches to a valid dynamic
// VHD built here (footer copies, dynamic header, a BAT with allocated, unallocated and shared
// blocks), so that the fuzzer reaches the BAT and block paths without having to find the
// footer checksum: the patched footers get their checksums fixed unless the input says not to.
// The template is larger than libFuzzer's input limit, which a whole image could not be.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fs/format/vhd_reader.h"
#include "tests/fakes/fakes.h"
#include "tests/fuzz/fuzz_util.h"

using glancefs::ByteSource;
using glancefs::format::VhdLimits;
using glancefs::format::VhdReader;
using glancefs::testing::MemByteSource;

namespace {

void StoreBE(std::string* s, size_t off, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) (*s)[off + i] = static_cast<char>(v >> (8 * (bytes - 1 - i)));
}

void FixChecksum(std::string* img, size_t at) {
  StoreBE(img, at + 64, 0, 4);
  uint32_t sum = 0;
  for (size_t i = 0; i < 512; ++i) sum += static_cast<unsigned char>((*img)[at + i]);
  StoreBE(img, at + 64, ~sum, 4);
}

// A dynamic VHD: 4 blocks of 64 KiB (block 0 and 3 share their data, 1 and 2 unallocated).
std::string Template() {
  constexpr size_t kBlock = 64 * 1024, kBitmap = 512;
  std::string img(1536 + 512 + kBitmap + kBlock, '\0');
  std::string footer(512, '\0');
  footer.replace(0, 8, "conectix");
  StoreBE(&footer, 8, 2, 4);
  StoreBE(&footer, 12, 0x00010000, 4);
  StoreBE(&footer, 16, 512, 8);
  footer.replace(28, 4, "fuzz");
  footer.replace(36, 4, "Wi2k");
  StoreBE(&footer, 40, 4 * kBlock, 8);
  StoreBE(&footer, 48, 4 * kBlock, 8);
  StoreBE(&footer, 56, 16, 2);  // 16/4/8: 512 sectors = 4 blocks
  footer[58] = 4;
  footer[59] = 8;
  StoreBE(&footer, 60, 3, 4);
  img.replace(0, 512, footer);
  std::string dyn(1024, '\0');
  dyn.replace(0, 8, "cxsparse");
  StoreBE(&dyn, 8, ~uint64_t{0}, 8);
  StoreBE(&dyn, 16, 1536, 8);
  StoreBE(&dyn, 24, 0x00010000, 4);
  StoreBE(&dyn, 28, 4, 4);
  StoreBE(&dyn, 32, kBlock, 4);
  img.replace(512, 1024, dyn);
  const uint32_t data_sector = 2048 / 512;
  StoreBE(&img, 1536, data_sector, 4);
  StoreBE(&img, 1540, 0xFFFFFFFF, 4);
  StoreBE(&img, 1544, 0xFFFFFFFF, 4);
  StoreBE(&img, 1548, data_sector, 4);
  for (size_t i = 0; i < kBlock; ++i) img[2048 + kBitmap + i] = static_cast<char>(i * 7 + 1);
  img.append(footer);
  FixChecksum(&img, 0);
  FixChecksum(&img, img.size() - 512);
  return img;
}

void Exercise(std::string bytes) {
  VhdLimits limits;
  limits.max_bat_bytes = 1 << 20;  // keep each run small
  auto reader = VhdReader::Open(std::make_shared<MemByteSource>(std::move(bytes)), limits);
  if (!reader.ok()) return;
  (void)(*reader)->Facts();
  glancefs::fuzz::ExerciseReads(**reader);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  auto src = std::make_shared<MemByteSource>(input);
  (void)glancefs::format::kVhdFormat.probe(*src);
  Exercise(input);

  // [flags] then up to 16 patches: [area][offset lo][offset hi][length] and up to 16 bytes.
  static const std::string kTemplate = Template();
  static const size_t kAreas[] = {0, 16, 40, 56, 512, 512 + 28, 1536, 2048, 2560};
  if (size < 1) return 0;
  std::string img = kTemplate;
  const uint8_t flags = data[0];
  size_t i = 1;
  for (int patches = 0; patches < 16 && i + 4 <= size; ++patches) {  // a few: keep the rest valid
    size_t at = kAreas[data[i] % std::size(kAreas)] + (data[i + 1] | data[i + 2] << 8) % 4096;
    size_t len = data[i + 3] % 16 + 1;
    i += 4;
    for (size_t k = 0; k < len && i < size; ++k, ++i) img[(at + k) % img.size()] = data[i];
  }
  if (flags & 2) img.resize(img.size() - (flags >> 2) * 16);  // cut the end off
  if (!(flags & 1)) {                                         // footers with valid checksums
    FixChecksum(&img, 0);
    FixChecksum(&img, img.size() - 512);
  }
  Exercise(std::move(img));
  return 0;
}
