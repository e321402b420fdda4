#include "fs/fuse/lowlevel_ops.h"

#include <fcntl.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <vector>

#include "fs/base/log.h"
#include "fs/fuse/errno.h"

namespace glancefs::fuse {
namespace {

using core::DirItem;
using core::OpenFile;

// The largest read the kernel sends (max_pages 256 × 4 KiB) plus slack.
constexpr size_t kMaxRead = 1 << 20;

struct DirHandle {
  std::vector<DirItem> items;
  uint64_t generation = 0;  // FileSystem::generation() when `items` was listed
};

OpsContext* Ctx(fuse_req_t req) { return static_cast<OpsContext*>(fuse_req_userdata(req)); }
core::FileSystem& Fs(fuse_req_t req) { return *Ctx(req)->fs; }

// Open files: the handle is the OpenFile's address, the OpsContext owns it (see there).
uint64_t Keep(OpsContext* ctx, std::unique_ptr<core::OpenFile> file) {
  uint64_t fh = reinterpret_cast<uint64_t>(file.get());
  MutexLock lock(&ctx->files_mu);
  ctx->files.emplace(fh, std::move(file));
  return fh;
}
void Drop(OpsContext* ctx, uint64_t fh) {
  std::unique_ptr<core::OpenFile> file;  // destroyed outside the lock
  MutexLock lock(&ctx->files_mu);
  if (auto it = ctx->files.find(fh); it != ctx->files.end()) {
    file = std::move(it->second);
    ctx->files.erase(it);
  }
}

void ReplyErr(fuse_req_t req, const char* op, fuse_ino_t ino, const Status& status) {
  fuse_reply_err(req, LogFailure(op, ino, status));
}

fuse_entry_param EntryParam(fuse_req_t req, const struct stat& st) {
  fuse_entry_param e;
  std::memset(&e, 0, sizeof e);
  e.ino = st.st_ino;
  e.generation = 0;  // inode numbers are never reused while mounted
  e.attr = st;
  // queue/, cache/ and metrics.prom change without a catalog refresh: never cached.
  double timeout = Fs(req).IsVolatile(st.st_ino) ? 0 : Ctx(req)->cache_timeout_s;
  e.attr_timeout = timeout;
  e.entry_timeout = timeout;
  return e;
}

bool IsDotOrDotDot(const std::string& name) { return name == "." || name == ".."; }

// Per-thread read buffer: no allocation on the read path after a thread's first read.
char* Scratch() {
  thread_local std::unique_ptr<char[]> buf(new char[kMaxRead]);
  return buf.get();
}

void Init(void* userdata, struct fuse_conn_info* conn) {
  (void)userdata;
  // Reads up to 1 MiB per request: the kernel derives max_pages from max_write.
  conn->max_write = kMaxRead;
  conn->want |= FUSE_CAP_READDIRPLUS & conn->capable;
  // Let the kernel decide when readdirplus pays (ls -l yes, find no).
  conn->want |= FUSE_CAP_READDIRPLUS_AUTO & conn->capable;
  conn->want |= FUSE_CAP_CACHE_SYMLINKS & conn->capable;
  conn->want |= FUSE_CAP_PARALLEL_DIROPS & conn->capable;
  // Image data never changes behind an inode: only our explicit invalidations drop pages.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  conn->want |= FUSE_CAP_EXPLICIT_INVAL_DATA & conn->capable;
  // Read-only: no writeback cache, no locks to negotiate.
  conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  auto st = Fs(req).Lookup(parent, name);
  if (!st.ok()) {
    if (st.status().IsNotFound()) {
      // A negative entry, cached like a positive one; new images invalidate it.
      fuse_entry_param e;
      std::memset(&e, 0, sizeof e);
      e.entry_timeout = Fs(req).IsVolatile(parent) ? 0 : Ctx(req)->negative_timeout_s;
      fuse_reply_entry(req, &e);
      return;
    }
    return ReplyErr(req, "lookup", parent, st.status());
  }
  fuse_entry_param e = EntryParam(req, *st);
  if (fuse_reply_entry(req, &e) != 0) Fs(req).Forget(e.ino, 1);
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  Fs(req).Forget(ino, nlookup);
  fuse_reply_none(req);
}

void ForgetMulti(fuse_req_t req, size_t count, struct fuse_forget_data* forgets) {
  for (size_t i = 0; i < count; ++i) Fs(req).Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void GetAttr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  (void)fi;
  auto st = Fs(req).GetAttr(ino);
  if (!st.ok()) return ReplyErr(req, "getattr", ino, st.status());
  fuse_reply_attr(req, &*st, Fs(req).IsVolatile(ino) ? 0 : Ctx(req)->cache_timeout_s);
}

void ReadLink(fuse_req_t req, fuse_ino_t ino) {
  auto target = Fs(req).ReadLink(ino);
  if (!target.ok()) return ReplyErr(req, "readlink", ino, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void OpenDir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  auto items = Fs(req).OpenDir(ino);
  if (!items.ok()) return ReplyErr(req, "opendir", ino, items.status());
  auto handle = std::make_unique<DirHandle>();
  handle->generation = Fs(req).generation();
  handle->items = std::move(items).value();
  fi->fh = reinterpret_cast<uint64_t>(handle.get());
  // Listings are immutable until the refresher invalidates the directory (but queue/, cache/).
  bool cacheable = !Fs(req).IsVolatile(ino);
  fi->cache_readdir = cacheable;
  fi->keep_cache = cacheable;
  if (fuse_reply_open(req, fi) == 0) handle.release();
}

void ReadDirCommon(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   struct fuse_file_info* fi, bool plus) {
  auto* handle = reinterpret_cast<DirHandle*>(fi->fh);
  if (off == 0 && handle->generation != Fs(req).generation()) {
    // A rewind, or a first read after a refresh: list again, so the kernel's cached listing
    // (filled from this reply) is never older than the refresh that invalidated it.
    uint64_t generation = Fs(req).generation();
    auto items = Fs(req).OpenDir(ino);
    if (!items.ok()) return ReplyErr(req, plus ? "readdirplus" : "readdir", ino, items.status());
    handle->items = std::move(items).value();
    handle->generation = generation;
  }
  std::vector<char> buf(size);
  std::vector<fuse_ino_t> acquired;  // to give back if the reply is lost
  size_t pos = 0;
  for (size_t i = static_cast<size_t>(off); i < handle->items.size(); ++i) {
    const DirItem& item = handle->items[i];
    size_t entry_size;
    if (plus) {
      fuse_entry_param e;
      std::memset(&e, 0, sizeof e);
      if (IsDotOrDotDot(item.name)) {
        // The kernel links neither . nor ..: no lookup count.
        e.attr.st_ino = ino;
        e.attr.st_mode = S_IFDIR;
      } else {
        auto st = Fs(req).AcquireDirItem(ino, item);
        if (!st.ok()) continue;  // vanished since opendir
        e = EntryParam(req, *st);
      }
      entry_size = fuse_add_direntry_plus(req, buf.data() + pos, size - pos, item.name.c_str(), &e,
                                          static_cast<off_t>(i + 1));
      if (entry_size > size - pos) {
        if (e.ino != 0) Fs(req).Forget(e.ino, 1);
        break;
      }
      if (e.ino != 0) acquired.push_back(e.ino);
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof st);
      st.st_ino = Fs(req).PeekIno(ino, item);
      st.st_mode = item.type;
      entry_size = fuse_add_direntry(req, buf.data() + pos, size - pos, item.name.c_str(), &st,
                                     static_cast<off_t>(i + 1));
      if (entry_size > size - pos) break;
    }
    pos += entry_size;
  }
  if (fuse_reply_buf(req, buf.data(), pos) != 0) {
    for (fuse_ino_t acquired_ino : acquired) Fs(req).Forget(acquired_ino, 1);
  }
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, off, fi, /*plus=*/false);
}

void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                 struct fuse_file_info* fi) {
  ReadDirCommon(req, ino, size, off, fi, /*plus=*/true);
}

