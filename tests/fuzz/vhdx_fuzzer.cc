// libFuzzer target for the VHDX decoder, its log replay included. Built and run by
// scripts/fuzz.sh (clang, ASan + UBSan).
//
// Each input is tried two ways: as an image file on its own, and as patches to a valid VHDX
// built here (5 MiB: headers, both region tables, metadata, a BAT with present, zero and absent
// blocks, and a dirty log of two entries that remap a block and zero a page), so that the
// fuzzer reaches metadata, BAT and log replay without having to forge CRC-32Cs: the patched
// headers, region tables and log entries get theirs fixed unless the input says not to. A whole
// VHDX is larger than libFuzzer's input limit.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fs/format/vhdx_reader.h"
#include "tests/fakes/fakes.h"
#include "tests/fuzz/fuzz_util.h"

using glancefs::format::Crc32c;
using glancefs::format::VhdxLimits;
using glancefs::format::VhdxReader;
using glancefs::testing::MemByteSource;

namespace {

constexpr size_t kMiB = 1 << 20;
constexpr size_t kLog = 1 * kMiB, kBat = 2 * kMiB, kMetadata = 3 * kMiB, kData = 4 * kMiB;

void StoreLE(std::string* s, size_t off, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) (*s)[off + i] = static_cast<char>(v >> (8 * i));
}
uint32_t LoadLE32(const std::string& s, size_t off) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = v << 8 | static_cast<unsigned char>(s[off + i]);
  return v;
}

std::string Guid(const char* text) {
  std::string be;
  for (const char* p = text; *p; ++p) {
    if (*p == '-') continue;
    be += static_cast<char>(std::stoi(std::string(p, 2), nullptr, 16));
    ++p;
  }
  const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
  std::string g(16, '\0');
  for (int i = 0; i < 16; ++i) g[i] = be[order[i]];
  return g;
}

void FixCrc(std::string* img, size_t at, size_t n) {
  if (at + n > img->size()) return;
  StoreLE(img, at + 4, 0, 4);
  StoreLE(img, at + 4, Crc32c(0, img->data() + at, n), 4);
}

const std::string kLogGuid = "0123456789abcdef";

// A log entry at `pos` in the log: a data descriptor per page, then zero descriptors.
void PutLogEntry(std::string* img, size_t pos, uint64_t seq, uint32_t tail,
                 const std::vector<std::pair<uint64_t, std::string>>& pages,
                 const std::vector<std::pair<uint64_t, uint64_t>>& zeros) {
  size_t count = pages.size() + zeros.size();
  size_t desc_sectors = (count + 2 + 127) / 128;
  std::string e((desc_sectors + pages.size()) * 4096, '\0');
  e.replace(0, 4, "loge");
  StoreLE(&e, 8, e.size(), 4);
  StoreLE(&e, 12, tail, 4);
  StoreLE(&e, 16, seq, 8);
  StoreLE(&e, 24, count, 4);
  e.replace(32, 16, kLogGuid);
  StoreLE(&e, 48, img->size(), 8);
  StoreLE(&e, 56, img->size(), 8);
  size_t d = 64;
  for (size_t i = 0; i < pages.size(); ++i, d += 32) {
    const std::string& page = pages[i].second;
    e.replace(d, 4, "desc");
    e.replace(d + 4, 4, page.substr(4092, 4));
    e.replace(d + 8, 8, page.substr(0, 8));
    StoreLE(&e, d + 16, pages[i].first, 8);
    StoreLE(&e, d + 24, seq, 8);
    size_t s = (desc_sectors + i) * 4096;
    e.replace(s, 4, "data");
    StoreLE(&e, s + 4, seq >> 32, 4);
    e.replace(s + 8, 4084, page.substr(8, 4084));
    StoreLE(&e, s + 4092, seq & 0xFFFFFFFF, 4);
  }
  for (const auto& [off, len] : zeros) {
    e.replace(d, 4, "zero");
    StoreLE(&e, d + 8, len, 8);
    StoreLE(&e, d + 16, off, 8);
    StoreLE(&e, d + 24, seq, 8);
    d += 32;
  }
  StoreLE(&e, 4, Crc32c(0, e.data(), e.size()), 4);
  img->replace(kLog + pos, e.size(), e);
}

