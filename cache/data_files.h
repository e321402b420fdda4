// DataFiles: the bytes of stored blocks on disk, for RocksBlockStore (which keeps their index).
// One sparse file per image number, DIR/<number as 16 hex digits>.blk, block i at i x block
// size: one copy into the page cache, and evicting an image is one unlink. Files only grow;
// nothing truncates them.
//
// Writes of whole aligned blocks go through O_DIRECT: no copy into the page cache, which on the
// reference machine is both faster (1.3 vs 0.46 GB/s at 256 KiB) and most of the CPU a cold
// read spent in the kernel. Reads go through the page cache, so the kernel's read-ahead serves
// warm sequential readers; or the blocks are mapped (Map), locked, and handed out as they lie
// in the page cache, with no copy at all.
//
// Deleting a number drops later writes to it: a fetch still running for an evicted image
// never recreates its file. Blocks read or mapped before a deletion stay valid.
//
// Thread-safe. Locks: mu_ is a leaf, held for map operations only, never across a system call:
// a file is opened or created with no lock held, so a reader of one image never waits for
// another image's open.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "cache/block.h"
#include "cache/block_store.h"
#include "fs/base/mutex.h"
#include "fs/base/status.h"

namespace glancefs::cache {

class DataFiles {
 public:
  // `max_locked_bytes`: the bytes of mapped runs locked at once (Map); past it, Map refuses.
  // Without CAP_IPC_LOCK, at most half the process's RLIMIT_MEMLOCK.
  DataFiles(std::string dir, uint64_t max_locked_bytes);
  DataFiles(const DataFiles&) = delete;
  DataFiles& operator=(const DataFiles&) = delete;

  // Creates the directory and removes every file whose number is not in `live` (a crash
  // between a file's first write and its first index entry; a store started again empty).
  // Called once, before any other use.
  Status RemoveAllBut(const std::set<uint64_t>& live);
  // Called before any read or write (the store keeps it in its own meta record).
  void SetBlockSize(uint32_t block_size) { block_size_ = block_size; }

  // Reads `total` bytes of image `no` from block `first` on into iov[0..n). Corruption when
  // the file is missing or shorter.
  Status Read(uint64_t no, uint64_t first, const iovec* iov, int n, size_t total)
      EXCLUDES(mu_);
  // Maps blocks first.. of image `no` (lens[i]: each one's length) read-only and locks them in
  // memory: the lock reads every page in, so a page that cannot be read (an I/O error; a file
  // shorter than its index says is refused before it is mapped) fails it here, and reading a locked page later never faults
  // (no SIGBUS) and never reads the disk again after the blocks were checked. (*blocks)[i] views
  // block first + i. A run stays mapped, and locked, until the last of its blocks goes: one
  // unmap per run, since each is a TLB shootdown across the process's CPUs (per block, or per
  // 256 KiB run, they took more time than the copies saved). A run kept by one block locks all
  // of its pages, so the bytes locked at once are capped. NotSupported, nothing mapped, where it
  // cannot: the cap is reached, a block size that is not a multiple of the page size, the map or
  // lock refused (then the caller reads with copies, and Read says what is wrong).
  Status Map(uint64_t no, uint64_t first, const std::vector<size_t>& lens,
             std::vector<BlockData>* blocks) EXCLUDES(mu_);
  // Writes a run of consecutive blocks of image `no` from block `first` on. False (and nothing
  // written) when the number was deleted: the caller must not index them.
  Result<bool> Write(uint64_t no, uint64_t first, const std::vector<BlockPut>& blocks)
      EXCLUDES(mu_);
  // Unlinks the file of `no`; later writes to it are dropped.
  Status Delete(uint64_t no) EXCLUDES(mu_);
  // Makes every earlier Write durable (fdatasync).
  Status Sync() EXCLUDES(mu_);
  // Bytes the files take on disk.
  uint64_t DiskBytes() const;

 private:
  struct File;
  // The file of `no`, opened (and with `create`, created) on first use. Null if it does not
  // exist, or if the number was deleted; a file created for a number deleted meanwhile is
  // removed again.
  Result<std::shared_ptr<File>> Open(uint64_t no, bool create) EXCLUDES(mu_);
  std::string PathOf(uint64_t no) const;
  // A map or lock was refused (errno `err`): NotSupported. A store that keeps meeting a limit
  // (RLIMIT_MEMLOCK without CAP_IPC_LOCK, the process's mappings) stops trying, once said;
  // ENOMEM is a limit when `enomem_is_limit`, else a page that cannot be read (mlock as root).
  Status MapRefused(int err, const char* what, bool enomem_is_limit);

  static constexpr size_t kMaxOpenFiles = 256;
  static constexpr int kMapRefusalsToStop = 64;  // in a row
  const std::string dir_;
  uint32_t block_size_ = 256 << 10;
  std::atomic<bool> direct_ok_{true};
  const bool lock_unlimited_;  // ENOMEM from mlock means an unreadable page, not the limit
  const uint64_t max_locked_;  // within RLIMIT_MEMLOCK when lock_unlimited_ is false
  // Bytes of the runs mapped now; shared with their mappings, which may outlive this.
  const std::shared_ptr<std::atomic<uint64_t>> locked_;
  std::atomic<bool> map_ok_{true};
  std::atomic<int> map_refusals_{0};

  Mutex mu_;
  std::unordered_map<uint64_t, std::shared_ptr<File>> files_ GUARDED_BY(mu_);
  std::unordered_set<uint64_t> deleted_ GUARDED_BY(mu_);
  // Out of files_, not synced yet.
  std::vector<std::shared_ptr<File>> dropped_ GUARDED_BY(mu_);
};

}  // namespace glancefs::cache
