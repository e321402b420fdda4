#include "cache/rocks_block_store.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <sys/uio.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include "cache/data_files.h"
#include "fs/base/log.h"

namespace glancefs::cache {
namespace {

constexpr const char* kMetaFamily = "meta";
// One entry per stored block: its length and check value. The bytes are in data/<no>.blk.
constexpr const char* kIndexFamily = "index";
constexpr const char* kLegacyBlocksFamily = "blocks";

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

// Index values: [u32 length][u64 check], little-endian.
constexpr size_t kIndexValue = 12;

class RocksBlockStore final : public BlockStore {
 public:
  RocksBlockStore(std::string dir, rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*> cfs,
                  uint64_t max_locked_bytes)
      : dir_(std::move(dir)),
        db_(db),
        cfs_(std::move(cfs)),
        files_(dir_ + "/data", max_locked_bytes) {
    // Through the WAL but not synced: survives kill -9 (not power loss; a cache). Block bytes
    // are written before their index entry, so an entry never outlives a crash without them
    // being checked.
    write_.sync = false;
  }
  ~RocksBlockStore() override {
    rocksdb::FlushOptions flush;
    db_->Flush(flush, cfs_);
    for (auto* cf : cfs_) db_->DestroyColumnFamilyHandle(cf);
    db_->Close();
    delete db_;
  }

  std::string Describe() const override { return "rocksdb:" + dir_; }

  void SetBlockSize(uint32_t block_size) override { files_.SetBlockSize(block_size); }

  Status GetBlock(BlockKey key, char* dst, size_t len, uint64_t* check) override {
    std::vector<uint64_t> checks;
    size_t total = 0;
    GLANCEFS_RETURN_IF_ERROR(IndexRun(key, {len}, &checks, &total));
    *check = checks[0];
    iovec iov{dst, len};
    return files_.Read(key.image_no, key.index, &iov, 1, len);
  }

  Status GetBlocks(BlockKey first, const std::vector<IoSlice>& dsts,
                   std::vector<uint64_t>* checks) override {
    const size_t n = dsts.size();
    if (n == 0) return Status::Ok();
    std::vector<size_t> lens(n);
    std::vector<iovec> iov(n);
    for (size_t i = 0; i < n; ++i) {
      lens[i] = dsts[i].size;
      iov[i] = {dsts[i].data, dsts[i].size};
    }
    size_t total = 0;
    GLANCEFS_RETURN_IF_ERROR(IndexRun(first, lens, checks, &total));
    return files_.Read(first.image_no, first.index, iov.data(), static_cast<int>(n), total);
  }

  // Mapped and locked (DataFiles::Map); checked by the caller against the index's checks. The
  // map comes first: when it is refused (NotSupported), the caller's GetBlocks is the one index
  // lookup of the run.
  Status MapBlocks(BlockKey first, const std::vector<size_t>& lens,
                   std::vector<BlockData>* blocks, std::vector<uint64_t>* checks) override {
    GLANCEFS_RETURN_IF_ERROR(files_.Map(first.image_no, first.index, lens, blocks));
    size_t total = 0;
    Status index = IndexRun(first, lens, checks, &total);
    if (!index.ok()) blocks->clear();
    return index;
  }

  Status PutBlocks(BlockKey first, const std::vector<BlockPut>& blocks) override {
    if (blocks.empty()) return Status::Ok();
    GLANCEFS_ASSIGN_OR_RETURN(bool written, files_.Write(first.image_no, first.index, blocks));
    if (!written) return Status::Ok();  // the image was deleted meanwhile: dropped
    rocksdb::WriteBatch batch;
    for (size_t i = 0; i < blocks.size(); ++i) {
      char value[kIndexValue];
      uint32_t len = static_cast<uint32_t>(blocks[i].data.size());
      std::memcpy(value, &len, 4);
      std::memcpy(value + 4, &blocks[i].check, 8);
      batch.Put(index(), EncodeKey({first.image_no, first.index + i}),
                rocksdb::Slice(value, sizeof value));
    }
    return FromRocks(db_->Write(write_, &batch), "cache index write");
  }

