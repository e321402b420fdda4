// FileSystem's reports: the xattrs of the root, images and cache entries (user.glance.* from
// the record's properties, user.glancefs.* from glancefs), metrics.prom and the status line.
#include <string>
#include <utility>
#include <vector>

#include "fs/base/time_util.h"
#include "fs/core/file_system.h"

namespace glancefs::core {
namespace {

using fsns::Namespace;

constexpr std::string_view kGlancePrefix = "user.glance.";
constexpr std::string_view kGlancefsPrefix = "user.glancefs.";
constexpr size_t kXattrNameMax = 255;  // XATTR_NAME_MAX

}  // namespace

// user.glancefs.signature: the cache's verdict, else whether there is anything to check.
std::string FileSystem::SignatureState(const ImageRecord& image,
                                       const std::optional<CacheEntry>& entry) {
  if (entry && !entry->signature.empty()) return entry->signature;
  for (const char* p : {"img_signature", "img_signature_hash_method", "img_signature_key_type",
                        "img_signature_certificate_uuid"}) {
    if (image.properties.count(p)) {
      return "not checked yet: the check runs when all the image's bytes are cached "
             "(read it whole, or touch queue/<id>)";
    }
  }
  return "unsigned";
}

std::shared_ptr<const ImageRecord> FileSystem::XattrImage(const NodeKey& key,
                                                          const Namespace& ns) const {
  if (key.kind != NodeKind::kImageDir && key.kind != NodeKind::kImageFile) return nullptr;
  return ns.FindImage(key.name);
}

std::vector<std::pair<std::string, std::string>> FileSystem::RootXattrs() const {
  auto current = ns();
  std::vector<std::pair<std::string, std::string>> out;
  out.emplace_back("user.glancefs.catalog", catalog_->Describe());
  out.emplace_back("user.glancefs.images", std::to_string(current->snapshot()->images.size()));
  out.emplace_back("user.glancefs.inodes", std::to_string(inodes_.size()));
  MutexLock lock(&refresh_mu_);
  if (last_refresh_) out.emplace_back("user.glancefs.last_refresh", FormatIso8601(last_refresh_));
  if (!refresh_error_.empty()) out.emplace_back("user.glancefs.refresh_error", refresh_error_);
  for (auto& [k, v] : catalog_->Info()) out.emplace_back(std::string(kGlancefsPrefix) + k, v);
  if (options_.cache) {
    for (auto& [k, v] : options_.cache->Stats()) out.emplace_back("user.glancefs.cache." + k, v);
  }
  return out;
}

std::string FileSystem::MetricsText() const {
  std::string out = options_.cache ? options_.cache->Prometheus() : "";
  const size_t images = ns()->snapshot()->images.size();
  MutexLock lock(&refresh_mu_);
  out += "# HELP glancefs_catalog_images Images in the catalog the mount shows (hidden included).\n"
         "# TYPE glancefs_catalog_images gauge\n"
         "glancefs_catalog_images " + std::to_string(images) + "\n"
         "# HELP glancefs_catalog_last_refresh_timestamp_seconds When the catalog last refreshed.\n"
         "# TYPE glancefs_catalog_last_refresh_timestamp_seconds gauge\n"
         "glancefs_catalog_last_refresh_timestamp_seconds " + std::to_string(last_refresh_) + "\n"
         "# HELP glancefs_catalog_refresh_failures_total Refreshes that failed.\n"
         "# TYPE glancefs_catalog_refresh_failures_total counter\n"
         "glancefs_catalog_refresh_failures_total " + std::to_string(refresh_failures_) + "\n"
         "# HELP glancefs_catalog_refresh_failing 1 while the last refresh failed.\n"
         "# TYPE glancefs_catalog_refresh_failing gauge\n"
         "glancefs_catalog_refresh_failing " + (refresh_error_.empty() ? "0" : "1") + "\n";
  return out + catalog_->Metrics();
}

std::string FileSystem::StatusLine() const {
  std::string catalog = "live";
  for (auto& [k, v] : catalog_->Info()) {
    if (k == "catalog_state") catalog = v;
  }
  std::string out = std::to_string(ns()->snapshot()->images.size()) + " images, catalog " + catalog;
  {
    MutexLock lock(&refresh_mu_);
    if (!refresh_error_.empty()) out += ", refresh failing: " + refresh_error_;
  }
  if (options_.cache) {
    std::string cached = "?", max = "?";
    for (auto& [k, v] : options_.cache->Stats()) {
      if (k == "cached_bytes") cached = v;
      if (k == "max_bytes") max = v;
    }
    out += "; cache " + cached + " of " + (max == "0" ? "unlimited" : max) + " bytes";
  }
  return out;
}

std::vector<std::pair<std::string, std::string>> FileSystem::ImageXattrs(const ImageRecord& image) {
  std::vector<std::pair<std::string, std::string>> out;
  if (fsns::FilesOf(image).size() < 2) return out;  // no data to judge
  for (auto& [k, v] : catalog_->ImageInfo(image)) out.emplace_back(std::string(kGlancefsPrefix) + k, v);
  auto verdict = VerdictFor(image);  // fails when the data cannot be read (a corrupt image)
  if (verdict.ok()) {
    out.emplace_back("user.glancefs.format", verdict->format);
    if (!verdict->refused.empty()) out.emplace_back("user.glancefs.refused", verdict->refused);
    if (verdict->virtual_size) {
      out.emplace_back("user.glancefs.virtual_size", std::to_string(*verdict->virtual_size));
    }
    if (!verdict->container.empty()) out.emplace_back("user.glancefs.container", verdict->container);
    for (const auto& [k, v] : verdict->info.facts) {
      out.emplace_back(std::string(kGlancefsPrefix) + k, v);
    }
  }
  if (options_.cache) {
    auto entry = options_.cache->Find(image.id);
    out.emplace_back("user.glancefs.cached_bytes", std::to_string(entry ? entry->cached_bytes : 0));
    out.emplace_back("user.glancefs.cache_state", entry ? entry->state : "partial");
    out.emplace_back("user.glancefs.signature", SignatureState(image, entry));
  }
  return out;
}

Result<std::optional<std::string>> FileSystem::GetXattr(uint64_t ino, std::string_view name) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey key, KeyOf(ino));
  if (name.substr(0, kGlancefsPrefix.size()) == kGlancefsPrefix) {
    std::vector<std::pair<std::string, std::string>> attrs;
    if (key.kind == NodeKind::kRoot) {
      attrs = RootXattrs();
    } else if (key.kind == NodeKind::kQueueEntry || key.kind == NodeKind::kCacheEntry) {
      if (auto entry = CacheEntryOf(key.kind, key.name)) {
        for (auto& [k, v] : entry->xattrs) attrs.emplace_back(std::string(kGlancefsPrefix) + k, v);
      }
    } else if (auto image = XattrImage(key, *ns())) {
      attrs = ImageXattrs(*image);
    }
    for (auto& [k, v] : attrs) {
      if (k == name) return std::optional<std::string>(std::move(v));
    }
    return std::optional<std::string>();
  }
  if (name.substr(0, kGlancePrefix.size()) != kGlancePrefix) return std::optional<std::string>();
  auto image = XattrImage(key, *ns());
  if (!image) return std::optional<std::string>();
  auto it = image->properties.find(std::string(name.substr(kGlancePrefix.size())));
  if (it == image->properties.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Result<std::string> FileSystem::ListXattr(uint64_t ino) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey key, KeyOf(ino));
  std::string out;
  if (key.kind == NodeKind::kRoot) {
    for (const auto& [k, v] : RootXattrs()) {
      out += k;
      out.push_back('\0');
    }
    return out;
  }
  if (key.kind == NodeKind::kQueueEntry || key.kind == NodeKind::kCacheEntry) {
    if (auto entry = CacheEntryOf(key.kind, key.name)) {
      for (const auto& [k, v] : entry->xattrs) {
        out += std::string(kGlancefsPrefix) + k;
        out.push_back('\0');
      }
    }
    return out;
  }
  auto image = XattrImage(key, *ns());
  if (!image) return out;
  for (const auto& [k, v] : ImageXattrs(*image)) {
    out += k;
    out.push_back('\0');
  }
  for (const auto& [k, v] : image->properties) {
    // A key that cannot be an xattr name stays readable in metadata.json only.
    if (k.size() + kGlancePrefix.size() > kXattrNameMax || k.find('\0') != std::string::npos ||
        k.empty()) {
      continue;
    }
    // A list over 64 KiB (XATTR_LIST_MAX) is answered whole: the kernel then fails listxattr
    // with E2BIG, as for any file system, rather than a silently truncated list.
    out += kGlancePrefix;
    out += k;
    out.push_back('\0');
  }
  return out;
}

}  // namespace glancefs::core
