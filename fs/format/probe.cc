#include "fs/format/probe.h"

#include "fs/format/format.h"

namespace glancefs::format {

Result<std::vector<std::string>> DetectFormats(ByteSource& src) {
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
