#include "fs/format/vmdk_descriptor.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>
#include <vector>

#include "fs/format/vmdk_reader.h"

namespace glancefs::format {
namespace {

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}
std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}
std::string_view Unquote(std::string_view s) {
  s = Trim(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}
// A descriptor string, made safe and short for a log line or an xattr.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out + (s.size() > 80 ? "...\"" : "\"");
}
// A ddb value kept as a fact only when it is a plain word.
std::string PlainWord(std::string_view s) {
  if (s.empty() || s.size() > 64) return "";
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return "";
    }
  }
  return std::string(s);
}

// The descriptor, line by line, as Glance's inspector classifies it (case-insensitively).
struct ExtentLine {
  std::string line, access, sectors, type, name, trailing;
  bool quoted = false;
};
struct Descriptor {
  std::vector<std::pair<std::string, std::string>> fields;  // lowercased key, unquoted value
  std::vector<std::pair<std::string, std::string>> ddb;     // likewise
  std::vector<ExtentLine> extents;
  std::string bad_line;  // the first line that is none of the above
  bool binary = false;   // a byte that is not printable ASCII or whitespace
};

ExtentLine ParseExtent(std::string_view line) {
  ExtentLine e;
  e.line = line;
  std::string_view rest = line;
  for (std::string* word : {&e.access, &e.sectors, &e.type}) {
    rest = Trim(rest);
    size_t end = rest.find_first_of(" \t");
    *word = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  }
  rest = Trim(rest);
  size_t close = rest.size() > 1 && rest[0] == '"' ? rest.find('"', 1) : std::string_view::npos;
  if (close != std::string_view::npos) {
    e.quoted = true;
    e.name = rest.substr(1, close - 1);
    e.trailing = Trim(rest.substr(close + 1));
  } else {
    e.trailing = rest;
  }
  return e;
}

Descriptor ParseDescriptor(std::string_view text) {
  Descriptor d;
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x7f || (u < 0x20 && c != '\n' && c != '\r' && c != '\t')) d.binary = true;
  }
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    std::string first_word = ToLower(line.substr(0, line.find_first_of(" \t")));
    if (ToLower(line.substr(0, 3)) == "ddb") {
      if (eq != std::string_view::npos) {
        d.ddb.emplace_back(ToLower(Trim(line.substr(0, eq))), Unquote(line.substr(eq + 1)));
      }
    } else if (eq != std::string_view::npos &&
               line.substr(0, eq).find_first_of(" \t") == std::string_view::npos) {
      d.fields.emplace_back(ToLower(line.substr(0, eq)), Unquote(line.substr(eq + 1)));
    } else if (first_word == "rw" || first_word == "rdonly" || first_word == "noaccess") {
      d.extents.push_back(ParseExtent(line));
    } else if (d.bad_line.empty()) {
      d.bad_line = line;
    }
  }
  return d;
}

const std::string* Field(const std::vector<std::pair<std::string, std::string>>& kv,
                         std::string_view key) {
  for (const auto& [k, v] : kv) {
    if (k == key) return &v;
  }
  return nullptr;
}

size_t CountOf(std::string_view lowered_text, std::string_view needle) {
  size_t n = 0;
  for (size_t p = lowered_text.find(needle); p != std::string_view::npos;
       p = lowered_text.find(needle, p + 1)) {
    ++n;
  }
  return n;
}

// parentFileNameHint anywhere in the text qemu reads names a parent: Refused, naming it.
Status CheckNoParentHint(std::string_view qemu_view) {
  std::string lowered = ToLower(qemu_view);
  size_t hint = lowered.find("parentfilenamehint");
  if (hint == std::string::npos) return Status::Ok();
  std::string_view rest = qemu_view.substr(hint);
  size_t eq = rest.find('='), nl = rest.find('\n');
  std::string name = eq < nl ? std::string(Unquote(rest.substr(eq + 1, nl - eq - 1))) : "";
  return Status::Refused("vmdk names a parent file (parentFileNameHint " + Quote(name) +
                         "); images with a parent are refused");
}

// Text, every line of a known kind, and exactly one createType: one of the two decoded.
Status CheckCreateType(const Descriptor& d, std::string_view text, VmdkInfo* info) {
  if (d.binary) return Status::Refused("vmdk: the embedded descriptor is not ASCII text");
  if (!d.bad_line.empty()) {
    return Status::Refused("vmdk: descriptor line " + Quote(d.bad_line) +
                           " is neither a comment, a ddb entry, a field nor an extent");
  }
  const std::string* type = Field(d.fields, "createtype");
  if (!type) return Status::Refused("vmdk: the embedded descriptor has no createType");
  if (CountOf(ToLower(text), "createtype") != 1) {
    return Status::Refused("vmdk: the descriptor names createType more than once");
  }
  std::string t = ToLower(*type);
  if (t != "monolithicsparse" && t != "streamoptimized") {
    return Status::Refused("vmdk: createType " + Quote(*type) +
                           " is refused (only monolithicSparse and streamOptimized)");
  }
  info->subformat = t == "streamoptimized" ? "streamOptimized" : "monolithicSparse";
  return Status::Ok();
}

