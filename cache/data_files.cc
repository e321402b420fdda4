#include "cache/data_files.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "fs/base/file_io.h"
#include "fs/base/log.h"

namespace glancefs::cache {
namespace {

constexpr size_t kDirectAlign = 4096;

std::string FileName(uint64_t no) {
  char name[32];
  std::snprintf(name, sizeof name, "%016llx.blk", static_cast<unsigned long long>(no));
  return name;
}

// Root (CAP_IPC_LOCK, as the service runs) or no RLIMIT_MEMLOCK.
bool LockUnlimited() {
  struct rlimit r;
  return ::geteuid() == 0 ||
         (::getrlimit(RLIMIT_MEMLOCK, &r) == 0 && r.rlim_cur == RLIM_INFINITY);
}

// What this process may lock: `wanted`, or half its RLIMIT_MEMLOCK (8 MiB for a desktop user
// by default; the other half left to the rest of the process) if that is less.
uint64_t LockCap(uint64_t wanted, bool unlimited) {
  struct rlimit r;
  if (unlimited || ::getrlimit(RLIMIT_MEMLOCK, &r) != 0) return wanted;
  return std::min<uint64_t>(wanted, r.rlim_cur / 2);
}

}  // namespace

// An open data file; closed when the last user lets go (a read may outlive an eviction).
// Written through `direct` (O_DIRECT) where it can be, read through `fd`.
struct DataFiles::File {
  File(int fd, int direct) : fd(fd), direct(direct) {}
  ~File() {
    ::close(fd);
    if (direct >= 0) ::close(direct);
  }
  const int fd;
  const int direct;  // -1: the file system refuses O_DIRECT
};

DataFiles::DataFiles(std::string dir, uint64_t max_locked_bytes)
    : dir_(std::move(dir)),
      lock_unlimited_(LockUnlimited()),
      max_locked_(LockCap(max_locked_bytes, lock_unlimited_)),
      locked_(std::make_shared<std::atomic<uint64_t>>(0)) {}

std::string DataFiles::PathOf(uint64_t no) const { return dir_ + "/" + FileName(no); }

Status DataFiles::RemoveAllBut(const std::set<uint64_t>& live) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return Status::FromErrno(ec.value(), "cache data directory " + dir_);
  for (const auto& f : std::filesystem::directory_iterator(dir_, ec)) {
    std::string name = f.path().filename().string();
    char* end = nullptr;
    uint64_t no = std::strtoull(name.c_str(), &end, 16);
    if (name == FileName(no) && live.count(no)) continue;
    LOG_DEBUG("cache: removing unreferenced %s", f.path().c_str());
    std::filesystem::remove_all(f.path(), ec);
  }
  return Status::Ok();
}

Status DataFiles::Read(uint64_t no, uint64_t first, const iovec* iov, int n, size_t total) {
  GLANCEFS_ASSIGN_OR_RETURN(auto file, Open(no, false));
  if (!file) return Status::Corruption("cache data file is missing");
  ssize_t got = ReadvFullyAt(file->fd, iov, n, first * block_size_);
  if (got < 0) return Status::FromErrno(static_cast<int>(-got), "cache data file");
  if (static_cast<size_t>(got) < total) return Status::Corruption("cache data file is short");
  return Status::Ok();
}