void ReleaseDir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  (void)ino;
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void SetReadAhead(const OpsContext& ctx) {
  if (ctx.read_ahead_path.empty()) return;
  std::string value = std::to_string(ctx.read_ahead_kb) + "\n";
  int fd = ::open(ctx.read_ahead_path.c_str(), O_WRONLY | O_CLOEXEC);
  bool ok =
      fd >= 0 && ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
  int err = errno;
  if (fd >= 0) ::close(fd);
  if (!ok) {
    // Not root, or no sysfs: reads still work, with the kernel's default window.
    LOG_INFO("cannot set %s to %u KiB: %s; sequential reads will be slower",
             ctx.read_ahead_path.c_str(), ctx.read_ahead_kb, std::strerror(err));
    return;
  }
  LOG_DEBUG("readahead window set to %u KiB", ctx.read_ahead_kb);
}

void Open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  OpsContext* ctx = Ctx(req);
  std::call_once(ctx->read_ahead_once, [ctx] { SetReadAhead(*ctx); });
  auto file = Fs(req).Open(ino, fi->flags);
  if (!file.ok()) return ReplyErr(req, "open", ino, file.status());
  fi->fh = reinterpret_cast<uint64_t>(file->get());
  if ((*file)->synthetic) {
    fi->direct_io = 1;  // made at open: its size is what read returns, not st_size
  } else if (ctx->direct_io) {
    fi->direct_io = 1;  // -o direct_io: replies go straight into the reader's buffer
  } else {
    fi->keep_cache = 1;  // an image's bytes never change under its inode
  }
  fi->noflush = 1;  // nothing to flush on close
  uint64_t fh = Keep(ctx, std::move(*file));
  if (fuse_reply_open(req, fi) != 0) Drop(ctx, fh);
}

