#include "cache/image_record.h"

#include <algorithm>
#include <cstdlib>
#include <map>

namespace glancefs::cache {
namespace {

std::string OneLine(std::string s) {
  std::replace(s.begin(), s.end(), '\n', ' ');
  return s;
}

uint64_t ToU64(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 10); }

// Every `name=value` line; the first of a name wins, as the cache has always read them.
std::map<std::string, std::string> Lines(std::string_view text) {
  std::map<std::string, std::string> out;
  while (!text.empty()) {
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
  }
  return out;
}

}  // namespace

std::string EncodeImageRecord(const ImageRecordFields& f) {
  return "version=" + OneLine(f.version) + "\nsize=" + std::to_string(f.size) +
         "\nno=" + std::to_string(f.no) + "\nstate=" + OneLine(f.state) +
         "\nhash_algo=" + OneLine(f.hash_algo) + "\nhash_value=" + OneLine(f.hash_value) +
         "\nlast_access=" + std::to_string(f.last_access) + "\npinned=" + (f.pinned ? "1" : "0") +
         "\nreason=" + OneLine(f.reason) + "\nsignature_fp=" + OneLine(f.signature_fp) +
         "\nsignature=" + OneLine(f.signature) + "\n";
}

std::optional<ImageRecordFields> DecodeImageRecord(std::string_view text) {
  auto lines = Lines(text);
  auto field = [&](const char* name) {
    auto it = lines.find(name);
    return it == lines.end() ? std::string() : it->second;
  };
  ImageRecordFields f;
  f.version = field("version");
  f.size = ToU64(field("size"));
  f.no = ToU64(field("no"));
  f.state = field("state");
  f.hash_algo = field("hash_algo");
  f.hash_value = field("hash_value");
  f.last_access = static_cast<int64_t>(ToU64(field("last_access")));
  f.pinned = field("pinned") == "1";
  f.reason = field("reason");
  f.signature_fp = field("signature_fp");
  f.signature = field("signature");
  if (f.no == 0) return std::nullopt;
  return f;
}

}  // namespace glancefs::cache
