#include "fs/core/file_system.h"

#include <fcntl.h>

#include <algorithm>
#include <cstring>
#include <ctime>

#include "fs/base/hash.h"
#include "fs/base/log.h"
#include "fs/core/node_keys.h"
#include "fs/format/views.h"
#include "nlohmann/json.hpp"

namespace glancefs::core {

using fsns::ImageFile;
using fsns::Namespace;

FileSystem::FileSystem(Catalog* catalog, FsOptions options)
    : catalog_(catalog),
      options_(options),
      ns_(std::make_shared<Namespace>(std::make_shared<CatalogSnapshot>())) {}

std::shared_ptr<const Namespace> FileSystem::ns() const {
  MutexLock lock(&ns_mu_);
  return ns_;
}

Result<NodeKey> FileSystem::KeyOf(uint64_t ino) const {
  auto key = inodes_.Get(ino);
  if (!key) return Status::NotFound("no inode " + std::to_string(ino));
  return *key;
}

Result<format::Verdict> FileSystem::VerdictFor(const ImageRecord& image) {
  {
    MutexLock lock(&verdict_mu_);
    auto it = verdicts_.find(image.id);
    if (it != verdicts_.end() && it->second.data_version == image.data_version) {
      return it->second.verdict;
    }
  }
  // With require_signature no unchecked byte is fetched, not even to probe: the verdict waits
  // for the check (Open asks again once the image is verified and in the cache).
  GLANCEFS_ASSIGN_OR_RETURN(auto source, options_.require_signature && options_.cache
                                             ? options_.cache->OpenCachedOnly(image)
                                             : catalog_->OpenData(image));
  GLANCEFS_ASSIGN_OR_RETURN(
      format::Verdict verdict,
      format::Inspect(std::move(source), image.disk_format, image.container_format));
  if (!verdict.refused.empty()) {
    LOG_WARNING("image %s: disk views refused: %s", image.id.c_str(), verdict.refused.c_str());
  }
  MutexLock lock(&verdict_mu_);
  verdicts_[image.id] = CachedVerdict{image.data_version, verdict, std::nullopt};
  return verdict;
}

bool FileSystem::ShowsFile(const ImageRecord& image, ImageFile file) {
  if (!Shows(image, file)) return false;
  if (file == ImageFile::kMetadata) return true;
  auto verdict = VerdictFor(image);
  if (file == ImageFile::kFormat) return verdict.ok();
  // Unknown (the data cannot be read now): show the view; opening it reports the error.
  return !verdict.ok() || verdict->refused.empty();
}

namespace {

format::View ViewOf(ImageFile file) {
  return file == ImageFile::kDiskQcow2 ? format::View::kQcow2 : format::View::kRaw;
}

}  // namespace

uint64_t FileSystem::ViewSize(const ImageRecord& image, ImageFile file) {
  if (format::ViewIsStored(ViewOf(file), image.disk_format, image.container_format)) {
    return *image.size;
  }
  auto verdict = VerdictFor(image);
  if (file == ImageFile::kDiskRaw) {
    return verdict.ok() && verdict->virtual_size ? *verdict->virtual_size
                                                 : image.virtual_size.value_or(0);
  }
  {
    MutexLock lock(&verdict_mu_);
    auto it = verdicts_.find(image.id);
    if (it != verdicts_.end() && it->second.data_version == image.data_version &&
        it->second.qcow2_size) {
      return *it->second.qcow2_size;
    }
  }
  // A pure function of the raw view's size and allocation map: stable for the mount.
  auto view = OpenView(image, file);
  if (!view.ok()) return 0;  // opening it reports the error
  uint64_t size = (*view)->size();
  MutexLock lock(&verdict_mu_);
  auto it = verdicts_.find(image.id);
  if (it != verdicts_.end() && it->second.data_version == image.data_version) {
    it->second.qcow2_size = size;
  }
  return size;
}

std::string FileSystem::FormatJson(const format::Verdict& verdict) {
  nlohmann::ordered_json j;
  j["format"] = verdict.format;
  if (verdict.virtual_size) j["virtual_size"] = *verdict.virtual_size;
  if (!verdict.container.empty()) j["container"] = verdict.container;
  for (const auto& [k, v] : verdict.info.facts) j[k] = v;
  if (!verdict.refused.empty()) j["refused"] = verdict.refused;
  return j.dump(2) + "\n";
}

Result<std::shared_ptr<ByteSource>> FileSystem::OpenView(const ImageRecord& image, ImageFile file,
                                                         bool cached_only) {
  GLANCEFS_ASSIGN_OR_RETURN(auto source, cached_only && options_.cache
                                             ? options_.cache->OpenCachedOnly(image)
                                             : catalog_->OpenData(image));
  auto view =
      format::OpenView(ViewOf(file), std::move(source), image.disk_format, image.container_format);
  if (!view.ok()) return view.status().WithContext("image " + image.id);
  return view;
}

Result<struct stat> FileSystem::StatOf(const NodeKey& key, const Namespace& ns) {
  struct stat st;
  std::memset(&st, 0, sizeof st);
  st.st_uid = options_.uid;
  st.st_gid = options_.gid;
  st.st_blksize = 4096;
  int64_t mtime = ns.mtime();
  switch (key.kind) {
    case NodeKind::kRoot:
      st.st_mode = S_IFDIR | 0555;
      st.st_nlink = options_.cache ? 6 : 4;  // ".", "..", and each subdirectory's ".."
      break;
    case NodeKind::kQueueDir:
    case NodeKind::kCacheDir:
      if (!options_.cache) return Status::NotFound("no cache");
      st.st_mode = S_IFDIR | 0755;
      st.st_nlink = 2;
      mtime = ::time(nullptr);
      break;
    case NodeKind::kQueueEntry:
    case NodeKind::kCacheEntry:
      GLANCEFS_RETURN_IF_ERROR(CacheEntryStat(key, &st, &mtime));
      break;
    case NodeKind::kMetricsFile:
      if (!options_.cache) return Status::NotFound("no cache");
      st.st_mode = S_IFREG | 0444;
      st.st_nlink = 1;
      st.st_size = static_cast<off_t>(MetricsText().size());
      mtime = ::time(nullptr);
      break;
    case NodeKind::kImagesDir:
      st.st_mode = S_IFDIR | 0555;
      st.st_nlink = 2 + ns.listed().size();
      break;
    case NodeKind::kByNameDir:
      st.st_mode = S_IFDIR | 0555;
      st.st_nlink = 2;
      break;
    case NodeKind::kImageDir: {
      auto image = ns.FindImage(key.name);
      if (!image) return Status::NotFound("no image " + key.name);
      st.st_mode = S_IFDIR | 0555;
      st.st_nlink = 2;
      mtime = image->updated_at;
      break;
    }
    case NodeKind::kImageFile:
      GLANCEFS_RETURN_IF_ERROR(ImageFileStat(key, ns, &st, &mtime));
      break;
    case NodeKind::kByNameLink: {
      const fsns::ByNameEntry* entry = ns.FindByName(key.name);
      if (!entry) return Status::NotFound("no by-name entry " + key.name);
      st.st_mode = S_IFLNK | 0777;
      st.st_nlink = 1;
      st.st_size = static_cast<off_t>(Namespace::LinkTarget(*entry->image).size());
      mtime = entry->image->updated_at;
      break;
    }
  }
  st.st_mtim.tv_sec = mtime;
  st.st_ctim.tv_sec = mtime;
  st.st_atim.tv_sec = mtime;
  return st;
}

Status FileSystem::CacheEntryStat(const NodeKey& key, struct stat* st, int64_t* mtime) {
  auto entry = CacheEntryOf(key.kind, key.name);
  if (!entry) {
    return Status::NotFound(key.name + " is not " +
                            (key.kind == NodeKind::kQueueEntry ? "queued" : "cached"));
  }
  // A marker: its size is the bytes cached (progress), its content empty.
  st->st_mode = S_IFREG | 0644;
  st->st_nlink = 1;
  st->st_size = static_cast<off_t>(entry->cached_bytes);
  st->st_blocks = static_cast<blkcnt_t>((entry->cached_bytes + 511) / 512);
  *mtime = key.kind == NodeKind::kQueueEntry ? entry->queued_at : entry->last_access;
  return Status::Ok();
}

Status FileSystem::ImageFileStat(const NodeKey& key, const Namespace& ns, struct stat* st,
                                 int64_t* mtime) {
  auto image = ns.FindImage(key.name);
  if (!image || !ShowsFile(*image, key.file) || ContentVersion(*image, key.file) != key.version) {
    return Status::NotFound("no " + std::string(fsns::FileName(key.file)) + " in " + key.name +
                            " (or a newer version replaced it)");
  }
  st->st_mode = S_IFREG | 0444;
  st->st_nlink = 1;
  *mtime = image->updated_at;
  if (key.file == ImageFile::kMetadata) {
    st->st_size = static_cast<off_t>(image->record_json.size());
    st->st_blocks = (st->st_size + 511) / 512;
  } else if (key.file == ImageFile::kFormat) {
    auto verdict = VerdictFor(*image);
    if (!verdict.ok()) return verdict.status();
    st->st_size = static_cast<off_t>(FormatJson(*verdict).size());
    st->st_blocks = (st->st_size + 511) / 512;
  } else {
    st->st_size = static_cast<off_t>(ViewSize(*image, key.file));
    // A decoded view occupies what its source file does (holes and compression included).
    uint64_t allocated = image->allocated_bytes.value_or(*image->size);
    st->st_blocks = static_cast<blkcnt_t>((allocated + 511) / 512);
    st->st_blksize = options_.disk_blksize;
  }
  return Status::Ok();
}

Result<NodeKey> FileSystem::Child(const NodeKey& parent, std::string_view name,
                                  const Namespace& ns) {
  auto missing = [&] { return Status::NotFound(std::string(name)); };
  switch (parent.kind) {
    case NodeKind::kRoot:
      if (name == "images") return DirKey(NodeKind::kImagesDir);
      if (name == "by-name") return DirKey(NodeKind::kByNameDir);
      if (options_.cache) {
        if (name == "queue") return DirKey(NodeKind::kQueueDir);
        if (name == "cache") return DirKey(NodeKind::kCacheDir);
        if (name == kMetricsFileName) return DirKey(NodeKind::kMetricsFile);
      }
      return missing();
    case NodeKind::kQueueDir:
    case NodeKind::kCacheDir: {
      NodeKind kind =
          parent.kind == NodeKind::kQueueDir ? NodeKind::kQueueEntry : NodeKind::kCacheEntry;
      std::string id(name);
      if (!CacheEntryOf(kind, id)) {
        auto image = ResolveImage(name, ns);
        if (!image || !CacheEntryOf(kind, image->id)) return missing();
        id = image->id;
      }
      return EntryKey(kind, id);
    }
    case NodeKind::kImagesDir:
      if (!ns.FindImage(name)) return missing();
      return ImageDirKey(std::string(name));
    case NodeKind::kImageDir: {
      auto image = ns.FindImage(parent.name);
      auto file = fsns::ParseFileName(name);
      if (!image || !file || !ShowsFile(*image, *file)) return missing();
      return FileKey(*image, *file);
    }
    case NodeKind::kByNameDir:
      if (!ns.FindByName(name)) return missing();
      return LinkKey(std::string(name));
    case NodeKind::kImageFile:
    case NodeKind::kByNameLink:
    case NodeKind::kQueueEntry:
    case NodeKind::kCacheEntry:
    case NodeKind::kMetricsFile:
      return Status::InvalidArgument("not a directory");
  }
  return missing();
}

Result<struct stat> FileSystem::AcquireStable(
    const std::function<Result<NodeKey>(const Namespace&)>& key_of) {
  // If a refresh swaps the namespace between computing a reply and handing it to the kernel,
  // its invalidations may have run before the kernel knew the entry: compute again.
  for (int attempt = 0;; ++attempt) {
    auto current = ns();
    GLANCEFS_ASSIGN_OR_RETURN(NodeKey key, key_of(*current));
    GLANCEFS_ASSIGN_OR_RETURN(struct stat st, StatOf(key, *current));
    st.st_ino = inodes_.Acquire(key);
    if (ns() == current || attempt == 3) return st;
    inodes_.Forget(st.st_ino, 1);
  }
}

Result<struct stat> FileSystem::Lookup(uint64_t parent, std::string_view name) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey parent_key, KeyOf(parent));
  return AcquireStable([&](const Namespace& current) { return Child(parent_key, name, current); });
}