void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info* fi) {
  auto* file = reinterpret_cast<OpenFile*>(fi->fh);
  size = std::min(size, kMaxRead);
  // Pieces of the block cache's buffers go out as they are, pinned until the reply is written.
  thread_local std::vector<PinnedSlice> pieces;
  thread_local std::vector<struct iovec> iov;
  pieces.clear();
  Status s = Fs(req).ReadPieces(*file, static_cast<uint64_t>(off), size, Scratch(), &pieces);
  if (!s.ok()) {
    pieces.clear();
    return ReplyErr(req, "read", ino, s);
  }
  iov.clear();
  for (const PinnedSlice& piece : pieces) {
    iov.push_back({const_cast<char*>(piece.data), piece.size});
  }
  fuse_reply_iov(req, iov.data(), static_cast<int>(iov.size()));
  pieces.clear();
}

void Release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  (void)ino;
  Drop(Ctx(req), fi->fh);
  fuse_reply_err(req, 0);
}

// The session ends: files whose RELEASE never came go now, before the file system does.
void Destroy(void* userdata) {
  auto* ctx = static_cast<OpsContext*>(userdata);
  MutexLock lock(&ctx->files_mu);
  ctx->files.clear();
}

void Lseek(fuse_req_t req, fuse_ino_t ino, off_t off, int whence, struct fuse_file_info* fi) {
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return fuse_reply_err(req, EINVAL), void();
  if (off < 0) return fuse_reply_err(req, ENXIO), void();
  auto* file = reinterpret_cast<OpenFile*>(fi->fh);
  auto pos = Fs(req).Seek(*file, static_cast<uint64_t>(off), whence == SEEK_DATA);
  if (!pos.ok()) return ReplyErr(req, "lseek", ino, pos.status());
  fuse_reply_lseek(req, static_cast<off_t>(*pos));
}

void ReplyXattr(fuse_req_t req, const std::string& value, size_t size) {
  if (size == 0) {
    fuse_reply_xattr(req, value.size());  // the caller asks for the size first
  } else if (value.size() > size) {
    fuse_reply_err(req, ERANGE);  // a value over 64 KiB becomes E2BIG in the kernel
  } else {
    fuse_reply_buf(req, value.data(), value.size());
  }
}

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  auto value = Fs(req).GetXattr(ino, name);
  if (!value.ok()) return ReplyErr(req, "getxattr", ino, value.status());
  if (!*value) return fuse_reply_err(req, ENODATA), void();
  ReplyXattr(req, **value, size);
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  auto names = Fs(req).ListXattr(ino);
  if (!names.ok()) return ReplyErr(req, "listxattr", ino, names.status());
  ReplyXattr(req, *names, size);
}

void StatFs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  struct statvfs st;
  std::memset(&st, 0, sizeof st);
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  st.f_files = Fs(req).inode_count();
  st.f_namemax = 255;
  st.f_flag = ST_RDONLY;
  fuse_reply_statfs(req, &st);
}

