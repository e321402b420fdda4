// FileSystem::Refresh: a new catalog snapshot becomes the namespace every operation sees, and
// what changed becomes the invalidations the kernel is told (its cached entries, attributes
// and pages of files whose content changed).
#include <ctime>

#include "fs/base/log.h"
#include "fs/core/file_system.h"
#include "fs/core/node_keys.h"

namespace glancefs::core {

using fsns::ImageFile;
using fsns::Namespace;

Status FileSystem::Refresh(std::vector<Invalidation>* invalidations) {
  auto snap = catalog_->Refresh();
  if (!snap.ok()) {
    MutexLock lock(&refresh_mu_);
    ++refresh_failures_;
    if (refresh_error_ != snap.status().ToString()) {
      refresh_error_ = snap.status().ToString();
      LOG_ERROR("catalog %s: refresh failed, serving the last good catalog: %s",
                catalog_->Describe().c_str(), refresh_error_.c_str());
    }
    return snap.status();
  }
  {
    MutexLock lock(&refresh_mu_);
    last_refresh_ = ::time(nullptr);
    refresh_error_.clear();
  }
  auto old_ns = ns();
  if (old_ns->snapshot() == *snap) return Status::Ok();
  auto new_ns = std::make_shared<const Namespace>(std::move(snap).value());
  {
    MutexLock lock(&verdict_mu_);
    for (auto it = verdicts_.begin(); it != verdicts_.end();) {
      it = new_ns->FindImage(it->first) ? std::next(it) : verdicts_.erase(it);
    }
  }
  {
    MutexLock lock(&ns_mu_);
    ns_ = new_ns;
    ++generation_;
  }
  Diff(*old_ns, *new_ns, invalidations);
  LOG_DEBUG("catalog %s: %zu images, %zu invalidations", catalog_->Describe().c_str(),
            new_ns->snapshot()->images.size(), invalidations->size());
  return Status::Ok();
}

void FileSystem::Diff(const Namespace& old_ns, const Namespace& new_ns,
                      std::vector<Invalidation>* out) const {
  using Kind = Invalidation::Kind;
  const bool images_changed = DiffImages(old_ns, new_ns, out);
  const bool by_name_changed = DiffByName(old_ns, new_ns, out);
  // Directories: kInode, because the kernel keeps cached listings in their page cache.
  if (images_changed) out->push_back({Kind::kInode, kImagesIno, ""});
  if (by_name_changed) out->push_back({Kind::kInode, kByNameIno, ""});
  if (old_ns.mtime() != new_ns.mtime()) out->push_back({Kind::kInodeAttrs, kRootIno, ""});
}

bool FileSystem::DiffImages(const Namespace& old_ns, const Namespace& new_ns,
                            std::vector<Invalidation>* out) const {
  using Kind = Invalidation::Kind;
  const auto& a = old_ns.snapshot()->images;
  const auto& b = new_ns.snapshot()->images;
  bool images_changed = false;
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    const ImageRecord* o = nullptr;
    const ImageRecord* n = nullptr;
    if (j == b.size() || (i < a.size() && a[i]->id < b[j]->id)) {
      o = a[i++].get();
    } else if (i == a.size() || b[j]->id < a[i]->id) {
      n = b[j++].get();
    } else {
      o = a[i++].get();
      n = b[j++].get();
      if (*o == *n) continue;
    }
    const std::string& id = o ? o->id : n->id;
    images_changed = true;
    // A new id drops a cached negative entry; a gone one drops the positive entry.
    if (!o || !n) out->push_back({Kind::kEntry, kImagesIno, id});
    auto dir_ino = inodes_.Find(ImageDirKey(id));
    // kInode: the kernel keeps the directory's cached listing in its page cache.
    if (dir_ino) out->push_back({Kind::kInode, *dir_ino, ""});
    for (ImageFile f : fsns::kAllImageFiles) {
      bool shown_before = o && Shows(*o, f);
      bool same =
          shown_before && n && Shows(*n, f) && ContentVersion(*o, f) == ContentVersion(*n, f);
      if (same) {
        // Same bytes, new allocation (a store learned it): attributes only (st_blocks).
        if (o->allocated_bytes != n->allocated_bytes) {
          if (auto file_ino = inodes_.Find(FileKey(*o, f))) {
            out->push_back({Kind::kInodeAttrs, *file_ino, ""});
          }
        }
        continue;
      }
      // The name now means another inode (or none): drop the dentry; drop the old inode's pages.
      if (dir_ino) out->push_back({Kind::kEntry, *dir_ino, fsns::FileName(f)});
      if (!shown_before) continue;
      if (auto file_ino = inodes_.Find(FileKey(*o, f))) {
        out->push_back({Kind::kInode, *file_ino, ""});
      }
    }
  }
  return images_changed;
}

bool FileSystem::DiffByName(const Namespace& old_ns, const Namespace& new_ns,
                            std::vector<Invalidation>* out) const {
  using Kind = Invalidation::Kind;
  // Merges the two sorted entry lists.
  const auto& x = old_ns.by_name();
  const auto& y = new_ns.by_name();
  bool by_name_changed = false;
  size_t i = 0, j = 0;
  while (i < x.size() || j < y.size()) {
    std::string entry;
    if (j == y.size() || (i < x.size() && x[i].entry < y[j].entry)) {
      entry = x[i++].entry;
    } else if (i == x.size() || y[j].entry < x[i].entry) {
      entry = y[j++].entry;
    } else {
      bool same = x[i].image->id == y[j].image->id;
      entry = x[i].entry;
      ++i;
      ++j;
      if (same) continue;
    }
    by_name_changed = true;
    out->push_back({Kind::kEntry, kByNameIno, entry});
    if (auto link_ino = inodes_.Find(LinkKey(entry))) out->push_back({Kind::kInode, *link_ino, ""});
  }
  return by_name_changed;
}

}  // namespace glancefs::core
