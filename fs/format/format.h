// Format: what a disk format is to glancefs -- a name, a probe and a decoder -- and the
// registry of every format it knows (registry.cc, one line each).
//
// A decoder turns the bytes of an image file, as stored, into its raw contents: a ByteSource
// of the virtual size whose MapExtent reports the holes and zeros the format's own allocation
// maps know (so SEEK_DATA/SEEK_HOLE and `cp --sparse` work without reading data). Decoders are
// pure: they read only through the ByteSource they are given, never open a path or a URL,
// start no thread and read no clock. They must be safe for concurrent ReadAt/MapExtent.
//
// Statuses a decoder's Open returns:
//   Refused     the bytes are well formed but glancefs will not expose them (a feature that
//               names a path -- a backing file, a data file, an extent in another file -- or
//               one it does not support). The message says which, for a log line and the
//               user.glancefs.refused xattr.
//   Corruption  the bytes contradict themselves (a table outside the file, a bad magic, a
//               size that would allocate without bound). The message names the offsets.
//   anything else: the I/O below failed; not a verdict on the image.
// Reads after a successful Open return Corruption for bad metadata met on the way (a table
// entry pointing outside the file), IOError etc. from below; never wrong bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fs/base/byte_source.h"

namespace glancefs::format {

// What a decoder learned from an image's metadata (Glance's image introspection, on the node).
// Shown as user.glancefs.<key> xattrs and in format.json.
struct FormatInfo {
  std::string format;         // the Glance disk_format name: "vmdk", "vhd", ...
  uint64_t virtual_size = 0;  // bytes of the raw view
  // Facts in the decoder's order, keys in lower_snake_case, e.g. {"subformat",
  // "streamOptimized"}, {"cluster_size", "65536"}, {"adapter_type", "lsilogic"},
  // {"creator_application", "vpc "}, {"compression", "deflate"}.
  std::vector<std::pair<std::string, std::string>> facts;
};

struct Decoded {
  std::shared_ptr<ByteSource> raw;  // the raw view: size() == info.virtual_size
  FormatInfo info;
};

struct FormatSpec {
  const char* name;  // Glance's disk_format name
  // True iff the bytes carry this format's signature. Cheap: a few small reads, no parsing
  // beyond the magic. An I/O failure is an error, never false.
  Result<bool> (*probe)(ByteSource& src);
  // Reads and checks the metadata; returns the raw view. nullptr: glancefs knows the format
  // (to detect it, and to refuse a record that lies about it) but does not decode it.
  Result<Decoded> (*open)(std::shared_ptr<ByteSource> file);
};

// Every format glancefs knows, in probe order. Names are unique.
const std::vector<FormatSpec>& Formats();
// nullptr when glancefs does not know `name`.
const FormatSpec* FindFormat(std::string_view name);

// Helpers for decoders.

// True iff `src` holds `magic` at `off` (false when the source is too short).
Result<bool> HasMagic(ByteSource& src, uint64_t off, std::string_view magic);

// Little- and big-endian loads from a buffer the caller has bounds-checked.
uint16_t LoadLE16(const char* p);
uint32_t LoadLE32(const char* p);
uint64_t LoadLE64(const char* p);
uint16_t LoadBE16(const char* p);
uint32_t LoadBE32(const char* p);
uint64_t LoadBE64(const char* p);

// True iff the `len` bytes at `off` lie within [0, size); never overflows.
bool RangeWithin(uint64_t off, uint64_t len, uint64_t size);

// `v` as "0x" and lower-case hex digits: how decoders name offsets in their messages.
std::string Hex(uint64_t v);

// Corruption "<format> <what> at 0x<off> (+<len>) is outside the file (<size> bytes)" unless
// the `len` bytes at `off` lie within `file`; OK otherwise. Builds no string when they do.
Status CheckInFile(const ByteSource& file, const char* format, const char* what, uint64_t off,
                   uint64_t len);

// Appends code point `c` (at most 0x10FFFF) to `out` as UTF-8.
void AppendUtf8(uint32_t c, std::string* out);

}  // namespace glancefs::format
