// StableHash64: FNV-1a over bytes. Unlike std::hash it is the same in every build and on every
// platform, so it may name things that outlive a process (by-name entries, inode versions).
// Not for security: collisions can be made on purpose, so callers must tolerate them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace glancefs {

inline uint64_t StableHash64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

// Lowercase hex of n bytes, as Glance writes checksum and os_hash_value.
inline std::string HexOf(const unsigned char* bytes, size_t n) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (size_t i = 0; i < n; ++i) {
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 15]);
  }
  return out;
}

}  // namespace glancefs