Result<struct stat> FileSystem::GetAttr(uint64_t ino) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey key, KeyOf(ino));
  GLANCEFS_ASSIGN_OR_RETURN(struct stat st, StatOf(key, *ns()));
  st.st_ino = ino;
  return st;
}

Result<std::string> FileSystem::ReadLink(uint64_t ino) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey key, KeyOf(ino));
  if (key.kind != NodeKind::kByNameLink) return Status::InvalidArgument("not a symlink");
  auto current = ns();
  const fsns::ByNameEntry* entry = current->FindByName(key.name);
  if (!entry) return Status::NotFound("no by-name entry " + key.name);
  return Namespace::LinkTarget(*entry->image);
}

Result<std::vector<DirItem>> FileSystem::OpenDir(uint64_t ino) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey key, KeyOf(ino));
  auto current = ns();
  GLANCEFS_RETURN_IF_ERROR(StatOf(key, *current).status());
  std::vector<DirItem> items;
  items.push_back({".", key, S_IFDIR});
  items.push_back({"..", key, S_IFDIR});  // the adapter never counts . and ..
  switch (key.kind) {
    case NodeKind::kRoot:
      items.push_back({"by-name", DirKey(NodeKind::kByNameDir), S_IFDIR});
      if (options_.cache) items.push_back({"cache", DirKey(NodeKind::kCacheDir), S_IFDIR});
      items.push_back({"images", DirKey(NodeKind::kImagesDir), S_IFDIR});
      if (options_.cache) {
        items.push_back({kMetricsFileName, DirKey(NodeKind::kMetricsFile), S_IFREG});
        items.push_back({"queue", DirKey(NodeKind::kQueueDir), S_IFDIR});
      }
      break;
    case NodeKind::kQueueDir:
      for (const auto& e : options_.cache->Queued()) {
        items.push_back({e.id, EntryKey(NodeKind::kQueueEntry, e.id), S_IFREG});
      }
      break;
    case NodeKind::kCacheDir:
      for (const auto& e : options_.cache->Cached()) {
        items.push_back({e.id, EntryKey(NodeKind::kCacheEntry, e.id), S_IFREG});
      }
      break;
    case NodeKind::kImagesDir:
      items.reserve(items.size() + current->listed().size());
      for (const auto& image : current->listed()) {
        items.push_back({image->id, ImageDirKey(image->id), S_IFDIR});
      }
      break;
    case NodeKind::kByNameDir:
      items.reserve(items.size() + current->by_name().size());
      for (const auto& entry : current->by_name()) {
        items.push_back({entry.entry, LinkKey(entry.entry), S_IFLNK});
      }
      break;
    case NodeKind::kImageDir: {
      auto image = current->FindImage(key.name);
      for (ImageFile f : fsns::FilesOf(*image)) {
        if (ShowsFile(*image, f)) items.push_back({fsns::FileName(f), FileKey(*image, f), S_IFREG});
      }
      break;
    }
    case NodeKind::kImageFile:
    case NodeKind::kByNameLink:
    case NodeKind::kQueueEntry:
    case NodeKind::kCacheEntry:
    case NodeKind::kMetricsFile:
      return Status::InvalidArgument("not a directory");
  }
  return items;
}

