// FileSystem: every glancefs operation, in glancefs terms (Status, struct stat), with no FUSE.
//
// fs/fuse/lowlevel_ops.cc is a thin adapter that turns FUSE requests into these calls and their
// results into replies. Keeping FUSE out makes the semantics testable without a mount.
//
// Threading: all methods may be called concurrently from FUSE worker threads; Refresh is called
// by one refresher thread. The current Namespace is swapped atomically (under ns_mu_), so each
// operation sees one consistent snapshot. Open files keep their image's record and data source
// alive (shared_ptr) whatever the catalog does meanwhile.
// Lock order: ns_mu_ and the InodeTable's mutex are leaves; neither is held while calling the
// catalog.
#pragma once

#include <sys/stat.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fs/base/mutex.h"
#include "fs/base/cache_admin.h"
#include "fs/base/catalog.h"
#include "fs/core/inode_table.h"
#include "fs/format/inspect.h"
#include "fs/namespace/namespace.h"

namespace glancefs::core {

struct FsOptions {
  uid_t uid = 0;  // owner of every node; tools/glancefs sets the mounting user
  gid_t gid = 0;
  // st_blksize of disk files: what cp, rsync and dd take as the preferred I/O size.
  // Default: 1 MiB, the largest read FUSE passes in one request.
  uint32_t disk_blksize = 1 << 20;
  // The block cache, or null: with one, the root also has queue/, cache/ and metrics.prom.
  CacheAdmin* cache = nullptr;
  // Serve an image's data views only when its signature is verified (needs the cache, which
  // checks it; -o require_signature). Others answer EACCES; metadata.json stays readable.
  bool require_signature = false;
};

inline constexpr const char* kMetricsFileName = "metrics.prom";

// One entry of a directory as listed by OpenDir.
struct DirItem {
  std::string name;
  NodeKey key;
  mode_t type = 0;  // S_IFDIR, S_IFREG or S_IFLNK
};

// What an open file reads from. Owned by the FUSE file handle.
struct OpenFile {
  fsns::ImageFile file = fsns::ImageFile::kMetadata;
  std::shared_ptr<const ImageRecord> record;
  std::shared_ptr<ByteSource> source;  // disk views only
  // Files whose content is made at open (metrics.prom; empty for queue/ and cache/ entries).
  bool synthetic = false;
  std::string text;
  bool zeros = false;  // queue/ and cache/ entries: `size` bytes of hole
  uint64_t size = 0;
};

// A cache entry the kernel must drop after a catalog change.
struct Invalidation {
  enum class Kind {
    kEntry,       // the name `name` in directory `ino` (positive or negative dentry)
    kInode,       // attributes and cached data of `ino`
    kInodeAttrs,  // attributes (and directory listing) of `ino`, keeping cached file data
  };
  Kind kind;
  uint64_t ino;
  std::string name;
};

class FileSystem {
 public:
  // `catalog` must outlive the FileSystem.
  FileSystem(Catalog* catalog, FsOptions options);
  FileSystem(const FileSystem&) = delete;
  FileSystem& operator=(const FileSystem&) = delete;

  // Reads the catalog. On success swaps in the new snapshot and appends to *invalidations what
  // the kernel must forget; on failure keeps the last good snapshot and returns the error.
  Status Refresh(std::vector<Invalidation>* invalidations);

  // Each successful Lookup adds one to the inode's lookup count (st_ino of the result).
  Result<struct stat> Lookup(uint64_t parent, std::string_view name);
  void Forget(uint64_t ino, uint64_t n) { inodes_.Forget(ino, n); }
  Result<struct stat> GetAttr(uint64_t ino);
  Result<std::string> ReadLink(uint64_t ino);

  // The entries of a directory, "." and ".." first, fixed at the time of the call.
  Result<std::vector<DirItem>> OpenDir(uint64_t ino);
  // For readdirplus: the attributes of `item`, adding one to its lookup count.
  // NotFound if the item vanished since OpenDir.
  Result<struct stat> AcquireDirItem(uint64_t dir_ino, const DirItem& item);
  // For plain readdir: the inode number if the node has one, else a stable synthetic number.
  uint64_t PeekIno(uint64_t dir_ino, const DirItem& item) const;

  // Opens a file for reading; any write access is ReadOnly (EROFS), except on queue/ and
  // cache/ entries, which open for writing (touch) and read as empty.
  Result<std::unique_ptr<OpenFile>> Open(uint64_t ino, int flags);

  // queue/: creating <id> (or a by-name entry) queues the image for pre-fetch; the result is
  // acquired like a Lookup. Anywhere else: ReadOnly.
  Result<struct stat> Create(uint64_t parent, std::string_view name);
  // queue/<x>: dequeue; cache/<x>: evict. Anywhere else: ReadOnly.
  Status Unlink(uint64_t parent, std::string_view name);
  // Accepted (and ignored: touch sets times) on queue/ and cache/ entries; ReadOnly elsewhere.
  Result<struct stat> SetAttr(uint64_t ino);
  // Whether the kernel must not cache this node's attributes, entries or listing.
  bool IsVolatile(uint64_t ino) const;
  // Reads up to n bytes at off; returns a view of the bytes, in `scratch` (of at least n bytes)
  // or in the open file itself. Empty at or past the end.
  Result<std::string_view> Read(OpenFile& file, uint64_t off, size_t n, char* scratch);
  // The same bytes as pieces appended to *out: straight from the block cache's buffers when
  // the file's source keeps them (no copy), else one piece in `scratch`.
  Status ReadPieces(OpenFile& file, uint64_t off, size_t n, char* scratch,
                    std::vector<PinnedSlice>* out);
  // SEEK_DATA (want_data) or SEEK_HOLE from off. OutOfRange (ENXIO) at or past the end.
  Result<uint64_t> Seek(OpenFile& file, uint64_t off, bool want_data);