Status DataFiles::Map(uint64_t no, uint64_t first, const std::vector<size_t>& lens,
                      std::vector<BlockData>* blocks) {
  static const size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  if (lens.empty() || block_size_ % page != 0 || !map_ok_.load(std::memory_order_relaxed)) {
    return Status::NotSupported("no mapped blocks");
  }
  size_t total = 0;
  for (size_t len : lens) total += len;
  GLANCEFS_ASSIGN_OR_RETURN(auto file, Open(no, false));
  if (!file) return Status::Corruption("cache data file is missing");
  // A mapping past the file's end faults (SIGBUS) when read. The lock below would fail there
  // too, but AddressSanitizer makes mlock a no-op, so the size is checked first, in every build.
  const uint64_t off = first * block_size_;
  struct stat st;
  if (::fstat(file->fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < off + total) {
    return Status::NotSupported("cache data file is shorter than its index");
  }
  std::shared_ptr<std::atomic<uint64_t>> locked = locked_;
  if (locked->fetch_add(total) + total > max_locked_) {
    locked->fetch_sub(total);
    return Status::NotSupported("as many cache blocks locked as allowed");
  }
  void* p = ::mmap(nullptr, total, PROT_READ, MAP_SHARED, file->fd, static_cast<off_t>(off));
  if (p == MAP_FAILED) {
    locked->fetch_sub(total);
    return MapRefused(errno, "map", /*enomem_is_limit=*/true);
  }
  if (::mlock(p, total) != 0) {
    const int err = errno;
    ::munmap(p, total);
    locked->fetch_sub(total);
    return MapRefused(err, "lock", /*enomem_is_limit=*/!lock_unlimited_);
  }
  map_refusals_.store(0, std::memory_order_relaxed);
  std::shared_ptr<const void> mapping(p, [total, locked](void* q) {
    ::munmap(q, total);  // unlocks it too
    locked->fetch_sub(total);
  });
  blocks->resize(lens.size());
  const char* at = static_cast<const char*>(p);
  for (size_t i = 0; i < lens.size(); ++i) {
    (*blocks)[i] = Block::Mapped(at, lens[i], mapping);
    at += lens[i];
  }
  return Status::Ok();
}

Status DataFiles::MapRefused(int err, const char* what, bool enomem_is_limit) {
  const bool limit = err == EPERM || err == EAGAIN || err == ENFILE ||
                     (err == ENOMEM && enomem_is_limit);
  if (limit && map_refusals_.fetch_add(1, std::memory_order_relaxed) + 1 == kMapRefusalsToStop &&
      map_ok_.exchange(false)) {
    LOG_INFO("cache %s: cannot %s blocks in memory (%s); reading them with copies from now on",
             dir_.c_str(), what, std::strerror(err));
  }
  return Status::NotSupported(std::string("cannot ") + what + " cache blocks: " +
                              std::strerror(err));
}

Result<bool> DataFiles::Write(uint64_t no, uint64_t first, const std::vector<BlockPut>& blocks) {
  GLANCEFS_ASSIGN_OR_RETURN(auto file, Open(no, true));
  if (!file) return false;  // the number was deleted meanwhile: dropped
  // The run is contiguous in the file: its aligned prefix goes in one O_DIRECT pwritev, the
  // rest (an image's short last block, or a file system without O_DIRECT) through the page
  // cache.
  const uint64_t off = first * block_size_;
  size_t direct = 0;
  if (file->direct >= 0 && direct_ok_.load(std::memory_order_relaxed) &&
      off % kDirectAlign == 0) {
    while (direct < blocks.size() && direct < IOV_MAX &&
           reinterpret_cast<uintptr_t>(blocks[direct].data.data()) % kDirectAlign == 0 &&
           blocks[direct].data.size() % kDirectAlign == 0) {
      ++direct;
    }
  }
  size_t done = 0;  // blocks written
  uint64_t at = off;
  if (direct > 0) {
    std::vector<iovec> iov(direct);
    size_t total = 0;
    for (size_t i = 0; i < direct; ++i) {
      iov[i] = {const_cast<char*>(blocks[i].data.data()), blocks[i].data.size()};
      total += blocks[i].data.size();
    }
    ssize_t put =
        ::pwritev(file->direct, iov.data(), static_cast<int>(direct), static_cast<off_t>(off));
    if (put == static_cast<ssize_t>(total)) {
      done = direct;
      at += total;
    } else if (put < 0 && errno == EINVAL && direct_ok_.exchange(false)) {
      LOG_WARNING("cache %s: O_DIRECT writes refused; writing through the page cache",
                  dir_.c_str());
    }
    // Anything else (a short or failed write): rewritten below through the page cache,
    // which reports the error if it is real (ENOSPC).
  }
  for (size_t i = done; i < blocks.size(); ++i) {
    if (int err = WriteFullyAt(file->fd, blocks[i].data.data(), blocks[i].data.size(), at)) {
      return Status::FromErrno(err, "cache block write");
    }
    at += blocks[i].data.size();
  }
  return true;
}

Status DataFiles::Delete(uint64_t no) {
  {
    MutexLock lock(&mu_);
    deleted_.insert(no);
    files_.erase(no);
  }
  std::string path = PathOf(no);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Status::FromErrno(errno, "cache eviction of " + path);
  }
  return Status::Ok();
}

Status DataFiles::Sync() {
  std::vector<std::shared_ptr<File>> files;
  {
    MutexLock lock(&mu_);
    files.swap(dropped_);
    for (const auto& [no, f] : files_) files.push_back(f);
  }
  for (const auto& f : files) {
    if (::fdatasync(f->fd) != 0) return Status::FromErrno(errno, "cache flush");
  }
  return Status::Ok();
}

uint64_t DataFiles::DiskBytes() const {
  uint64_t total = 0;
  std::error_code ec;
  for (const auto& f : std::filesystem::directory_iterator(dir_, ec)) {
    struct stat st;
    if (::stat(f.path().c_str(), &st) == 0) total += static_cast<uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

Result<std::shared_ptr<DataFiles::File>> DataFiles::Open(uint64_t no, bool create) {
  {
    MutexLock lock(&mu_);
    if (deleted_.count(no)) return std::shared_ptr<File>();
    if (auto it = files_.find(no); it != files_.end()) return it->second;
  }
  std::string path = PathOf(no);
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT : 0), 0600);
  if (fd < 0) {
    if (errno == ENOENT && !create) return std::shared_ptr<File>();
    return Status::FromErrno(errno, "cache data file " + path);
  }
  int direct = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_DIRECT);
  auto file = std::make_shared<File>(fd, direct);
  MutexLock lock(&mu_);
  if (deleted_.count(no)) {
    if (create) ::unlink(path.c_str());
    return std::shared_ptr<File>();
  }
  if (auto it = files_.find(no); it != files_.end()) return it->second;  // raced
  if (files_.size() >= kMaxOpenFiles) {
    // Reopened on demand; kept open until the next Sync, which must still reach them.
    for (auto& [n, f] : files_) dropped_.push_back(std::move(f));
    files_.clear();
  }
  files_[no] = file;
  return file;
}

}  // namespace glancefs::cache
