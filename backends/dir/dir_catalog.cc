#include "backends/dir/dir_catalog.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include "backends/common/image_record_json.h"
#include "backends/dir/file_byte_source.h"
#include "fs/base/file_io.h"
#include "fs/base/log.h"

namespace glancefs::backends {
namespace {

constexpr std::string_view kRecordSuffix = ".json";

bool StatAt(int dirfd, const std::string& name, struct stat* st) {
  return ::fstatat(dirfd, name.c_str(), st, 0) == 0;
}

int64_t Nanos(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

}  // namespace

DirCatalog::Stamp DirCatalog::StampOf(const struct stat& st) {
  return Stamp{st.st_ino, st.st_size, Nanos(st.st_mtim), Nanos(st.st_ctim),
               static_cast<uint64_t>(st.st_blocks) * 512};
}

Result<std::unique_ptr<DirCatalog>> DirCatalog::Open(const std::string& path) {
  if (path.empty()) return Status::InvalidArgument("dir: needs a path (dir:/srv/catalog)");
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return Status::FromErrno(errno, "catalog " + path);
  if (!S_ISDIR(st.st_mode))
    return Status::InvalidArgument("catalog " + path + " is not a directory");
  // Absolute, but symlinks are not resolved: swapping a symlinked catalog (ln -sfn) takes effect
  // at the next refresh.
  std::string abs = path;
  if (abs[0] != '/') {
    char cwd[PATH_MAX];
    if (::getcwd(cwd, sizeof cwd) == nullptr) return Status::FromErrno(errno, "getcwd");
    abs = std::string(cwd) + "/" + abs;
  }
  while (abs.size() > 1 && abs.back() == '/') abs.pop_back();
  return std::unique_ptr<DirCatalog>(new DirCatalog(abs));
}

DirCatalog::Entry DirCatalog::Load(int dirfd, const std::string& id, const Stamp& record_stamp,
                                   const Stamp& data_stamp) {
  Entry entry{record_stamp, data_stamp, nullptr};
  std::string file = id + std::string(kRecordSuffix);
  auto text = ReadSmallFileAt(dirfd, file, kMaxRecordBytes);
  if (!text.ok()) {
    LOG_WARNING("catalog %s: %s: skipped: %s", path_.c_str(), file.c_str(),
                text.status().ToString().c_str());
    // An I/O failure (EMFILE, EIO, ...) may pass: forget the stamp so the next refresh retries.
    if (!text.status().IsCorruption()) entry.record_stamp = Stamp();
    return entry;
  }
  auto parsed = ParseImageRecord(*text);
  if (!parsed.ok()) {
    LOG_WARNING("catalog %s: %s: skipped: %s", path_.c_str(), file.c_str(),
                parsed.status().ToString().c_str());
    return entry;
  }
  ImageRecord record = std::move(parsed).value();
  if (record.id != id) {
    LOG_WARNING("catalog %s: %s: skipped: its id is '%s', not '%s'", path_.c_str(), file.c_str(),
                record.id.c_str(), id.c_str());
    return entry;
  }
  if (record.size) {
    if (data_stamp.ino == 0) {
      LOG_WARNING(
          "catalog %s: image %s: data file '%s' is missing; its disk view will fail with EIO",
          path_.c_str(), id.c_str(), id.c_str());
    } else if (static_cast<uint64_t>(data_stamp.size) != *record.size) {
      LOG_WARNING(
          "catalog %s: image %s: data file is %lld bytes but the record says %llu; its "
          "disk view will fail with EIO",
          path_.c_str(), id.c_str(), static_cast<long long>(data_stamp.size),
          static_cast<unsigned long long>(*record.size));
    }
  }
  if (data_stamp.ino != 0) {
    record.allocated_bytes = data_stamp.allocated_bytes;
    record.data_version = std::to_string(data_stamp.ino) + ":" + std::to_string(data_stamp.size) +
                          ":" + std::to_string(data_stamp.mtime_ns) + ":" +
                          std::to_string(data_stamp.ctime_ns);
  }
  entry.record = std::make_shared<const ImageRecord>(std::move(record));
  return entry;
}

void DirCatalog::ScanEntry(int dirfd, const char* d_name,
                           std::unordered_map<std::string, Entry>* next, bool* changed) {
  std::string_view name(d_name);
  if (name.empty() || name[0] == '.' || name.size() <= kRecordSuffix.size() ||
      name.substr(name.size() - kRecordSuffix.size()) != kRecordSuffix) {
    return;
  }
  std::string id(name.substr(0, name.size() - kRecordSuffix.size()));
  if (!IsSafeImageId(id)) {
    LOG_DEBUG("catalog %s: ignoring %s: not an image id", path_.c_str(), d_name);
    return;
  }
  struct stat st;
  if (!StatAt(dirfd, std::string(name), &st)) return;
  if (!S_ISREG(st.st_mode)) {
    if (not_regular_.insert(id).second) {
      LOG_WARNING("catalog %s: ignoring %s: not a regular file", path_.c_str(), d_name);
    }
    return;
  }
  not_regular_.erase(id);
  Stamp record_stamp = StampOf(st);
  Stamp data_stamp;
  if (StatAt(dirfd, id, &st)) {
    data_stamp = StampOf(st);
  }
  auto old = entries_.find(id);
  if (old != entries_.end() && old->second.record_stamp == record_stamp &&
      old->second.data_stamp == data_stamp) {
    next->emplace(id, old->second);  // a copy: entries_ stays intact if the scan fails
    return;
  }
  Entry loaded = Load(dirfd, id, record_stamp, data_stamp);
  if (!loaded.record && loaded.record_stamp == Stamp() && old != entries_.end()) {
    // A transient failure: keep serving what we had, and retry next time.
    loaded.record = old->second.record;
  }
  *changed = *changed || loaded.record != (old != entries_.end() ? old->second.record : nullptr);
  next->emplace(id, std::move(loaded));
}

Result<std::shared_ptr<const CatalogSnapshot>> DirCatalog::Refresh() {
  MutexLock lock(&mu_);
  int dirfd = ::open(path_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirfd < 0) {
    Status s = Status::FromErrno(errno, "catalog " + path_);
    last_refresh_failed_ = true;
    return Status::Unavailable(s.message());
  }
  DIR* dir = ::fdopendir(dirfd);
  if (dir == nullptr) {
    int err = errno;
    ::close(dirfd);
    return Status::Unavailable(Status::FromErrno(err, "catalog " + path_).message());
  }
  std::unordered_map<std::string, Entry> next;
  next.reserve(entries_.size());
  bool changed = false;
  int readdir_errno = 0;
  for (;;) {
    errno = 0;  // readdir signals failure only through errno
    struct dirent* de = ::readdir(dir);
    if (de == nullptr) {
      readdir_errno = errno;
      break;
    }
    ScanEntry(dirfd, de->d_name, &next, &changed);
  }
  ::closedir(dir);
  if (readdir_errno != 0) {
    return Status::Unavailable(Status::FromErrno(readdir_errno, "catalog " + path_).message());
  }
  if (last_refresh_failed_) {
    LOG_INFO("catalog %s: readable again", path_.c_str());
    last_refresh_failed_ = false;
  }
  for (const auto& [id, entry] : entries_) {
    if (entry.record && !next.count(id)) changed = true;  // removed
  }
  entries_ = std::move(next);
  if (changed || !snapshot_) snapshot_ = SnapshotOfEntries();
  return snapshot_;
}

std::shared_ptr<const CatalogSnapshot> DirCatalog::SnapshotOfEntries() const {
  auto snap = std::make_shared<CatalogSnapshot>();
  snap->images.reserve(entries_.size());
  for (const auto& [id, entry] : entries_) {
    if (entry.record) snap->images.push_back(entry.record);
  }
  std::sort(snap->images.begin(), snap->images.end(),
            [](const auto& a, const auto& b) { return a->id < b->id; });
  return snap;
}

Result<std::shared_ptr<ByteSource>> DirCatalog::OpenData(const ImageRecord& record) {
  if (!IsSafeImageId(record.id)) return Status::InvalidArgument("bad image id");
  auto src = FileByteSource::Open(path_ + "/" + record.id, record.size, "image " + record.id);
  if (!src.ok()) {
    // A missing data file is a broken catalog, not a missing image: EIO, not ENOENT.
    if (src.status().IsNotFound()) return Status::IOError(src.status().message());
    return src.status();
  }
  return std::shared_ptr<ByteSource>(std::move(src).value());
}

}  // namespace glancefs::backends
