#include "fs/namespace/name_codec.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>

#include "fs/base/hash.h"

namespace glancefs::fsns {
namespace {

constexpr size_t kShortenedPrefixBytes = 200;
constexpr size_t kHashSuffixBytes = 18;  // "%~" and 16 hex digits

bool NeedsEscape(unsigned char c) { return c == '%' || c == '/' || c < 0x20 || c == 0x7f; }

void AppendEscape(std::string* out, unsigned char c) {
  static const char kHex[] = "0123456789ABCDEF";
  out->push_back('%');
  out->push_back(kHex[c >> 4]);
  out->push_back(kHex[c & 0xf]);
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;  // lower case is never produced, so it is not accepted either
}

// Encodes `name` into at most `max_bytes` bytes (see the header for the rules).
std::string Encode(std::string_view name, size_t max_bytes) {
  if (name == "." || name == "..") return name.size() == 1 ? "%2E" : "%2E%2E";
  const size_t prefix_limit = std::min(kShortenedPrefixBytes, max_bytes - kHashSuffixBytes);
  std::string out;
  out.reserve(name.size());
  size_t boundary = 0;  // the longest whole-character prefix of `out` within prefix_limit
  for (size_t i = 0; i < name.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(name[i]);
    if (NeedsEscape(c)) {
      AppendEscape(&out, c);
    } else {
      out.push_back(static_cast<char>(c));
    }
    bool next_is_continuation =
        i + 1 < name.size() && (static_cast<unsigned char>(name[i + 1]) & 0xC0) == 0x80;
    if (!next_is_continuation && out.size() <= prefix_limit) boundary = out.size();
  }
  if (out.size() <= max_bytes) return out;
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "%%~%016llx",
                static_cast<unsigned long long>(StableHash64(name)));
  out.resize(boundary);
  out += suffix;
  return out;
}

}  // namespace

std::optional<std::string> EncodeName(std::string_view name) {
  if (name.empty()) return std::nullopt;
  return Encode(name, kNameMax);
}

std::optional<std::string> DecodeName(std::string_view entry) {
  std::string out;
  out.reserve(entry.size());
  for (size_t i = 0; i < entry.size(); ++i) {
    if (entry[i] != '%') {
      out.push_back(entry[i]);
      continue;
    }
    if (i + 2 >= entry.size()) return std::nullopt;
    int hi = HexValue(entry[i + 1]);
    int lo = HexValue(entry[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
    i += 2;
  }
  if (out.empty()) return std::nullopt;
  // Only the canonical encoding decodes: anything else would make two entries mean one name.
  auto canonical = EncodeName(out);
  if (!canonical || *canonical != entry) return std::nullopt;
  return out;
}

std::string DuplicateEntry(std::string_view name, std::string_view id) {
  // Keep the whole entry within NAME_MAX; ids are short (UUIDs), names may not be.
  size_t room = kNameMax > id.size() + 2 + 2 * kHashSuffixBytes ? kNameMax - id.size() - 2
                                                                : 2 * kHashSuffixBytes;
  std::string out = Encode(name, room);
  out += "%@";
  out += id;
  return out;
}

}  // namespace glancefs::fsns
