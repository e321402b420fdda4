// Catalog: where image records and image data come from (a local directory, Glance, later a
// store such as Ceph). The file system sees only this interface and ImageRecord.
//
// A CatalogSnapshot is immutable once built and shared by shared_ptr, so readers hold a
// consistent view of the catalog while the refresher builds the next one.
// Catalog implementations must be safe to call from two threads: the refresher calls Refresh
// while FUSE threads call OpenData.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fs/base/byte_source.h"
#include "fs/base/status.h"

namespace glancefs {

// One image as Glance v2 describes it, reduced to what the file system needs, plus the record
// itself for metadata.json. Immutable once built.
struct ImageRecord {
  std::string id;
  std::optional<std::string> name;  // absent when Glance has null
  std::string status;               // "active", "queued", "saving", "deactivated", ...
  std::string disk_format;          // "raw", "qcow2", "iso", ... (empty when unset)
  std::string container_format;
  bool hidden = false;           // os_hidden
  std::optional<uint64_t> size;  // bytes of image data as stored
  std::optional<uint64_t> virtual_size;
  int64_t created_at = 0;  // seconds since the epoch
  int64_t updated_at = 0;
  // The bytes the backend keeps allocated for the data, when it knows (for st_blocks).
  std::optional<uint64_t> allocated_bytes;

  // Changes whenever the image's bytes may have changed (Glance: the checksum; a local catalog:
  // the data file's identity). Caches and the kernel page cache are keyed or invalidated by it.
  std::string data_version;

  // Every field of the record and every custom property, with its value as text: strings as
  // they are, other JSON values in compact JSON. Null fields are absent. Sorted by key.
  std::map<std::string, std::string> properties;

  // The record as the source returned it, pretty-printed JSON ending in a newline.
  std::string record_json;

  // Same record text and same data: nothing a reader could see has changed.
  bool operator==(const ImageRecord& o) const {
    return record_json == o.record_json && data_version == o.data_version &&
           allocated_bytes == o.allocated_bytes;
  }
};

// The whole catalog at one moment. Records are sorted by id.
struct CatalogSnapshot {
  std::vector<std::shared_ptr<const ImageRecord>> images;

  // Returns the record with this id, or nullptr.
  std::shared_ptr<const ImageRecord> Find(const std::string& id) const;
};

class Catalog {
 public:
  virtual ~Catalog() = default;

  // A short description for logs and the mount table, with no secrets ("dir:/srv/catalog").
  virtual std::string Describe() const = 0;

  // Reads the catalog as it is now. Returns the previous snapshot pointer unchanged when
  // nothing changed, so callers can compare pointers. On failure the caller keeps serving
  // the last good snapshot.
  virtual Result<std::shared_ptr<const CatalogSnapshot>> Refresh() = 0;

  // Opens the data of an image for reading. The source's size() equals *record.size.
  virtual Result<std::shared_ptr<ByteSource>> OpenData(const ImageRecord& record) = 0;

  // How the catalog serves an image (say, which store), as name/value pairs the file system
  // shows as user.glancefs.<name> xattrs of the image. Default: nothing.
  virtual std::vector<std::pair<std::string, std::string>> ImageInfo(const ImageRecord& record) {
    (void)record;
    return {};
  }

  // The catalog's state as name/value pairs, shown as user.glancefs.<name> xattrs of the mount's
  // root (say, whether it is live or a stored copy). Default: nothing.
  virtual std::vector<std::pair<std::string, std::string>> Info() { return {}; }

  // The catalog's own metrics in the Prometheus text format, appended to metrics.prom.
  virtual std::string Metrics() { return {}; }
};

}  // namespace glancefs