Result<struct stat> FileSystem::AcquireDirItem(uint64_t dir_ino, const DirItem& item) {
  (void)dir_ino;
  return AcquireStable([&](const Namespace&) -> Result<NodeKey> { return item.key; });
}

uint64_t FileSystem::PeekIno(uint64_t dir_ino, const DirItem& item) const {
  if (item.name == "." || item.name == "..") return dir_ino;
  if (auto ino = inodes_.Find(item.key)) return *ino;
  // Never handed to the kernel as an inode: only shown by getdents(2) without readdirplus.
  return StableHash64(item.key.Encode()) | (1ULL << 63);
}

Result<std::unique_ptr<OpenFile>> FileSystem::Open(uint64_t ino, int flags) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey key, KeyOf(ino));
  if (key.kind == NodeKind::kQueueEntry || key.kind == NodeKind::kCacheEntry) {
    GLANCEFS_ASSIGN_OR_RETURN(struct stat st, StatOf(key, *ns()));
    auto file = std::make_unique<OpenFile>();
    // touch opens it for writing. It reads as a hole as long as its size (the bytes cached),
    // so tools that copy the whole mount see a consistent file.
    file->synthetic = true;
    file->zeros = true;
    file->size = static_cast<uint64_t>(st.st_size);
    return file;
  }
  if ((flags & O_ACCMODE) != O_RDONLY || (flags & O_TRUNC)) {
    return Status::ReadOnly("glancefs is read-only");
  }
  if (key.kind == NodeKind::kMetricsFile && options_.cache) {
    auto file = std::make_unique<OpenFile>();
    file->synthetic = true;
    file->text = MetricsText();
    file->size = file->text.size();
    return file;
  }
  if (key.kind != NodeKind::kImageFile) return Status::InvalidArgument("not a file");
  auto image = ns()->FindImage(key.name);
  if (!image || !ShowsFile(*image, key.file) || ContentVersion(*image, key.file) != key.version) {
    return Status::NotFound("no such file (a newer version replaced it)");
  }
  auto file = std::make_unique<OpenFile>();
  file->file = key.file;
  file->record = image;
  if (key.file == ImageFile::kMetadata) {
    file->size = image->record_json.size();
    return file;
  }
  if (key.file == ImageFile::kFormat) {
    GLANCEFS_ASSIGN_OR_RETURN(format::Verdict verdict, VerdictFor(*image));
    file->synthetic = true;
    file->text = FormatJson(verdict);
    file->size = file->text.size();
    return file;
  }
  if (options_.require_signature) {
    GLANCEFS_RETURN_IF_ERROR(RequireSignature(*image));
    // The verdict from the verified bytes: a refused image is not served.
    GLANCEFS_ASSIGN_OR_RETURN(format::Verdict verdict, VerdictFor(*image));
    if (!verdict.refused.empty()) {
      return Status::Refused("image " + image->id + ": " + verdict.refused);
    }
  }
  GLANCEFS_ASSIGN_OR_RETURN(file->source,
                            OpenView(*image, key.file, /*cached_only=*/options_.require_signature));
  file->size = file->source->size();
  return file;
}

