#include "fs/core/inode_table.h"

#include "fs/base/log.h"

namespace glancefs::core {

std::string NodeKey::Encode() const {
  std::string s;
  s.reserve(name.size() + version.size() + 3);
  s.push_back(static_cast<char>('0' + static_cast<int>(kind)));
  s.push_back(static_cast<char>('0' + static_cast<int>(file)));
  s += name;
  s.push_back('\0');  // ids never hold a NUL
  s += version;
  return s;
}

InodeTable::InodeTable() {
  MutexLock lock(&mu_);  // no other thread sees the table yet; the analysis wants it held
  auto fixed = [this](uint64_t ino, NodeKind kind) REQUIRES(mu_) {
    NodeKey key{kind, fsns::ImageFile::kMetadata, "", ""};
    by_key_.emplace(key.Encode(), ino);
    nodes_.emplace(ino, Node{std::move(key), 0});
  };
  fixed(kRootIno, NodeKind::kRoot);
  fixed(kImagesIno, NodeKind::kImagesDir);
  fixed(kByNameIno, NodeKind::kByNameDir);
}

uint64_t InodeTable::Acquire(const NodeKey& key) {
  std::string k = key.Encode();
  MutexLock lock(&mu_);
  auto it = by_key_.find(k);
  if (it != by_key_.end()) {
    ++nodes_.at(it->second).nlookup;
    return it->second;
  }
  uint64_t ino = next_ino_++;
  by_key_.emplace(std::move(k), ino);
  nodes_.emplace(ino, Node{key, 1});
  return ino;
}

void InodeTable::Forget(uint64_t ino, uint64_t n) {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) {
    LOG_ERROR("forget of unknown inode %llu", static_cast<unsigned long long>(ino));
    return;
  }
  Node& node = it->second;
  if (n > node.nlookup) {
    LOG_ERROR("forget(%llu, %llu) exceeds lookup count %llu", static_cast<unsigned long long>(ino),
              static_cast<unsigned long long>(n), static_cast<unsigned long long>(node.nlookup));
    n = node.nlookup;
  }
  node.nlookup -= n;
  if (node.nlookup > 0 || ino == kRootIno || ino == kImagesIno || ino == kByNameIno) return;
  by_key_.erase(node.key.Encode());
  nodes_.erase(it);
}

std::optional<NodeKind> InodeTable::KindOf(uint64_t ino) const {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.key.kind;
}

std::optional<NodeKey> InodeTable::Get(uint64_t ino) const {
  MutexLock lock(&mu_);
  auto it = nodes_.find(ino);
  if (it == nodes_.end()) return std::nullopt;
  return it->second.key;
}

std::optional<uint64_t> InodeTable::Find(const NodeKey& key) const {
  std::string k = key.Encode();
  MutexLock lock(&mu_);
  auto it = by_key_.find(k);
  if (it == by_key_.end()) return std::nullopt;
  return it->second;
}

size_t InodeTable::size() const {
  MutexLock lock(&mu_);
  return nodes_.size();
}

}  // namespace glancefs::core
