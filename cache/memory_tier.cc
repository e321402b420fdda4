#include "cache/memory_tier.h"

#include <boost/intrusive/list.hpp>
#include <unordered_map>

#include "fs/base/mutex.h"

namespace glancefs::cache {
namespace {

constexpr size_t kShards = 16;

struct KeyHash {
  size_t operator()(const std::pair<uint64_t, uint64_t>& k) const {
    return std::hash<uint64_t>()(k.first * 0x9E3779B97F4A7C15ULL ^ k.second);
  }
};

}  // namespace

struct MemoryTier::Shard {
  struct Entry : boost::intrusive::list_base_hook<> {
    std::pair<uint64_t, uint64_t> key;
    BlockData data;
  };

  mutable Mutex mu;  // a leaf: held for list and map operations only
  uint64_t budget = 0;
  uint64_t bytes GUARDED_BY(mu) = 0;
  boost::intrusive::list<Entry> lru GUARDED_BY(mu);  // front: most recent
  std::unordered_map<std::pair<uint64_t, uint64_t>, std::unique_ptr<Entry>, KeyHash> index
      GUARDED_BY(mu);

  ~Shard() {
    MutexLock lock(&mu);
    lru.clear();  // unlink before the entries (owned by index) go
  }

  void EraseLocked(Entry& e) REQUIRES(mu) {
    lru.erase(lru.iterator_to(e));
    bytes -= e.data->size();
    index.erase(e.key);  // destroys e
  }
};

MemoryTier::MemoryTier(uint64_t budget_bytes) : budget_(budget_bytes) {
  for (size_t i = 0; i < kShards; ++i) {
    shards_.push_back(std::make_unique<Shard>());
    shards_.back()->budget = budget_bytes / kShards;
  }
}

MemoryTier::~MemoryTier() = default;

MemoryTier::Shard& MemoryTier::ShardOf(BlockKey key) {
  return *shards_[KeyHash()({key.image_no, key.index}) % kShards];
}

BlockData MemoryTier::Lookup(BlockKey key) {
  Shard& s = ShardOf(key);
  MutexLock lock(&s.mu);
  auto it = s.index.find({key.image_no, key.index});
  if (it == s.index.end()) return nullptr;
  Shard::Entry& e = *it->second;
  s.lru.erase(s.lru.iterator_to(e));
  s.lru.push_front(e);
  return e.data;
}

void MemoryTier::Insert(BlockKey key, BlockData data) {
  Shard& s = ShardOf(key);
  if (data->size() > s.budget) return;  // would not fit at all
  MutexLock lock(&s.mu);
  auto k = std::make_pair(key.image_no, key.index);
  if (auto it = s.index.find(k); it != s.index.end()) s.EraseLocked(*it->second);
  while (!s.lru.empty() && s.bytes + data->size() > s.budget) s.EraseLocked(s.lru.back());
  auto entry = std::make_unique<Shard::Entry>();
  entry->key = k;
  entry->data = std::move(data);
  s.bytes += entry->data->size();
  s.lru.push_front(*entry);
  s.index.emplace(k, std::move(entry));
}

uint64_t MemoryTier::bytes() const {
  uint64_t total = 0;
  for (const auto& s : shards_) {
    MutexLock lock(&s->mu);
    total += s->bytes;
  }
  return total;
}

}  // namespace glancefs::cache
