#include "fs/base/catalog.h"

#include <algorithm>

namespace glancefs {

std::shared_ptr<const ImageRecord> CatalogSnapshot::Find(const std::string& id) const {
  auto it = std::lower_bound(images.begin(), images.end(), id,
                             [](const auto& rec, const std::string& key) { return rec->id < key; });
  if (it == images.end() || (*it)->id != id) return nullptr;
  return *it;
}

}  // namespace glancefs
