// Data extents two ways, to compare a decoder with its oracle: what `qemu-img map --output=json`
// reports, and what a ByteSource's MapExtent reports. Both merged into [offset, length) runs.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "fs/base/byte_source.h"

namespace glancefs::itest {

using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

inline void AppendRange(Ranges* out, uint64_t start, uint64_t len) {
  if (!out->empty() && out->back().first + out->back().second == start) {
    out->back().second += len;
  } else {
    out->emplace_back(start, len);
  }
}

// The data ranges of a qemu-img map, merged.
inline Ranges QemuDataRanges(const std::string& map_json) {
  Ranges out;
  for (const auto& seg : nlohmann::json::parse(map_json)) {
    if (seg["data"].get<bool>()) AppendRange(&out, seg["start"], seg["length"]);
  }
  return out;
}

// The kData ranges of a source's MapExtent, merged.
inline Ranges ReaderDataRanges(ByteSource& src) {
  Ranges out;
  for (uint64_t off = 0; off < src.size();) {
    auto e = src.MapExtent(off);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    if (!e.ok() || e->length == 0) break;
    if (e->kind == Extent::Kind::kData) AppendRange(&out, off, e->length);
    off += e->length;
  }
  return out;
}

// True iff every range of `inner` lies inside one range of `outer` (both merged and sorted).
inline bool Within(const Ranges& inner, const Ranges& outer) {
  size_t j = 0;
  for (const auto& [start, len] : inner) {
    while (j < outer.size() && outer[j].first + outer[j].second <= start) ++j;
    if (j == outer.size() || outer[j].first > start ||
        start + len > outer[j].first + outer[j].second) {
      return false;
    }
  }
  return true;
}

// Our data ranges against the oracle's. Where qemu 7.2 knows no holes -- its vhdx driver reports
// no block status, and a fixed vhd is one data range to it, though glancefs passes the file's own
// holes through -- ours must only lie within qemu's; the bytes are compared separately.
inline void ExpectSameData(const Ranges& ours, const Ranges& qemu, const std::string& qemu_format) {
  if (qemu_format == "vhdx" || (qemu_format == "vpc" && qemu.size() == 1)) {
    EXPECT_TRUE(Within(ours, qemu));
  } else {
    EXPECT_EQ(ours, qemu);
  }
}

}  // namespace glancefs::itest
