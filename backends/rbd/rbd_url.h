// RbdLocation: one `rbd://` location of a Glance image, parsed strictly.
//
// glance_store's rbd driver writes `rbd://<fsid>/<pool>/<image>/<snapshot>`, each part
// percent-encoded. Locations are untrusted input (a catalog record names them), so the parser
// accepts exactly four non-empty parts, decodes %XX, and refuses anything that could name
// something other than one snapshot of one image in one pool: empty parts, '/', control
// characters, bad escapes, a query or a fragment. The legacy `rbd://<image>` form (no fsid, no
// pool) is refused: without an fsid the cluster would be a guess.
#pragma once

#include <string>
#include <string_view>

#include "fs/base/status.h"

namespace glancefs::backends::rbd {

struct RbdLocation {
  std::string fsid;  // lower case
  std::string pool;
  std::string image;
  std::string snapshot;
  bool operator==(const RbdLocation&) const = default;
};

Result<RbdLocation> ParseRbdUrl(std::string_view url);

// "rbd://FSID/POOL/IMAGE/SNAP" with each part percent-encoded as glance_store does.
std::string FormatRbdUrl(const RbdLocation& location);

}  // namespace glancefs::backends::rbd