Status FileSystem::RequireSignature(const ImageRecord& image) {
  if (SignatureState(image, std::nullopt) == "unsigned") {
    LOG_WARNING("image %s is unsigned: not served (require_signature)", image.id.c_str());
    return Status::PermissionDenied("image " + image.id + " is unsigned (require_signature)");
  }
  if (!options_.cache) return Status::PermissionDenied("require_signature needs the cache");
  GLANCEFS_ASSIGN_OR_RETURN(std::string verdict, options_.cache->CheckSignature(image));
  if (verdict == "verified") return Status::Ok();
  LOG_WARNING("image %s: signature %s: not served (require_signature)", image.id.c_str(),
              verdict.c_str());
  return Status::PermissionDenied("image " + image.id + ": signature " + verdict);
}

Result<std::string_view> FileSystem::Read(OpenFile& file, uint64_t off, size_t n, char* scratch) {
  if (off >= file.size) return std::string_view();
  n = static_cast<size_t>(std::min<uint64_t>(n, file.size - off));
  if (file.zeros) {
    std::memset(scratch, 0, n);
    return std::string_view(scratch, n);
  }
  // Text is copied out: the reply may still be in flight when another thread releases the
  // file (found by ASan with direct_io reads of metrics.prom).
  if (file.synthetic || !file.source) {
    std::string_view text = file.synthetic ? file.text : file.record->record_json;
    std::memcpy(scratch, text.data() + off, n);
    return std::string_view(scratch, n);
  }
  GLANCEFS_RETURN_IF_ERROR(file.source->ReadAt(off, n, scratch));
  return std::string_view(scratch, n);
}

