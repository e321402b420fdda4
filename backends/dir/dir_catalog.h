// DirCatalog: the embedded default catalog, a local directory of Glance records and data.
//
// Layout of PATH (docs/SEMANTICS.md, "Local catalogs"):
//   <id>.json   the image record exactly as `GET /v2/images/<id>` returns it
//   <id>        the image data as Glance's file store keeps it (may be a symlink, may be sparse)
// Names starting with '.' are ignored, so writers can create ".<id>.json.tmp" and rename it.
//
// Refresh re-reads only records whose file changed (inode, size, mtime, ctime), so a catalog of
// 10,000 images costs a directory scan and two stats per image when nothing changed. A record
// that does not parse is logged once, when it changes, and left out; the rest stays usable.
// Thread-safe: Refresh calls are serialized internally; OpenData may run concurrently.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "fs/base/catalog.h"
#include "fs/base/mutex.h"

namespace glancefs::backends {

class DirCatalog final : public Catalog {
 public:
  // Fails with a clear Status unless `path` is a readable directory.
  static Result<std::unique_ptr<DirCatalog>> Open(const std::string& path);

  std::string Describe() const override { return "dir:" + path_; }
  Result<std::shared_ptr<const CatalogSnapshot>> Refresh() override;
  Result<std::shared_ptr<ByteSource>> OpenData(const ImageRecord& record) override;

 private:
  // What identifies one version of a file on disk; all zero for "missing".
  struct Stamp {
    ino_t ino = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    int64_t ctime_ns = 0;
    uint64_t allocated_bytes = 0;  // st_blocks * 512; not part of the identity
    bool operator==(const Stamp& o) const {
      return ino == o.ino && size == o.size && mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns;
    }
  };
  struct Entry {
    Stamp record_stamp;
    Stamp data_stamp;
    std::shared_ptr<const ImageRecord> record;  // nullptr: the record is bad (already logged)
  };

  static Stamp StampOf(const struct stat& st);
  explicit DirCatalog(std::string path) : path_(std::move(path)) {}
  // Builds the entry for `<id>.json` from scratch, logging what is wrong with it.
  Entry Load(int dirfd, const std::string& id, const Stamp& record_stamp, const Stamp& data_stamp);
  // Refresh's look at one directory entry: a record file's entry, as it was or loaded anew,
  // goes to `next`; `changed` is set if its record differs from the one served.
  void ScanEntry(int dirfd, const char* d_name, std::unordered_map<std::string, Entry>* next,
                 bool* changed) REQUIRES(mu_);
  // The snapshot of entries_, sorted by id.
  std::shared_ptr<const CatalogSnapshot> SnapshotOfEntries() const REQUIRES(mu_);

  const std::string path_;
  Mutex mu_;  // serializes Refresh; guards the four below
  std::unordered_map<std::string, Entry> entries_ GUARDED_BY(mu_);
  std::shared_ptr<const CatalogSnapshot> snapshot_ GUARDED_BY(mu_);
  bool last_refresh_failed_ GUARDED_BY(mu_) = false;
  // Record names that are not regular files (a FIFO, a device): logged once, until they are.
  std::unordered_set<std::string> not_regular_ GUARDED_BY(mu_);
};

}  // namespace glancefs::backends
