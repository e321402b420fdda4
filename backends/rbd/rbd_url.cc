#include "backends/rbd/rbd_url.h"

#include <cctype>
#include <vector>

namespace glancefs::backends::rbd {
namespace {

constexpr std::string_view kScheme = "rbd://";
constexpr size_t kMaxPart = 255;  // Ceph's pool, image and snapshot names are short

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> Decode(std::string_view part, const char* what) {
  std::string out;
  for (size_t i = 0; i < part.size(); ++i) {
    char c = part[i];
    if (c == '%') {
      int hi = i + 2 < part.size() ? HexValue(part[i + 1]) : -1;
      int lo = i + 2 < part.size() ? HexValue(part[i + 2]) : -1;
      if (hi < 0 || lo < 0) return Status::InvalidArgument(std::string("bad %-escape in rbd ") + what);
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '?' || c == '#') {
      return Status::InvalidArgument(std::string("rbd ") + what + " has a query or fragment");
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '/') {
      return Status::InvalidArgument(std::string("rbd ") + what +
                                     " holds a '/' or a control character");
    }
    out.push_back(c);
  }
  if (out.empty()) return Status::InvalidArgument(std::string("rbd ") + what + " is empty");
  if (out.size() > kMaxPart) return Status::InvalidArgument(std::string("rbd ") + what + " is too long");
  return out;
}

bool IsFsid(const std::string& s) {
  if (s.size() != 36) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

std::string Encode(const std::string& part) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : part) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

}  // namespace

Result<RbdLocation> ParseRbdUrl(std::string_view url) {
  if (url.substr(0, kScheme.size()) != kScheme) {
    return Status::InvalidArgument("not an rbd:// location");
  }
  std::string_view rest = url.substr(kScheme.size());
  std::vector<std::string_view> parts;
  for (size_t start = 0;;) {
    size_t slash = rest.find('/', start);
    parts.push_back(rest.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  if (parts.size() != 4) {
    return Status::InvalidArgument("rbd location must be rbd://FSID/POOL/IMAGE/SNAPSHOT (" +
                                   std::to_string(parts.size()) + " parts)");
  }
  RbdLocation loc;
  GLANCEFS_ASSIGN_OR_RETURN(loc.fsid, Decode(parts[0], "fsid"));
  GLANCEFS_ASSIGN_OR_RETURN(loc.pool, Decode(parts[1], "pool"));
  GLANCEFS_ASSIGN_OR_RETURN(loc.image, Decode(parts[2], "image"));
  GLANCEFS_ASSIGN_OR_RETURN(loc.snapshot, Decode(parts[3], "snapshot"));
  for (char& c : loc.fsid) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!IsFsid(loc.fsid)) return Status::InvalidArgument("rbd fsid is not a UUID");
  return loc;
}

std::string FormatRbdUrl(const RbdLocation& l) {
  return std::string(kScheme) + Encode(l.fsid) + "/" + Encode(l.pool) + "/" + Encode(l.image) +
         "/" + Encode(l.snapshot);
}

}  // namespace glancefs::backends::rbd