Status CheckNoParentCid(const Descriptor& d) {
  for (const auto& [key, value] : d.fields) {
    if (key == "parentcid" && ToLower(value) != "ffffffff") {
      return Status::Refused("vmdk names a parent disk (parentCID " + Quote(value) +
                             "); images with a parent are refused");
    }
  }
  return Status::Ok();
}

// Exactly one extent line: a SPARSE extent of this file, its size the header's capacity.
Status CheckExtentLine(const Descriptor& d, uint64_t capacity_sectors) {
  if (d.extents.size() != 1) {
    return Status::Refused("vmdk: the descriptor lists " + std::to_string(d.extents.size()) +
                           " extents; exactly one, the image itself, is supported");
  }
  const ExtentLine& e = d.extents[0];
  std::string access = ToLower(e.access);
  if (access != "rw" && access != "rdonly") {
    return Status::Refused("vmdk: extent access " + Quote(e.access) + " is refused");
  }
  if (ToLower(e.type) != "sparse" || !e.quoted || !e.trailing.empty()) {
    return Status::Refused("vmdk: extent " + Quote(e.line) +
                           " is not a sparse extent of this file (FLAT, ZERO, VMFS and "
                           "SESPARSE extents name other files and are refused)");
  }
  if (e.name.empty() || e.name.find('/') != std::string::npos) {
    return Status::Refused("vmdk: extent file name " + Quote(e.name) +
                           " is empty or a path; extent paths are refused");
  }
  uint64_t sectors = 0;
  bool digits = !e.sectors.empty() && e.sectors.size() <= 18;  // no overflow
  for (char c : e.sectors) {
    digits = digits && c >= '0' && c <= '9';
    sectors = sectors * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!digits) return Status::Refused("vmdk: extent size " + Quote(e.sectors) + " is not a number");
  if (sectors != capacity_sectors) {
    return Status::Corruption("vmdk: the extent line says " + std::to_string(sectors) +
                              " sectors, the header's capacity is " +
                              std::to_string(capacity_sectors));
  }
  return Status::Ok();
}

// The ddb entries and fields kept as facts, when plain words.
void KeepFacts(const Descriptor& d, VmdkInfo* info) {
  if (const std::string* v = Field(d.ddb, "ddb.adaptertype")) info->adapter_type = PlainWord(*v);
  if (const std::string* v = Field(d.ddb, "ddb.virtualhwversion")) {
    info->hardware_version = PlainWord(*v);
  }
  if (const std::string* v = Field(d.fields, "cid")) info->cid = PlainWord(*v);
}

}  // namespace

Status RefuseVmdkDescriptorFile(ByteSource& file) {
  std::string text(std::min<uint64_t>(file.size(), (1 << 20) - 1), '\0');
  GLANCEFS_RETURN_IF_ERROR(file.ReadAt(0, text.size(), text.data()));
  text.resize(std::min(text.size(), text.find('\0')));
  Descriptor d = ParseDescriptor(text);
  const std::string* type = Field(d.fields, "createtype");
  std::string names;
  for (size_t i = 0; i < d.extents.size() && i < 4; ++i) {
    names += (i ? ", " : "") + Quote(d.extents[i].name);
  }
  if (d.extents.size() > 4) names += ", ...";
  return Status::Refused("vmdk: a descriptor file (createType " +
                         (type ? Quote(*type) : std::string("missing")) + ") whose data is in " +
                         (names.empty() ? "no named file" : "other files: " + names) +
                         "; only monolithicSparse and streamOptimized images with an embedded "
                         "descriptor are decoded");
}

Status CheckVmdkDescriptor(std::string_view text, std::string_view qemu_view,
                           uint64_t capacity_sectors, VmdkInfo* info) {
  GLANCEFS_RETURN_IF_ERROR(CheckNoParentHint(qemu_view));
  Descriptor d = ParseDescriptor(text);
  GLANCEFS_RETURN_IF_ERROR(CheckCreateType(d, text, info));
  GLANCEFS_RETURN_IF_ERROR(CheckNoParentCid(d));
  GLANCEFS_RETURN_IF_ERROR(CheckExtentLine(d, capacity_sectors));
  KeepFacts(d, info);
  return Status::Ok();
}

}  // namespace glancefs::format
