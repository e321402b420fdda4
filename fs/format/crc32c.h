// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum VHDX puts on its headers,
// region tables, metadata and log entries. Slicing-by-8 over tables built once, on first use.
// A pure function: safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>

namespace glancefs::format {

// Crc32c(0, p, n) is the checksum of n bytes. Pass a previous result as `crc` to continue it
// over more bytes: Crc32c(Crc32c(0, a, n), b, m) is the checksum of a then b. For tests and
// tools too.
uint32_t Crc32c(uint32_t crc, const void* data, size_t n);

}  // namespace glancefs::format