  // nullopt: no such attribute (ENODATA).
  Result<std::optional<std::string>> GetXattr(uint64_t ino, std::string_view name);
  // The names, each followed by a NUL, as listxattr(2) returns them.
  Result<std::string> ListXattr(uint64_t ino);

  // metrics.prom, in the Prometheus text format: the cache's metrics, the catalog's state, then
  // the catalog's own (sources). Also what -o metrics_listen serves.
  std::string MetricsText() const;
  // One line for a service manager's status: images, the catalog's state, the cache's fill.
  std::string StatusLine() const;

  size_t inode_count() const { return inodes_.size(); }
  // Counts namespace swaps: a directory handle older than this may list a stale tree.
  uint64_t generation() const {
    MutexLock lock(&ns_mu_);
    return generation_;
  }

 private:
  std::shared_ptr<const fsns::Namespace> ns() const;
  Result<NodeKey> KeyOf(uint64_t ino) const;
  // Resolves a key in the current namespace and acquires it, consistently with refreshes.
  Result<struct stat> AcquireStable(
      const std::function<Result<NodeKey>(const fsns::Namespace&)>& key_of);
  // The attributes of `key` in `ns`, NotFound if it does not exist there. st_ino is left 0.
  Result<struct stat> StatOf(const NodeKey& key, const fsns::Namespace& ns);
  // StatOf's cases with more to do than set a mode: fill `st` and `mtime` or say NotFound.
  Status CacheEntryStat(const NodeKey& key, struct stat* st, int64_t* mtime);
  Status ImageFileStat(const NodeKey& key, const fsns::Namespace& ns, struct stat* st,
                       int64_t* mtime);
  Result<NodeKey> Child(const NodeKey& parent, std::string_view name, const fsns::Namespace& ns);
  // Properties shown as user.glance.* on `key`, or nullptr if it has none.
  std::shared_ptr<const ImageRecord> XattrImage(const NodeKey& key,
                                                const fsns::Namespace& ns) const;
  std::vector<std::pair<std::string, std::string>> RootXattrs() const;

  // user.glancefs.* of an image (format verdict).
  std::vector<std::pair<std::string, std::string>> ImageXattrs(const ImageRecord& image);
  // user.glancefs.signature: the cache's verdict (`entry`), else "unsigned" or "not checked yet".
  static std::string SignatureState(const ImageRecord& image,
                                    const std::optional<CacheEntry>& entry);
  // The image `name` in queue/ or cache/ names: an id, or a by-name entry.
  std::shared_ptr<const ImageRecord> ResolveImage(std::string_view name, const fsns::Namespace& ns);
  // The cache's view of image `id` in queue/ (queued only) or cache/ (cached only).
  std::optional<CacheEntry> CacheEntryOf(NodeKind kind, const std::string& id) const;

  // The verdict on an image's bytes, computed once per image version (it reads the header).
  Result<format::Verdict> VerdictFor(const ImageRecord& image);
  // Whether `image` shows `file`: its record allows it and its bytes are not refused.
  bool ShowsFile(const ImageRecord& image, fsns::ImageFile file);
  // The size of a disk view at stat time (a synthesized qcow2 view is opened once to learn it).
  uint64_t ViewSize(const ImageRecord& image, fsns::ImageFile file);
  // format.json: the verdict and what the decoder learned.
  static std::string FormatJson(const format::Verdict& verdict);
  // OK when require_signature lets `image`'s data be served; PermissionDenied saying why not.
  Status RequireSignature(const ImageRecord& image);
  // `cached_only`: the data from the cache alone (CacheAdmin::OpenCachedOnly).
  Result<std::shared_ptr<ByteSource>> OpenView(const ImageRecord& image, fsns::ImageFile file,
                                               bool cached_only = false);
  void Diff(const fsns::Namespace& old_ns, const fsns::Namespace& new_ns,
            std::vector<Invalidation>* out) const;
  // Diff's two merges (images/, by-name/). Whether the directory's listing changed.
  bool DiffImages(const fsns::Namespace& old_ns, const fsns::Namespace& new_ns,
                  std::vector<Invalidation>* out) const;
  bool DiffByName(const fsns::Namespace& old_ns, const fsns::Namespace& new_ns,
                  std::vector<Invalidation>* out) const;

  Catalog* const catalog_;
  const FsOptions options_;
  InodeTable inodes_;

  mutable Mutex ns_mu_;                   // guards ns_ (the pointer, not the Namespace)
  std::shared_ptr<const fsns::Namespace> ns_ GUARDED_BY(ns_mu_);
  uint64_t generation_ GUARDED_BY(ns_mu_) = 0;

  struct CachedVerdict {
    std::string data_version;
    format::Verdict verdict;
    std::optional<uint64_t> qcow2_size;  // of a synthesized disk.qcow2, once opened
  };
  Mutex verdict_mu_;                                    // guards verdicts_; a leaf
  std::unordered_map<std::string, CachedVerdict> verdicts_ GUARDED_BY(verdict_mu_);  // by image id

  mutable Mutex refresh_mu_;  // guards the three below
  int64_t last_refresh_ GUARDED_BY(refresh_mu_) = 0;       // time of the last good refresh
  std::string refresh_error_ GUARDED_BY(refresh_mu_);      // last error, empty if none
  uint64_t refresh_failures_ GUARDED_BY(refresh_mu_) = 0;
};

}  // namespace glancefs::core
