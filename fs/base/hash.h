// StableHash64: FNV-1a over bytes. Unlike std::hash it is the same in every build and on every
// platform, so it may name things that outlive a process (by-name entries, inode versions).
// Not for security: collisions can be made on purpose, so callers must tolerate them.
#pragma once

#include <cstdint>
#include <string_view>

namespace glancefs {

inline uint64_t StableHash64(std::string_view bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

}  // namespace glancefs
