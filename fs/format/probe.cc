#include "fs/format/probe.h"

#include "fs/format/format.h"

namespace glancefs::format {

// The probes read the first bytes and the last ones (a VHD footer).
constexpr uint64_t kTailBytes = 512;

Result<std::vector<std::string>> DetectFormats(ByteSource& src) {
  // Asked for ahead, the tail arrives while the first probes read the head.
  if (src.size() > kTailBytes) src.WillNeed(src.size() - kTailBytes, kTailBytes);
  std::vector<std::string> matches;
  for (const FormatSpec& f : Formats()) {
    GLANCEFS_ASSIGN_OR_RETURN(bool match, f.probe(src));
    if (match) matches.emplace_back(f.name);
  }
  return matches;
}

Result<std::string> ProbeFormat(ByteSource& src) {
  GLANCEFS_ASSIGN_OR_RETURN(auto matches, DetectFormats(src));
  return matches.empty() ? std::string("raw") : matches.front();
}

}  // namespace glancefs::format