// Everything that would change the tree: EROFS, as the man pages document for a read-only
// file system.
void ReplyReadOnly(fuse_req_t req) { fuse_reply_err(req, EROFS); }
// touch queue/<id> (or a by-name entry) queues an image for pre-fetch.
void CreateEntry(fuse_req_t req, fuse_ino_t parent, const char* name, struct fuse_file_info* fi) {
  auto st = Fs(req).Create(parent, name);
  if (!st.ok()) return ReplyErr(req, "create", parent, st.status());
  fuse_entry_param e = EntryParam(req, *st);
  if (!fi) {
    if (fuse_reply_entry(req, &e) != 0) Fs(req).Forget(e.ino, 1);
    return;
  }
  auto file = Fs(req).Open(e.ino, O_WRONLY);
  if (!file.ok()) {
    Fs(req).Forget(e.ino, 1);
    return ReplyErr(req, "create", parent, file.status());
  }
  fi->fh = reinterpret_cast<uint64_t>(file->get());
  fi->direct_io = 1;
  uint64_t fh = Keep(Ctx(req), std::move(*file));
  if (fuse_reply_create(req, &e, fi) != 0) {
    Drop(Ctx(req), fh);
    Fs(req).Forget(e.ino, 1);
  }
}
void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t, struct fuse_file_info* fi) {
  CreateEntry(req, parent, name, fi);
}
void MkNod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t) {
  if (!S_ISREG(mode)) return ReplyReadOnly(req);
  CreateEntry(req, parent, name, nullptr);
}
// rm queue/<x> dequeues; rm cache/<x> evicts.
void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Status s = Fs(req).Unlink(parent, name);
  if (!s.ok()) return ReplyErr(req, "unlink", parent, s);
  fuse_reply_err(req, 0);
}
// Times on queue/ and cache/ entries (touch): accepted, not kept.
void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat*, int, struct fuse_file_info*) {
  auto st = Fs(req).SetAttr(ino);
  if (!st.ok()) return ReplyErr(req, "setattr", ino, st.status());
  fuse_reply_attr(req, &*st, 0);
}
void MkDir(fuse_req_t req, fuse_ino_t, const char*, mode_t) { ReplyReadOnly(req); }
void RmDir(fuse_req_t req, fuse_ino_t, const char*) { ReplyReadOnly(req); }
void SymLink(fuse_req_t req, const char*, fuse_ino_t, const char*) { ReplyReadOnly(req); }
void Rename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*, unsigned int) {
  ReplyReadOnly(req);
}
void Link(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) { ReplyReadOnly(req); }
void Write(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t, struct fuse_file_info*) {
  ReplyReadOnly(req);
}
void SetXattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t, int) {
  ReplyReadOnly(req);
}
void RemoveXattr(fuse_req_t req, fuse_ino_t, const char*) { ReplyReadOnly(req); }
void Fallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t, struct fuse_file_info*) {
  ReplyReadOnly(req);
}

struct fuse_lowlevel_ops MakeOps() {
  struct fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof ops);
  ops.init = Init;
  ops.destroy = Destroy;
  ops.lookup = Lookup;
  ops.forget = Forget;
  ops.forget_multi = ForgetMulti;
  ops.getattr = GetAttr;
  ops.readlink = ReadLink;
  ops.opendir = OpenDir;
  ops.readdir = ReadDir;
  ops.readdirplus = ReadDirPlus;
  ops.releasedir = ReleaseDir;
  ops.open = Open;
  ops.read = Read;
  ops.release = Release;
  ops.lseek = Lseek;
  ops.getxattr = GetXattr;
  ops.listxattr = ListXattr;
  ops.statfs = StatFs;
  ops.setattr = SetAttr;
  ops.mknod = MkNod;
  ops.mkdir = MkDir;
  ops.unlink = Unlink;
  ops.rmdir = RmDir;
  ops.symlink = SymLink;
  ops.rename = Rename;
  ops.link = Link;
  ops.write = Write;
  ops.setxattr = SetXattr;
  ops.removexattr = RemoveXattr;
  ops.create = Create;
  ops.fallocate = Fallocate;
  return ops;
}

}  // namespace

const struct fuse_lowlevel_ops& LowLevelOps() {
  static const struct fuse_lowlevel_ops kOps = MakeOps();
  return kOps;
}

}  // namespace glancefs::fuse