Status FileSystem::ReadPieces(OpenFile& file, uint64_t off, size_t n, char* scratch,
                              std::vector<PinnedSlice>* out) {
  if (file.source && !file.synthetic && !file.zeros && off < file.size) {
    n = static_cast<size_t>(std::min<uint64_t>(n, file.size - off));
    Status s = file.source->ReadPinned(off, n, out);
    if (s.code() != Status::Code::kNotSupported) return s;
  }
  GLANCEFS_ASSIGN_OR_RETURN(std::string_view data, Read(file, off, n, scratch));
  if (!data.empty()) out->push_back({data.data(), data.size(), nullptr});
  return Status::Ok();
}

Result<uint64_t> FileSystem::Seek(OpenFile& file, uint64_t off, bool want_data) {
  if (off >= file.size) return Status::OutOfRange("seek past the end");
  if (file.zeros) {
    if (want_data) return Status::OutOfRange("all hole");
    return off;
  }
  if (!file.source) return want_data ? off : file.size;  // metadata and synthetic files
  while (off < file.size) {
    GLANCEFS_ASSIGN_OR_RETURN(Extent extent, file.source->MapExtent(off));
    if (extent.length == 0) return Status::Corruption("empty extent");
    bool is_data = extent.kind == Extent::Kind::kData;
    if (is_data == want_data) return off;
    off += extent.length;
  }
  if (want_data) return Status::OutOfRange("no data after this offset");
  return file.size;  // the end of the file is a hole for SEEK_HOLE
}

