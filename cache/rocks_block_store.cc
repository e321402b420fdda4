#include "cache/rocks_block_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <cstring>
#include <vector>

#include "fs/base/log.h"

namespace glancefs::cache {
namespace {

constexpr const char* kBlocksFamily = "blocks";
constexpr const char* kMetaFamily = "meta";
// One empty-valued key per stored block, written in the same batch as the block: scanning it
// at startup never reads the blob files (a RocksDB 7 iterator loads each value it passes).
constexpr const char* kIndexFamily = "index";

// Block keys: [u64 image number][u64 block index], both big-endian, so they sort by image.
std::string EncodeKey(BlockKey key) {
  char buf[16];
  for (int i = 0; i < 8; ++i) {
    buf[i] = static_cast<char>(key.image_no >> (56 - 8 * i));
    buf[8 + i] = static_cast<char>(key.index >> (56 - 8 * i));
  }
  return std::string(buf, sizeof buf);
}

bool DecodeKey(const rocksdb::Slice& s, BlockKey* key) {
  if (s.size() != 16) return false;
  key->image_no = key->index = 0;
  for (int i = 0; i < 8; ++i) {
    key->image_no = (key->image_no << 8) | static_cast<unsigned char>(s[i]);
    key->index = (key->index << 8) | static_cast<unsigned char>(s[8 + i]);
  }
  return true;
}

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  if (s.IsNotFound()) return Status::NotFound(what);
  if (s.IsCorruption()) return Status::Corruption(what + ": " + s.ToString());
  if (s.IsNoSpace()) return Status::IOError(what + ": no space left on the cache disk");
  return Status::IOError(what + ": " + s.ToString());
}

class RocksBlockStore final : public BlockStore {
 public:
  RocksBlockStore(std::string dir, rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> cfs)
      : dir_(std::move(dir)), db_(db), cfs_(std::move(cfs)) {
    blocks_write_.disableWAL = true;  // values validate on read; Sync flushes (atomically)
    meta_write_.sync = false;         // the WAL survives kill -9 (not power loss; a cache)
  }
  ~RocksBlockStore() override {
    rocksdb::FlushOptions flush;
    db_->Flush(flush, cfs_);  // blocks were written without the WAL
    for (auto* cf : cfs_) db_->DestroyColumnFamilyHandle(cf);
    db_->Close();
    delete db_;
  }

  std::string Describe() const override { return "rocksdb:" + dir_; }

  Status GetBlock(BlockKey key, std::string* value) override {
    return FromRocks(db_->Get(read_, blocks(), EncodeKey(key), value), "cache block");
  }
  Status PutBlock(BlockKey key, std::string_view value) override {
    std::string k = EncodeKey(key);
    rocksdb::WriteBatch batch;
    batch.Put(blocks(), k, rocksdb::Slice(value.data(), value.size()));
    batch.Put(index(), k, rocksdb::Slice());
    return FromRocks(db_->Write(blocks_write_, &batch), "cache block write");
  }
  Status DeleteImage(uint64_t image_no) override {
    std::string from = EncodeKey({image_no, 0});
    std::string to = EncodeKey({image_no + 1, 0});
    rocksdb::WriteBatch batch;
    batch.DeleteRange(blocks(), from, to);
    batch.DeleteRange(index(), from, to);
    rocksdb::WriteOptions w;  // with the WAL: a deletion must not come back after a crash
    return FromRocks(db_->Write(w, &batch), "cache eviction");
  }
  Status ScanBlocks(const std::function<void(BlockKey)>& fn) override {
    rocksdb::ReadOptions r;
    r.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(r, index()));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      BlockKey key;
      if (!DecodeKey(it->key(), &key)) continue;
      fn(key);
    }
    return FromRocks(it->status(), "cache scan");
  }
  Result<std::optional<std::string>> GetMeta(std::string_view key) override {
    std::string value;
    auto s = db_->Get(read_, meta(), rocksdb::Slice(key.data(), key.size()), &value);
    if (s.IsNotFound()) return std::optional<std::string>();
    if (!s.ok()) return FromRocks(s, "cache record");
    return std::optional<std::string>(std::move(value));
  }
  Status PutMeta(std::string_view key, std::string_view value) override {
    return FromRocks(db_->Put(meta_write_, meta(), rocksdb::Slice(key.data(), key.size()),
                              rocksdb::Slice(value.data(), value.size())),
                     "cache record write");
  }
  Status DeleteMeta(std::string_view key) override {
    return FromRocks(db_->Delete(meta_write_, meta(), rocksdb::Slice(key.data(), key.size())),
                     "cache record delete");
  }
  Status ScanMeta(std::string_view prefix,
                  const std::function<void(std::string_view, std::string_view)>& fn) override {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(read_, meta()));
    rocksdb::Slice p(prefix.data(), prefix.size());
    for (it->Seek(p); it->Valid() && it->key().starts_with(p); it->Next()) {
      fn(std::string_view(it->key().data(), it->key().size()),
         std::string_view(it->value().data(), it->value().size()));
    }
    return FromRocks(it->status(), "cache record scan");
  }
  Status Sync() override {
    rocksdb::FlushOptions flush;
    Status s = FromRocks(db_->Flush(flush, {blocks(), index()}), "cache flush");
    if (!s.ok()) TryResume();
    return s;
  }
  uint64_t DiskBytes() override {
    uint64_t sst = 0, blob = 0;
    db_->GetIntProperty(blocks(), rocksdb::DB::Properties::kLiveSstFilesSize, &sst);
    db_->GetIntProperty(blocks(), rocksdb::DB::Properties::kTotalBlobFileSize, &blob);
    return sst + blob;
  }

 private:
  rocksdb::ColumnFamilyHandle* blocks() const { return cfs_[1]; }
  rocksdb::ColumnFamilyHandle* meta() const { return cfs_[2]; }
  rocksdb::ColumnFamilyHandle* index() const { return cfs_[3]; }
  // After a background error (a full disk during a flush) RocksDB refuses writes until resumed.
  void TryResume() {
    auto s = db_->Resume();
    if (!s.ok()) LOG_WARNING("cache %s: cannot resume writes: %s", dir_.c_str(), s.ToString().c_str());
  }

  const std::string dir_;
  rocksdb::DB* const db_;
  const std::vector<rocksdb::ColumnFamilyHandle*> cfs_;  // default, blocks, meta, index
  rocksdb::ReadOptions read_;
  rocksdb::WriteOptions blocks_write_;
  rocksdb::WriteOptions meta_write_;
};