  Status DeleteImage(uint64_t image_no) override {
    GLANCEFS_RETURN_IF_ERROR(files_.Delete(image_no));
    rocksdb::WriteBatch batch;
    batch.DeleteRange(index(), EncodeKey({image_no, 0}), EncodeKey({image_no + 1, 0}));
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
    return FromRocks(db_->Put(write_, meta(), rocksdb::Slice(key.data(), key.size()),
                              rocksdb::Slice(value.data(), value.size())),
                     "cache record write");
  }
  Status DeleteMeta(std::string_view key) override {
    return FromRocks(db_->Delete(write_, meta(), rocksdb::Slice(key.data(), key.size())),
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
    GLANCEFS_RETURN_IF_ERROR(files_.Sync());
    Status s = FromRocks(db_->SyncWAL(), "cache flush");
    if (!s.ok()) TryResume();
    return s;
  }

  uint64_t DiskBytes() override {
    uint64_t total = 0;
    for (auto* cf : cfs_) {
      uint64_t sst = 0;
      db_->GetIntProperty(cf, rocksdb::DB::Properties::kLiveSstFilesSize, &sst);
      total += sst;
    }
    total += files_.DiskBytes();
    return total;
  }

  // Removes data files no index entry refers to (a crash between a file's first write and its
  // first index entry, or a store started again empty). Called once, before any other use.
  Status RemoveUnreferencedFiles() {
    std::set<uint64_t> live;
    GLANCEFS_RETURN_IF_ERROR(ScanBlocks([&](BlockKey key) { live.insert(key.image_no); }));
    return files_.RemoveAllBut(live);
  }

 private:
  rocksdb::ColumnFamilyHandle* meta() const { return cfs_[1]; }
  rocksdb::ColumnFamilyHandle* index() const { return cfs_[2]; }

  // The index entries of a run: each block's check into *checks (resized), their sum into
  // *total. NotFound or Corruption when an entry is absent or not of the length asked.
  Status IndexRun(BlockKey first, const std::vector<size_t>& lens, std::vector<uint64_t>* checks,
                  size_t* total) {
    const size_t n = lens.size();
    std::vector<std::string> keys(n);
    std::vector<rocksdb::Slice> slices(n);
    for (size_t i = 0; i < n; ++i) {
      keys[i] = EncodeKey({first.image_no, first.index + i});
      slices[i] = keys[i];
    }
    std::vector<rocksdb::PinnableSlice> values(n);
    std::vector<rocksdb::Status> statuses(n);
    db_->MultiGet(read_, index(), n, slices.data(), values.data(), statuses.data(),
                  /*sorted_input=*/true);
    checks->resize(n);
    *total = 0;
    for (size_t i = 0; i < n; ++i) {
      GLANCEFS_RETURN_IF_ERROR(FromRocks(statuses[i], "cache block"));
      if (values[i].size() != kIndexValue) return Status::Corruption("cache index entry of bad size");
      uint32_t stored_len;
      std::memcpy(&stored_len, values[i].data(), 4);
      std::memcpy(&(*checks)[i], values[i].data() + 4, 8);
      if (stored_len != lens[i]) return Status::Corruption("cache block of another length");
      *total += lens[i];
    }
    return Status::Ok();
  }

  // After a background error (a full disk during a flush) RocksDB refuses writes until resumed.
  void TryResume() {
    auto s = db_->Resume();
    if (!s.ok()) LOG_WARNING("cache %s: cannot resume writes: %s", dir_.c_str(), s.ToString().c_str());
  }

  const std::string dir_;
  rocksdb::DB* const db_;
  const std::vector<rocksdb::ColumnFamilyHandle*> cfs_;  // default, meta, index
  rocksdb::ReadOptions read_;
  rocksdb::WriteOptions write_;
  DataFiles files_;  // the block bytes
};

std::vector<rocksdb::ColumnFamilyDescriptor> Families(const RocksOptions& options) {
  rocksdb::ColumnFamilyOptions meta;
  meta.write_buffer_size = 4ULL << 20;
  rocksdb::ColumnFamilyOptions index;
  index.write_buffer_size = options.write_buffer_bytes;
  return {rocksdb::ColumnFamilyDescriptor(rocksdb::kDefaultColumnFamilyName,
                                          rocksdb::ColumnFamilyOptions()),
          rocksdb::ColumnFamilyDescriptor(kMetaFamily, meta),
          rocksdb::ColumnFamilyDescriptor(kIndexFamily, index)};
}

Status Destroy(const std::string& dir, const rocksdb::DBOptions& db_options,
               const std::vector<rocksdb::ColumnFamilyDescriptor>& families) {
  rocksdb::Options options(db_options, families[0].options);
  GLANCEFS_RETURN_IF_ERROR(
      FromRocks(rocksdb::DestroyDB(dir, options, families), "cannot clear the cache " + dir));
  std::error_code ec;
  std::filesystem::remove_all(dir + "/data", ec);
  if (ec) return Status::FromErrno(ec.value(), "cannot clear the cache " + dir + "/data");
  return Status::Ok();
}

}  // namespace

Status DestroyRocksBlockStore(const std::string& dir) {
  return Destroy(dir, rocksdb::DBOptions(), Families(RocksOptions()));
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
  auto families = Families(options);
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(db_options, dir, &existing).ok() &&
      std::find(existing.begin(), existing.end(), kLegacyBlocksFamily) != existing.end()) {
    // Written by glancefs 0.1, which kept block bytes in RocksDB: a cache, so start it again.
    LOG_WARNING("cache %s has an older layout: starting it again empty", dir.c_str());
    std::vector<rocksdb::ColumnFamilyDescriptor> old;
    for (const auto& name : existing) old.emplace_back(name, rocksdb::ColumnFamilyOptions());
    GLANCEFS_RETURN_IF_ERROR(Destroy(dir, db_options, old));
  }
  // A glancefs that was just unmounted may still be flushing and holding the LOCK (a quick
  // remount, a systemd restart): wait for it a while rather than fail.
  const auto lock_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool waited = false;
  for (int attempt = 0;; ++attempt) {
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    auto s = rocksdb::DB::Open(db_options, dir, families, &handles, &db);
    if (s.ok()) {
      auto store = std::make_unique<RocksBlockStore>(dir, db, handles, options.max_locked_bytes);
      GLANCEFS_RETURN_IF_ERROR(store->RemoveUnreferencedFiles());
      return std::unique_ptr<BlockStore>(std::move(store));
    }
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos &&
        std::chrono::steady_clock::now() < lock_deadline) {
      if (!waited) LOG_INFO("cache %s is in use; waiting up to 10 s for it", dir.c_str());
      waited = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      --attempt;
      continue;
    }
    if (attempt > 0 || !s.IsCorruption()) return FromRocks(s, "cache " + dir);
    LOG_ERROR("cache %s is damaged (%s): starting it again empty", dir.c_str(),
              s.ToString().c_str());
    GLANCEFS_RETURN_IF_ERROR(Destroy(dir, db_options, families));
  }
}

}  // namespace glancefs::cache