std::string Template() {
  std::string img(kData + kMiB, '\0');
  img.replace(0, 8, "vhdxfile");
  img.replace(8, 8, std::string("f\0u\0z\0z\0", 8));
  for (size_t h : {size_t{64 * 1024}, size_t{128 * 1024}}) {
    img.replace(h, 4, "head");
    StoreLE(&img, h + 8, h >> 16, 8);  // sequence 1 and 2
    img.replace(h + 48, 16, kLogGuid);
    StoreLE(&img, h + 66, 1, 2);
    StoreLE(&img, h + 68, kMiB, 4);
    StoreLE(&img, h + 72, kLog, 8);
    FixCrc(&img, h, 4096);
  }
  for (size_t r : {size_t{192 * 1024}, size_t{256 * 1024}}) {
    img.replace(r, 4, "regi");
    StoreLE(&img, r + 8, 2, 4);
    img.replace(r + 16, 16, Guid("2DC27766-F623-4200-9D64-115E9BFD4A08"));
    StoreLE(&img, r + 32, kBat, 8);
    StoreLE(&img, r + 40, kMiB, 4);
    StoreLE(&img, r + 44, 1, 4);
    img.replace(r + 48, 16, Guid("8B7CA206-4790-4B9A-B8FE-575F050F886E"));
    StoreLE(&img, r + 64, kMetadata, 8);
    StoreLE(&img, r + 72, kMiB, 4);
    StoreLE(&img, r + 76, 1, 4);
    FixCrc(&img, r, 64 * 1024);
  }
  img.replace(kMetadata, 8, "metadata");
  StoreLE(&img, kMetadata + 10, 5, 2);
  const struct {
    const char* guid;
    uint32_t length, flags;
    uint64_t value;
  } items[] = {{"CAA16737-FA36-4D43-B3B6-33F0AA44E76B", 8, 4, kMiB},  // 1 MiB blocks, dynamic
               {"2FA54224-CD1B-4876-B211-5DBED83BF4B8", 8, 6, 4 * kMiB + 512},
               {"BECA12AB-B2E6-4523-93EF-C309E000C746", 16, 6, 0x1234},
               {"8141BF1D-A96F-4709-BA47-F233A8FAAB5F", 4, 6, 512},
               {"CDA348C7-445D-4471-9CC9-E9885251C556", 4, 6, 4096}};
  for (size_t i = 0; i < std::size(items); ++i) {
    size_t e = kMetadata + 32 + 32 * i;
    img.replace(e, 16, Guid(items[i].guid));
    StoreLE(&img, e + 16, 64 * 1024 + 64 * i, 4);
    StoreLE(&img, e + 20, items[i].length, 4);
    StoreLE(&img, e + 24, items[i].flags, 4);
    StoreLE(&img, kMetadata + 64 * 1024 + 64 * i, items[i].value, 8);
  }
  // BAT: block 0 present at 4 MiB, 1 zero, 2 absent, 3 unmapped, 4 present (shares block 0).
  const uint64_t bat[] = {kData | 6, 2, 0, 3, kData | 6};
  for (size_t i = 0; i < std::size(bat); ++i) StoreLE(&img, kBat + 8 * i, bat[i], 8);
  for (size_t i = 0; i < kMiB; ++i) img[kData + i] = static_cast<char>(i * 13 + 5);
  // The log: e1 remaps block 2 onto the data; e2 (its tail e1) rewrites a page, zeroes another.
  std::string bat_page = img.substr(kBat, 4096);
  StoreLE(&bat_page, 16, kData | 6, 8);
  PutLogEntry(&img, 0, 7, 0, {{kBat, bat_page}}, {});
  PutLogEntry(&img, 8192, 8, 0, {{kData + 4096, std::string(4096, 'L')}}, {{kData + 8192, 8192}});
  return img;
}

void Exercise(std::string bytes) {
  VhdxLimits limits;
  limits.max_bat_bytes = 1 << 20;  // keep each run small
  limits.max_log_bytes = 1 << 20;
  auto reader = VhdxReader::Open(std::make_shared<MemByteSource>(std::move(bytes)), limits);
  if (!reader.ok()) return;
  (void)(*reader)->Facts();
  glancefs::fuzz::ExerciseReads(**reader);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  auto src = std::make_shared<MemByteSource>(input);
  (void)glancefs::format::kVhdxFormat.probe(*src);
  Exercise(input);

  // [flags] then up to 16 patches: [area][offset lo][offset hi][length] and up to 16 bytes.
  static const std::string kTemplate = Template();
  static const size_t kAreas[] = {0,    64 * 1024,   128 * 1024, 192 * 1024, 256 * 1024,
                                  kLog, kLog + 8192, kBat,       kMetadata,  kMetadata + 64 * 1024,
                                  kData};
  if (size < 1) return 0;
  std::string img = kTemplate;
  const uint8_t flags = data[0];
  size_t i = 1;
  for (int patches = 0; patches < 16 && i + 4 <= size; ++patches) {  // a few: keep the rest valid
    size_t at = kAreas[data[i] % std::size(kAreas)] + (data[i + 1] | data[i + 2] << 8) % 8192;
    size_t len = data[i + 3] % 16 + 1;
    i += 4;
    for (size_t k = 0; k < len && i < size; ++k, ++i) img[(at + k) % img.size()] = data[i];
  }
  if (flags & 2) img.resize(img.size() - (flags >> 2) * 65536);  // cut the end off
  if (!(flags & 1)) {  // valid CRCs on whatever the patches made
    for (size_t h : {size_t{64 * 1024}, size_t{128 * 1024}}) FixCrc(&img, h, 4096);
    for (size_t r : {size_t{192 * 1024}, size_t{256 * 1024}}) FixCrc(&img, r, 64 * 1024);
    for (size_t pos : {size_t{0}, size_t{8192}}) {
      uint32_t length = LoadLE32(img, kLog + pos + 8);
      if (length > 0 && length <= 64 * 1024 && length % 4096 == 0) FixCrc(&img, kLog + pos, length);
    }
  }
  Exercise(std::move(img));
  return 0;
}
