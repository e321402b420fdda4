// Time helpers shared by backends (parsing Glance timestamps) and tools (writing them).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "fs/base/status.h"

namespace glancefs {

// Parses an ISO 8601 UTC timestamp as Glance writes it: "2024-05-01T12:34:56Z", also with
// fractional seconds ("...56.123456") or an offset ("+00:00"). Returns seconds since the epoch.
Result<int64_t> ParseIso8601(std::string_view text);

// Formats seconds since the epoch as "2024-05-01T12:34:56Z".
std::string FormatIso8601(int64_t seconds);

}  // namespace glancefs