std::vector<rocksdb::ColumnFamilyDescriptor> Families(const RocksOptions& options) {
  rocksdb::ColumnFamilyOptions blocks;
  blocks.enable_blob_files = true;  // integrated BlobDB: block values go to blob files
  blocks.min_blob_size = 1024;
  blocks.blob_file_size = 256ULL << 20;
  blocks.blob_compression_type = rocksdb::kNoCompression;  // image data; qcow2 compresses itself
  blocks.enable_blob_garbage_collection = true;
  blocks.blob_garbage_collection_age_cutoff = 0.5;
  blocks.write_buffer_size = options.write_buffer_bytes;
  blocks.max_write_buffer_number = 2;
  blocks.compression = rocksdb::kNoCompression;
  rocksdb::ColumnFamilyOptions meta;
  meta.write_buffer_size = 4ULL << 20;
  rocksdb::ColumnFamilyOptions index;
  index.write_buffer_size = 4ULL << 20;
  return {rocksdb::ColumnFamilyDescriptor(rocksdb::kDefaultColumnFamilyName,
                                          rocksdb::ColumnFamilyOptions()),
          rocksdb::ColumnFamilyDescriptor(kBlocksFamily, blocks),
          rocksdb::ColumnFamilyDescriptor(kMetaFamily, meta),
          rocksdb::ColumnFamilyDescriptor(kIndexFamily, index)};
}

}  // namespace

Status DestroyRocksBlockStore(const std::string& dir) {
  auto families = Families(RocksOptions());
  rocksdb::Options options(rocksdb::DBOptions(), families[1].options);
  return FromRocks(rocksdb::DestroyDB(dir, options, families), "cannot clear the cache " + dir);
}

Result<std::unique_ptr<BlockStore>> OpenRocksBlockStore(const std::string& dir,
                                                        const RocksOptions& options) {
  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 2;
  db_options.max_log_file_size = 1 << 20;
  db_options.info_log_level = rocksdb::WARN_LEVEL;
  db_options.max_total_wal_size = 64ULL << 20;
  // blocks and index are written without the WAL: flush them together, so a crash never
  // leaves an index entry without its block (or the reverse).
  db_options.atomic_flush = true;
  auto families = Families(options);
  for (int attempt = 0;; ++attempt) {
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    auto s = rocksdb::DB::Open(db_options, dir, families, &handles, &db);
    if (s.ok()) {
      return std::unique_ptr<BlockStore>(std::make_unique<RocksBlockStore>(dir, db, handles));
    }
    if (attempt > 0 || !s.IsCorruption()) return FromRocks(s, "cache " + dir);
    LOG_ERROR("cache %s is damaged (%s): starting it again empty", dir.c_str(),
              s.ToString().c_str());
    rocksdb::Options destroy(db_options, families[1].options);
    if (auto d = rocksdb::DestroyDB(dir, destroy, families); !d.ok()) {
      return FromRocks(d, "cannot clear the damaged cache " + dir);
    }
  }
}

}  // namespace glancefs::cache
