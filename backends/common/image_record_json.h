// Parsing of Glance v2 image records (`GET /v2/images/<id>`) into ImageRecord.
//
// Shared by every backend that speaks Glance's JSON: the local directory catalog stores records
// exactly as Glance returns them. Records are untrusted input: anything malformed is a
// Corruption status naming the field, never an exception.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "fs/base/catalog.h"
#include "fs/base/status.h"

namespace glancefs::backends {

// The largest record glancefs will parse. Glance limits properties to 255 characters by
// default, but deployments raise it; 16 MiB is far beyond any real record.
inline constexpr size_t kMaxRecordBytes = 16 << 20;

// Records nested deeper than this are refused (Glance's are 2 or 3 levels deep).
inline constexpr size_t kMaxRecordDepth = 64;

// Image ids longer than this are refused: Glance's are 36-character UUIDs, and a bound keeps
// every by-name entry that embeds an id within NAME_MAX.
inline constexpr size_t kMaxImageIdBytes = 128;

// True iff `id` can name a directory entry and a file in a catalog directory: 1 to 128
// characters from [A-Za-z0-9._-], not starting with '.'. Glance ids are UUIDs.
bool IsSafeImageId(std::string_view id);

Result<ImageRecord> ParseImageRecord(std::string_view json_text);

// One page of `GET /v2/images`: {"images": [...], "next": "/v2/images?...&marker=..."}.
struct ImageListPage {
  std::vector<ImageRecord> images;
  std::vector<std::string> bad;  // why records of the page were left out (one line each)
  std::string next;              // empty on the last page
};
Result<ImageListPage> ParseImageListPage(std::string_view json_text);

}  // namespace glancefs::backends
