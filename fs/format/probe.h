// Format probing: what the bytes of an image say it is, by content alone.
//
// Pure: reads only through the ByteSource it is given, with each registered format's probe
// (a magic number or two, registry.cc). This is the identification step only; the safety
// checks of each format (backing files, data files, extents) belong to its decoder, and the
// verdict on a record to Inspect (inspect.h).
#pragma once

#include <string>
#include <vector>

#include "fs/base/byte_source.h"

namespace glancefs::format {

// The names of every registered format whose signature the bytes carry, in registry order.
// Empty: none does (the bytes are "raw" to Glance).
Result<std::vector<std::string>> DetectFormats(ByteSource& src);

// The one format the bytes match: "raw" when none does, the first when several do.
Result<std::string> ProbeFormat(ByteSource& src);

}  // namespace glancefs::format
