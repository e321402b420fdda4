#include "backends/common/image_record_json.h"

#include <algorithm>
#include <climits>
#include <nlohmann/json.hpp>

#include "fs/base/log.h"
#include "fs/base/time_util.h"

namespace glancefs::backends {
namespace {

using nlohmann::json;

std::string Dump(const json& j, int indent) {
  // Records come from anywhere; invalid UTF-8 is replaced rather than thrown on.
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

Result<std::optional<std::string>> OptionalString(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string())
    return Status::Corruption(std::string("field '") + key + "' is not a string");
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::optional<uint64_t>> OptionalSize(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::optional<uint64_t>();
  if (!it->is_number_unsigned()) {
    return Status::Corruption(std::string("field '") + key + "' is not a non-negative integer");
  }
  uint64_t v = it->get<uint64_t>();
  if (v > static_cast<uint64_t>(INT64_MAX)) {
    return Status::Corruption(std::string("field '") + key + "' is too large");
  }
  return std::optional<uint64_t>(v);
}

int64_t Timestamp(const json& j, const char* key, const std::string& id) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return 0;
  auto t = ParseIso8601(it->get<std::string>());
  if (!t.ok()) {
    LOG_WARNING("image %s: %s: %s; using 0", id.c_str(), key, t.status().message().c_str());
    return 0;
  }
  return *t;
}

Result<ImageRecord> FromJson(const json& j) {
  if (!j.is_object()) return Status::Corruption("record is not a JSON object");
  ImageRecord r;
  GLANCEFS_ASSIGN_OR_RETURN(auto id, OptionalString(j, "id"));
  if (!id) return Status::Corruption("record has no 'id'");
  if (!IsSafeImageId(*id)) return Status::Corruption("record has an unusable id '" + *id + "'");
  r.id = *id;
  GLANCEFS_ASSIGN_OR_RETURN(r.name, OptionalString(j, "name"));
  GLANCEFS_ASSIGN_OR_RETURN(auto status, OptionalString(j, "status"));
  r.status = status.value_or("");
  GLANCEFS_ASSIGN_OR_RETURN(auto disk_format, OptionalString(j, "disk_format"));
  r.disk_format = disk_format.value_or("");
  GLANCEFS_ASSIGN_OR_RETURN(auto container_format, OptionalString(j, "container_format"));
  r.container_format = container_format.value_or("");
  GLANCEFS_ASSIGN_OR_RETURN(r.size, OptionalSize(j, "size"));
  GLANCEFS_ASSIGN_OR_RETURN(r.virtual_size, OptionalSize(j, "virtual_size"));
  if (auto it = j.find("os_hidden"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean()) return Status::Corruption("field 'os_hidden' is not a boolean");
    r.hidden = it->get<bool>();
  }
  r.created_at = Timestamp(j, "created_at", r.id);
  r.updated_at = Timestamp(j, "updated_at", r.id);
  for (const auto& [key, value] : j.items()) {
    if (value.is_null()) continue;
    r.properties.emplace(key, value.is_string() ? value.get<std::string>() : Dump(value, -1));
  }
  r.record_json = Dump(j, 2) + "\n";
  return r;
}

// The deepest nesting of arrays and objects in `text`, counted outside strings. nlohmann parses
// any depth iteratively but serializes recursively: a deep record would overflow the stack.
size_t NestingDepth(std::string_view text) {
  size_t depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return max_depth;
}

}  // namespace

bool IsSafeImageId(std::string_view id) {
  if (id.empty() || id.size() > kMaxImageIdBytes || id[0] == '.') return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

Result<ImageRecord> ParseImageRecord(std::string_view json_text) {
  if (json_text.size() > kMaxRecordBytes) return Status::Corruption("record is larger than 16 MiB");
  if (NestingDepth(json_text) > kMaxRecordDepth) {
    return Status::Corruption("record nests deeper than " + std::to_string(kMaxRecordDepth));
  }
  try {
    return FromJson(json::parse(json_text.begin(), json_text.end()));
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("record is not valid JSON: ") + e.what());
  } catch (const std::bad_alloc&) {
    return Status::Corruption("record too large to parse");
  }
}

Result<ImageListPage> ParseImageListPage(std::string_view json_text) {
  if (NestingDepth(json_text) > kMaxRecordDepth + 2) {
    return Status::Corruption("image list nests too deep");
  }
  try {
    json page = json::parse(json_text.begin(), json_text.end());
    if (!page.is_object()) return Status::Corruption("image list is not a JSON object");
    auto images = page.find("images");
    if (images == page.end() || !images->is_array()) {
      return Status::Corruption("image list has no 'images' array");
    }
    ImageListPage out;
    for (const json& item : *images) {
      auto record = FromJson(item);
      if (record.ok()) {
        out.images.push_back(std::move(record).value());
      } else {
        out.bad.push_back(record.status().message());
      }
    }
    if (auto next = page.find("next"); next != page.end() && next->is_string()) {
      out.next = next->get<std::string>();
    }
    return out;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("image list is not valid JSON: ") + e.what());
  } catch (const std::bad_alloc&) {
    return Status::Corruption("image list too large to parse");
  }
}

}  // namespace glancefs::backends
