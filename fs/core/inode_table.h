// InodeTable: the map between kernel inode numbers and the nodes of the glancefs tree.
//
// A node is named by a NodeKey (what it is: the images/ directory, image X's directory, version
// V of image X's disk.raw, a by-name entry), never by a pointer, so a node whose image disappeared
// simply stops resolving. Inode numbers are never reused while mounted (a 64-bit counter), so a
// stale handle can never reach a different image.
//
// Lookup counts follow fuse_lowlevel.h: every entry handed to the kernel (lookup reply,
// readdirplus entry) is one Acquire; forget(ino, n) is Forget(ino, n); a node is erased when its
// count reaches zero. The three fixed directories are never erased.
// Thread-safe; one mutex, never held while calling out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "fs/base/mutex.h"
#include "fs/namespace/namespace.h"

namespace glancefs::core {

enum class NodeKind : uint8_t {
  kRoot,
  kImagesDir,
  kByNameDir,
  kImageDir,
  kImageFile,
  kByNameLink,
  // With a cache (FsOptions::cache): queue/, cache/, their entries (name: image id) and the
  // Prometheus file. Their content changes all the time: the kernel must not cache them.
  kQueueDir,
  kCacheDir,
  kQueueEntry,
  kCacheEntry,
  kMetricsFile,
};

struct NodeKey {
  NodeKind kind = NodeKind::kRoot;
  fsns::ImageFile file = fsns::ImageFile::kMetadata;  // kImageFile only
  // image id (kImageDir, kImageFile, kQueueEntry, kCacheEntry) or by-name entry (kByNameLink)
  std::string name;
  // kImageFile only: which content the file has (a hash of the record for metadata.json, the
  // data version for disk views). A new version is a new inode, so the kernel's page cache of
  // an old version, still read through open handles, never mixes with the new one.
  std::string version;

  std::string Encode() const;  // a unique string for hashing
};

inline constexpr uint64_t kRootIno = 1;  // FUSE_ROOT_ID
inline constexpr uint64_t kImagesIno = 2;
inline constexpr uint64_t kByNameIno = 3;

class InodeTable {
 public:
  InodeTable();
  InodeTable(const InodeTable&) = delete;
  InodeTable& operator=(const InodeTable&) = delete;

  // Returns the inode for `key`, creating it, and adds one to its lookup count.
  uint64_t Acquire(const NodeKey& key);
  // Takes n from the lookup count; erases the node at zero. A forget larger than the count is a
  // kernel/glancefs disagreement: logged, and the node erased.
  void Forget(uint64_t ino, uint64_t n);

  std::optional<NodeKey> Get(uint64_t ino) const;
  // The node's kind alone (no copy of its key): for checks on every reply.
  std::optional<NodeKind> KindOf(uint64_t ino) const;
  std::optional<uint64_t> Find(const NodeKey& key) const;
  // Inodes alive now, the three fixed ones included.
  size_t size() const;

 private:
  struct Node {
    NodeKey key;
    uint64_t nlookup = 0;
  };

  mutable Mutex mu_;
  std::unordered_map<uint64_t, Node> nodes_ GUARDED_BY(mu_);
  std::unordered_map<std::string, uint64_t> by_key_ GUARDED_BY(mu_);
  uint64_t next_ino_ GUARDED_BY(mu_) = 16;
};

}  // namespace glancefs::core
