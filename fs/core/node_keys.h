// The NodeKey of each node of the tree FileSystem shows, and what identifies the content of an
// image's file: a new content is a new key, so a new inode (inode_table.h).
#pragma once

#include <algorithm>
#include <string>

#include "fs/base/catalog.h"
#include "fs/base/hash.h"
#include "fs/core/inode_table.h"
#include "fs/namespace/namespace.h"

namespace glancefs::core {

inline NodeKey DirKey(NodeKind kind) {
  return NodeKey{kind, fsns::ImageFile::kMetadata, "", ""};
}
inline NodeKey ImageDirKey(const std::string& id) {
  return NodeKey{NodeKind::kImageDir, fsns::ImageFile::kMetadata, id, ""};
}
inline NodeKey EntryKey(NodeKind kind, const std::string& id) {
  return NodeKey{kind, fsns::ImageFile::kMetadata, id, ""};
}
inline NodeKey LinkKey(const std::string& entry) {
  return NodeKey{NodeKind::kByNameLink, fsns::ImageFile::kMetadata, entry, ""};
}

// What identifies the content of `file` of `image` (see NodeKey::version).
inline std::string ContentVersion(const ImageRecord& image, fsns::ImageFile file) {
  if (file != fsns::ImageFile::kMetadata) {
    return image.data_version + "/" + std::to_string(*image.size);
  }
  return std::to_string(StableHash64(image.record_json));
}

inline NodeKey FileKey(const ImageRecord& image, fsns::ImageFile file) {
  return NodeKey{NodeKind::kImageFile, file, image.id, ContentVersion(image, file)};
}

inline bool Shows(const ImageRecord& image, fsns::ImageFile file) {
  auto files = fsns::FilesOf(image);
  return std::find(files.begin(), files.end(), file) != files.end();
}

}  // namespace glancefs::core
