#include "fs/namespace/namespace.h"

#include <algorithm>
#include <map>

#include "fs/namespace/name_codec.h"

namespace glancefs::fsns {
namespace {

// Which of several images with one name `by-name/<name>` points at: the newest active one,
// else the newest; ties broken by id so the choice is deterministic.
bool PreferredOver(const ImageRecord& a, const ImageRecord& b) {
  bool a_active = a.status == "active", b_active = b.status == "active";
  if (a_active != b_active) return a_active;
  if (a.created_at != b.created_at) return a.created_at > b.created_at;
  return a.id > b.id;
}

}  // namespace

const char* FileName(ImageFile file) {
  switch (file) {
    case ImageFile::kMetadata:
      return "metadata.json";
    case ImageFile::kDiskRaw:
      return "disk.raw";
    case ImageFile::kDiskQcow2:
      return "disk.qcow2";
    case ImageFile::kFormat:
      return "format.json";
  }
  return "?";
}

std::optional<ImageFile> ParseFileName(std::string_view name) {
  for (ImageFile f : kAllImageFiles) {
    if (name == FileName(f)) return f;
  }
  return std::nullopt;
}

std::vector<ImageFile> FilesOf(const ImageRecord& record) {
  std::vector<ImageFile> files{ImageFile::kMetadata};
  if (record.status != "active" || !record.size) return files;
  return {ImageFile::kMetadata, ImageFile::kFormat, ImageFile::kDiskRaw, ImageFile::kDiskQcow2};
}

Namespace::Namespace(std::shared_ptr<const CatalogSnapshot> snapshot)
    : snapshot_(std::move(snapshot)) {
  std::map<std::string, std::vector<std::shared_ptr<const ImageRecord>>> by_encoded;
  for (const auto& image : snapshot_->images) {
    mtime_ = std::max(mtime_, image->updated_at);
    if (image->hidden) continue;
    listed_.push_back(image);
    if (!image->name) continue;
    if (auto encoded = EncodeName(*image->name)) by_encoded[*encoded].push_back(image);
  }
  for (auto& [encoded, images] : by_encoded) {
    if (images.size() == 1) {
      by_name_.push_back({encoded, images[0]});
      continue;
    }
    // Several images share the name (or, rarely, a shortened encoding): the plain entry points at
    // the preferred one and every image also gets an entry of its own, so nothing is hidden.
    auto best = std::min_element(images.begin(), images.end(), [](const auto& a, const auto& b) {
      return PreferredOver(*a, *b);
    });
    by_name_.push_back({encoded, *best});
    for (const auto& image : images) {
      by_name_.push_back({DuplicateEntry(*image->name, image->id), image});
    }
  }
  std::sort(by_name_.begin(), by_name_.end(),
            [](const ByNameEntry& a, const ByNameEntry& b) { return a.entry < b.entry; });
}

std::shared_ptr<const ImageRecord> Namespace::FindImage(std::string_view id) const {
  return snapshot_->Find(std::string(id));
}

const ByNameEntry* Namespace::FindByName(std::string_view entry) const {
  auto it =
      std::lower_bound(by_name_.begin(), by_name_.end(), entry,
                       [](const ByNameEntry& e, std::string_view key) { return e.entry < key; });
  if (it == by_name_.end() || it->entry != entry) return nullptr;
  return &*it;
}

}  // namespace glancefs::fsns
