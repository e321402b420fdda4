// Inspect: what an image's bytes are, and whether glancefs will decode them.
//
// The verdict Glance's and Nova's format inspector would give: the format the bytes match, and
// a reason when glancefs refuses to expose them (bytes that contradict the record's
// disk_format, or a format's own refusals: a qcow2 backing file, data file, encryption, ...).
// Pure: reads only through the ByteSource it is given, opens nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "fs/base/byte_source.h"

namespace glancefs::format {

struct Verdict {
  std::string format;   // what the bytes are: "raw", "qcow2", ...
  std::string refused;  // empty: usable; else why glancefs will not expose the disk views
  std::optional<uint64_t> virtual_size;  // of the decoded raw view, when decodable
};

// `disk_format` is the record's claim. Only I/O failures are errors; refusals are verdicts.
Result<Verdict> Inspect(ByteSource& src, const std::string& disk_format);

}  // namespace glancefs::format
