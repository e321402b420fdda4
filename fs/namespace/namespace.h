// Namespace: the directory tree that one catalog snapshot shows (docs/SEMANTICS.md).
//
//   /images/<id>/{metadata.json, format.json, disk.raw, disk.qcow2}   listed unless hidden;
//                                                         hidden ones resolve
//   /by-name/<entry> -> ../images/<id>                     see name_codec.h for <entry>
//
// Built once per snapshot and immutable afterwards, so any number of threads may read it.
// It knows nothing of inodes or FUSE: fs/core maps inodes onto it.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fs/base/catalog.h"

namespace glancefs::fsns {

// The files inside images/<id>/.
enum class ImageFile : uint8_t { kMetadata, kDiskRaw, kDiskQcow2, kFormat };
inline constexpr ImageFile kAllImageFiles[] = {ImageFile::kMetadata, ImageFile::kFormat,
                                               ImageFile::kDiskRaw, ImageFile::kDiskQcow2};

const char* FileName(ImageFile file);
std::optional<ImageFile> ParseFileName(std::string_view name);

// The files an image may show, in listing order, judging by its record alone: metadata.json,
// and for an active image with data format.json and both disk views (fs/format/views.h).
// fs/core hides the disk views of images whose bytes it refuses (format::Inspect).
std::vector<ImageFile> FilesOf(const ImageRecord& record);

struct ByNameEntry {
  std::string entry;  // the directory entry (encoded, maybe with "%@<id>")
  std::shared_ptr<const ImageRecord> image;
};

class Namespace {
 public:
  explicit Namespace(std::shared_ptr<const CatalogSnapshot> snapshot);

  const std::shared_ptr<const CatalogSnapshot>& snapshot() const { return snapshot_; }

  // Images listed in images/, sorted by id (hidden ones left out).
  const std::vector<std::shared_ptr<const ImageRecord>>& listed() const { return listed_; }

  // Entries of by-name/, sorted by entry.
  const std::vector<ByNameEntry>& by_name() const { return by_name_; }

  // Any image by id, hidden or not; nullptr if absent.
  std::shared_ptr<const ImageRecord> FindImage(std::string_view id) const;
  // nullptr if there is no such entry.
  const ByNameEntry* FindByName(std::string_view entry) const;

  // The newest updated_at of any image: the mtime of the directories.
  int64_t mtime() const { return mtime_; }

  // The symlink target of a by-name entry.
  static std::string LinkTarget(const ImageRecord& image) { return "../images/" + image.id; }

 private:
  std::shared_ptr<const CatalogSnapshot> snapshot_;
  std::vector<std::shared_ptr<const ImageRecord>> listed_;
  std::vector<ByNameEntry> by_name_;
  int64_t mtime_ = 0;
};

}  // namespace glancefs::fsns