std::shared_ptr<const ImageRecord> FileSystem::ResolveImage(std::string_view name,
                                                            const Namespace& ns) {
  if (auto image = ns.FindImage(name)) return image;
  if (const fsns::ByNameEntry* entry = ns.FindByName(name)) return entry->image;
  return nullptr;
}

std::optional<CacheEntry> FileSystem::CacheEntryOf(NodeKind kind, const std::string& id) const {
  if (!options_.cache) return std::nullopt;
  auto entry = options_.cache->Find(id);
  if (!entry) return std::nullopt;
  if (kind == NodeKind::kQueueEntry && !entry->queued) return std::nullopt;
  if (kind == NodeKind::kCacheEntry && entry->cached_bytes == 0 && entry->state != "corrupt") {
    return std::nullopt;
  }
  return entry;
}

Result<struct stat> FileSystem::Create(uint64_t parent, std::string_view name) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey parent_key, KeyOf(parent));
  if (parent_key.kind != NodeKind::kQueueDir || !options_.cache) {
    return Status::ReadOnly(parent_key.kind == NodeKind::kCacheDir
                                ? "cache/ lists what is cached: queue an image with queue/<id>"
                                : "glancefs is read-only");
  }
  auto image = ResolveImage(name, *ns());
  if (!image) return Status::NotFound("no image " + std::string(name) + " to queue");
  GLANCEFS_RETURN_IF_ERROR(options_.cache->Queue(*image));
  NodeKey key = EntryKey(NodeKind::kQueueEntry, image->id);
  auto st = AcquireStable([&](const Namespace&) -> Result<NodeKey> { return key; });
  if (st.ok() || !st.status().IsNotFound()) return st;
  // Already done: a pre-fetch of what was nearly cached can leave the queue before this reply,
  // and an image that failed its check leaves cache/ too. The file did exist; the kernel forgets
  // it at its next lookup (queue/ is never cached).
  auto done = StatOf(EntryKey(NodeKind::kCacheEntry, image->id), *ns());
  if (!done.ok()) {
    done = StatOf(DirKey(NodeKind::kQueueDir), *ns());  // owner and times of queue/
    if (!done.ok()) return done.status();
    done->st_mode = S_IFREG | 0644;
    done->st_nlink = 1;
  }
  done->st_ino = inodes_.Acquire(key);
  return done;
}

Status FileSystem::Unlink(uint64_t parent, std::string_view name) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey parent_key, KeyOf(parent));
  if ((parent_key.kind != NodeKind::kQueueDir && parent_key.kind != NodeKind::kCacheDir) ||
      !options_.cache) {
    return Status::ReadOnly("glancefs is read-only");
  }
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey key, Child(parent_key, name, *ns()));
  return key.kind == NodeKind::kQueueEntry ? options_.cache->Dequeue(key.name)
                                           : options_.cache->Evict(key.name);
}

Result<struct stat> FileSystem::SetAttr(uint64_t ino) {
  GLANCEFS_ASSIGN_OR_RETURN(NodeKey key, KeyOf(ino));
  if (key.kind != NodeKind::kQueueEntry && key.kind != NodeKind::kCacheEntry) {
    return Status::ReadOnly("glancefs is read-only");
  }
  return GetAttr(ino);
}

bool FileSystem::IsVolatile(uint64_t ino) const {
  auto kind = inodes_.KindOf(ino);
  if (!kind) return false;
  switch (*kind) {
    case NodeKind::kQueueDir:
    case NodeKind::kCacheDir:
    case NodeKind::kQueueEntry:
    case NodeKind::kCacheEntry:
    case NodeKind::kMetricsFile:
      return true;
    default:
      return false;
  }
}

}  // namespace glancefs::core
