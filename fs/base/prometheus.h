// Helpers for the Prometheus text exposition format, shared by every part that writes metrics
// (the cache, the catalogs).
#pragma once

#include <string>
#include <string_view>

namespace glancefs {

// A label value as the format wants it: backslash, double quote and newline escaped.
inline std::string PrometheusLabel(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    out.push_back(c == '\n' ? 'n' : c);
  }
  return out;
}

}  // namespace glancefs
