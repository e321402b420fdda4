#include "backends/glance/glance_catalog.h"

#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <set>
#include <thread>

#include "backends/common/image_record_json.h"
#include "fs/base/file_io.h"
#include "fs/base/log.h"
#include "fs/base/thread.h"
#include "fs/base/time_util.h"

namespace glancefs::backends {
namespace {

constexpr size_t kMaxListBody = 256 << 20;  // 1000 records with large properties fit easily
constexpr int kMaxPages = 100000;

bool Retryable(long status) { return status == 429 || status >= 500; }

unsigned BackoffMs(unsigned attempt, const std::string& retry_after, unsigned cap_ms) {
  unsigned ms = 200u << std::min(attempt, 10u);
  if (!retry_after.empty() && std::all_of(retry_after.begin(), retry_after.end(), ::isdigit)) {
    ms = static_cast<unsigned>(std::min<unsigned long>(std::stoul(retry_after) * 1000, cap_ms));
  }
  return std::min(ms, cap_ms);
}

// "bytes a-b/total" → a, b, total (total 0 when "*").
bool ParseContentRange(const std::string& v, uint64_t* a, uint64_t* b, uint64_t* total) {
  unsigned long long x, y, t;
  char star;
  if (std::sscanf(v.c_str(), "bytes %llu-%llu/%llu", &x, &y, &t) == 3) {
    *a = x, *b = y, *total = t;
    return true;
  }
  if (std::sscanf(v.c_str(), "bytes %llu-%llu/%c", &x, &y, &star) == 3 && star == '*') {
    *a = x, *b = y, *total = 0;
    return true;
  }
  return false;
}

// An answer with exactly bytes [off, off + n) of an image of `size` bytes: a 206 of that
// range, or a 200 when the whole image was asked for.
bool ExactAnswer(long status, const std::string& content_range, uint64_t off, uint64_t n,
                 uint64_t size) {
  if (status == 200) return off == 0 && n == size;
  uint64_t a, b, total;
  return status == 206 && ParseContentRange(content_range, &a, &b, &total) && a == off &&
         b == off + n - 1 && (total == 0 || total == size);
}

// The body of one read placed into the caller's slices, each reported as its last byte
// arrives. A retry starts the body over (Restart): the bytes an earlier attempt placed are
// skipped, so a slice already reported is never written again.
class SliceFiller {
 public:
  SliceFiller(uint64_t n, const ByteSource::SliceFor& slice_for,
              const ByteSource::SliceDone& done)
      : n_(n), slice_for_(slice_for), done_(done) {}

  uint64_t got() const { return got_; }  // bytes of this attempt's body
  void Restart() { got_ = 0; }
  // The next `len` bytes of this attempt's body. False if the caller gave no buffer for them.
  bool Place(const char* data, size_t len) {
    got_ += len;
    if (got_ <= delivered_) return true;
    const size_t fresh = static_cast<size_t>(got_ - delivered_);
    data += len - fresh;
    len = fresh;
    delivered_ += len;
    while (len > 0) {
      if (!to_.data) {
        to_ = slice_for_(slice_);
        if (!to_.data || to_.size == 0 || to_.size > n_ - (delivered_ - len)) return false;
      }
      const size_t take = std::min(len, to_.size - filled_);
      std::memcpy(to_.data + filled_, data, take);
      data += take;
      len -= take;
      filled_ += take;
      if (filled_ == to_.size) {
        if (done_) done_(slice_);
        ++slice_;
        to_ = {nullptr, 0};
        filled_ = 0;
      }
    }
    return true;
  }

 private:
  const uint64_t n_;
  const ByteSource::SliceFor& slice_for_;
  const ByteSource::SliceDone& done_;
  uint64_t got_ = 0;        // bytes of this attempt's body
  uint64_t delivered_ = 0;  // bytes placed into the slices, by any attempt
  size_t slice_ = 0;        // the slice being filled, and how much of it is
  IoSlice to_{nullptr, 0};
  size_t filled_ = 0;
};

std::string DataVersion(const ImageRecord& r) {
  auto it = r.properties.find("os_hash_value");
  if (it != r.properties.end() && !it->second.empty()) return it->second;
  it = r.properties.find("checksum");
  if (it != r.properties.end() && !it->second.empty()) return it->second;
  return std::to_string(r.size.value_or(0)) + "@" + std::to_string(r.updated_at);
}

}  // namespace

Result<HttpResponse> GlanceGet(HttpClient& http, TokenSource& tokens, const GlanceOptions& options,
                               const std::string& url, std::vector<std::string> headers,
                               const BodySink* sink, size_t max_body,
                               const std::function<void()>& before_retry) {
  bool renewed = false;
  for (unsigned attempt = 0;; ++attempt) {
    GLANCEFS_ASSIGN_OR_RETURN(std::string token, tokens.Token());
    std::vector<std::string> all = headers;
    if (!token.empty()) all.push_back("X-Auth-Token: " + token);
    auto r = http.Get(url, all, sink, max_body);
    std::string retry_after;
    if (r.ok()) {
      if (r->status == 401 && !renewed) {
        tokens.Invalidate(token);  // a token that expired: try once with a fresh one
        renewed = true;
        if (before_retry) before_retry();
        continue;
      }
      if (!Retryable(r->status) || attempt >= options.retries) return r;
      retry_after = r->retry_after;
      LOG_WARNING("GET %s: HTTP %ld, retrying", url.substr(0, url.find('?')).c_str(), r->status);
    } else if (attempt >= options.retries || r.status().code() != Status::Code::kUnavailable) {
      return r.status();
    } else {
      LOG_WARNING("%s; retrying", r.status().message().c_str());
    }
    if (before_retry) before_retry();
    std::this_thread::sleep_for(
        std::chrono::milliseconds(BackoffMs(attempt, retry_after, options.max_backoff_ms)));
  }
}

GlanceCatalog::GlanceCatalog(std::shared_ptr<HttpClient> http, std::shared_ptr<TokenSource> tokens,
                             GlanceOptions options)
    : http_(std::move(http)), tokens_(std::move(tokens)), options_(std::move(options)) {}

Status GlanceCatalog::ListAll(const std::string& first_url,
                              std::map<std::string, ImageRecord>* out) {
  std::string url = first_url;
  std::set<std::string> seen;
  for (int page = 0; page < kMaxPages && !url.empty(); ++page) {
    if (!seen.insert(url).second) return Status::Corruption("image list pages loop at " + url);
    GLANCEFS_ASSIGN_OR_RETURN(
        HttpResponse r, GlanceGet(*http_, *tokens_, options_, url, {"Accept: application/json"},
                                  nullptr, kMaxListBody));
    if (r.status == 401 || r.status == 403) {
      return Status::PermissionDenied("Glance refused the token (HTTP " + std::to_string(r.status) +
                                      ")");
    }
    if (r.status != 200) {
      return Status::Unavailable("GET /v2/images: HTTP " + std::to_string(r.status));
    }
    GLANCEFS_ASSIGN_OR_RETURN(ImageListPage parsed, ParseImageListPage(r.body));
    for (const auto& why : parsed.bad) LOG_WARNING("Glance: image left out: %s", why.c_str());
    for (auto& image : parsed.images) {
      image.data_version = DataVersion(image);
      std::string id = image.id;
      (*out)[id] = std::move(image);
    }
    if (parsed.next.empty()) return Status::Ok();
    if (parsed.next.rfind("/v2/", 0) != 0) {
      return Status::Corruption("image list 'next' is not a /v2/ path: " + parsed.next);
    }
    url = options_.endpoint + parsed.next;
  }
  return url.empty() ? Status::Ok() : Status::Corruption("image list has too many pages");
}

Result<std::shared_ptr<const CatalogSnapshot>> GlanceCatalog::Refresh() {
  MutexLock refresh_lock(&refresh_mu_);
  std::string base = options_.endpoint + "/v2/images?limit=" + std::to_string(options_.page_limit);
  std::map<std::string, ImageRecord> images;
  bool full = !have_full_ || options_.relist <= 1 || since_full_ + 1 >= options_.relist;
  int64_t newest = 0;
  for (const auto& [id, image] : listed_) newest = std::max(newest, image.updated_at);
  if (!full && newest > 0) {
    // Only what changed since the newest record seen, by Glance's own clock; gte, because
    // updated_at has whole seconds.
    images = listed_;
    std::string since = "&updated_at=gte:" + FormatIso8601(newest);
    GLANCEFS_RETURN_IF_ERROR(ListAll(base + since, &images));
    GLANCEFS_RETURN_IF_ERROR(ListAll(base + since + "&os_hidden=true", &images));
    ++since_full_;
  } else {
    GLANCEFS_RETURN_IF_ERROR(ListAll(base, &images));
    GLANCEFS_RETURN_IF_ERROR(ListAll(base + "&os_hidden=true", &images));
    have_full_ = true;
    since_full_ = 0;
  }
  listed_ = images;
  MutexLock lock(&mu_);
  auto snap = std::make_shared<CatalogSnapshot>();
  bool same = snapshot_ && snapshot_->images.size() == images.size();
  size_t i = 0;
  for (auto& [id, image] : images) {
    // Keep the old record object when nothing changed, so the file system sees no change.
    if (same && *snapshot_->images[i] == image) {
      snap->images.push_back(snapshot_->images[i]);
    } else {
      same = false;
      snap->images.push_back(std::make_shared<const ImageRecord>(std::move(image)));
    }
    ++i;
  }
  if (same) return snapshot_;
  snapshot_ = std::move(snap);
  return snapshot_;
}

Result<std::shared_ptr<ByteSource>> GlanceCatalog::OpenData(const ImageRecord& record) {
  if (!record.size) return Status::NotFound("image " + record.id + " has no data");
  std::string key = record.id + "@" + record.data_version;
  MutexLock lock(&mu_);
  if (auto existing = sources_[key].lock()) return existing;
  auto source =
      std::make_shared<GlanceByteSource>(http_, tokens_, options_, record.id, *record.size);
  sources_[key] = source;
  for (auto it = sources_.begin(); it != sources_.end();) {  // forget expired entries
    it = it->second.expired() ? sources_.erase(it) : std::next(it);
  }
  return std::shared_ptr<ByteSource>(source);
}

GlanceByteSource::GlanceByteSource(std::shared_ptr<HttpClient> http,
                                   std::shared_ptr<TokenSource> tokens, GlanceOptions options,
                                   std::string image_id, uint64_t size)
    : http_(std::move(http)),
      tokens_(std::move(tokens)),
      options_(std::move(options)),
      id_(std::move(image_id)),
      url_(options_.endpoint + "/v2/images/" + id_ + "/file"),
      size_(size) {}

GlanceByteSource::~GlanceByteSource() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.SignalAll();
  if (stream_thread_.joinable()) stream_thread_.join();
  if (spool_fd_ >= 0) ::close(spool_fd_);
}

Status GlanceByteSource::ReadAt(uint64_t off, size_t n, char* dst) {
  if (off > size_ || n > size_ - off) return Status::OutOfRange("image " + id_ + ": read past end");
  if (n == 0) return Status::Ok();
  if (!range_refused_) {
    Status s = ReadRange(off, n, [&](size_t) { return IoSlice{dst, n}; }, nullptr);
    if (s.ok() || !range_refused_) return s;
  }
  return ReadStreamed(off, n, dst);
}

Status GlanceByteSource::ReadScattered(uint64_t off, uint64_t n, const SliceFor& slice_for,
                                       const SliceDone& done) {
  if (off > size_ || n > size_ - off) return Status::OutOfRange("image " + id_ + ": read past end");
  if (n == 0) return Status::Ok();
  // The whole image is always one request (ReadRange sends no Range for it); a part of an image
  // whose store refuses Range is not: the caller reads it whole instead (byte_source.h).
  if (range_refused_ && n != size_) {
    return Status::NotSupported("image " + id_ + ": its store refuses Range; read it whole");
  }
  return ReadRange(off, n, slice_for, done);
}

Status GlanceByteSource::ReadRange(uint64_t off, uint64_t n, const SliceFor& slice_for,
                                   const SliceDone& done) {
  SliceFiller filler(n, slice_for, done);
  bool no_buffer = false;
  BodySink sink = [&](const HttpResponse& head, const char* data, size_t len) {
    // Only the exact bytes are data: a 200 to a Range (the image from its start) or another
    // range is refused before a byte of it is placed, and judged below.
    if (filler.got() == 0 && !ExactAnswer(head.status, head.content_range, off, n, size_)) {
      return false;
    }
    if (len > n - filler.got()) return false;  // more than asked for: never returned as data
    no_buffer = !filler.Place(data, len);
    return !no_buffer;
  };
  // The whole image is asked for without a Range: every store serves that, seekable or not.
  std::vector<std::string> headers;
  if (off != 0 || n != size_) {
    char range[80];
    std::snprintf(range, sizeof range, "Range: bytes=%llu-%llu",
                  static_cast<unsigned long long>(off), static_cast<unsigned long long>(off + n - 1));
    headers.emplace_back(range);
  }
  GLANCEFS_ASSIGN_OR_RETURN(HttpResponse r, GlanceGet(*http_, *tokens_, options_, url_, headers,
                                                      &sink, 0, [&] { filler.Restart(); }));
  if (no_buffer) return Status::IOError("image " + id_ + ": no buffer for the data read");
  return JudgeRangeAnswer(r, off, n, filler.got());
}

Status GlanceByteSource::JudgeRangeAnswer(const HttpResponse& r, uint64_t off, uint64_t n,
                                          uint64_t got) {
  // Only failures need the description: no string is built on the read path.
  auto what = [&] {
    return "image " + id_ + ": GET bytes " + std::to_string(off) + "+" + std::to_string(n);
  };
  if (ExactAnswer(r.status, r.content_range, off, n, size_)) {
    if (r.aborted) return Status::Corruption(what() + ": body longer than asked for");
    if (got != n) {
      return Status::Corruption(what() + ": body ended after " + std::to_string(got) + " bytes");
    }
    return Status::Ok();
  }
  const bool whole = off == 0 && n == size_;
  uint64_t a = 0, b = 0, total = 0;
  bool ranged = ParseContentRange(r.content_range, &a, &b, &total);
  // A 206 without a Content-Range, or with the whole image when a part was asked for: the
  // server ignored Range, as a 200 would say.
  bool ignored = r.status == 200 || (r.status == 206 && (!ranged || (a == 0 && b + 1 == size_)));
  if (r.status == 206 && !ignored) {
    return Status::Corruption(what() + ": answered Content-Range '" + r.content_range + "'");
  }
  if (!whole && (r.status == 400 || ignored)) {
    // The store cannot seek (400), or the server ignored Range: read the image whole instead.
    if (!range_refused_.exchange(true)) {
      LOG_WARNING("image %s: Glance answered a Range with HTTP %ld; reading it as one stream",
                  id_.c_str(), r.status);
    }
    return Status::NotSupported(what() + ": Range refused");
  }
  if (r.status == 204) return Status::Corruption("image " + id_ + ": Glance has no data for it");
  if (r.status == 404) return Status::IOError("image " + id_ + ": deleted from Glance");
  if (r.status == 401 || r.status == 403) {
    return Status::PermissionDenied(what() + ": HTTP " + std::to_string(r.status));
  }
  if (r.status == 416) return Status::Corruption(what() + ": HTTP 416, the image is shorter");
  return Status::Unavailable(what() + ": HTTP " + std::to_string(r.status));
}

Status GlanceByteSource::ReadStreamed(uint64_t off, size_t n, char* dst) {
  MutexLock lock(&mu_);
  if (!streaming_ && streamed_ < off + n) {
    if (stream_thread_.joinable()) stream_thread_.join();  // a finished, failed attempt
    if (spool_fd_ < 0) {
      spool_fd_ = ::open(options_.spool_dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
      if (spool_fd_ < 0) return Status::FromErrno(errno, "spool in " + options_.spool_dir);
    }
    streamed_ = 0;
    stream_error_ = Status::Ok();
    streaming_ = true;
    stream_thread_ = NamedThread("gfs-stream", [this] { Stream(); });
  }
  while (streamed_ < off + n && streaming_ && !stopping_) cv_.Wait(&mu_);
  if (streamed_ < off + n) {
    return stream_error_.ok() ? Status::Unavailable("image " + id_ + ": stream stopped")
                              : stream_error_;
  }
  int fd = spool_fd_;
  lock.Unlock();
  ssize_t got = ReadFullyAt(fd, dst, n, off);
  if (got < 0 || static_cast<size_t>(got) < n) {
    return Status::FromErrno(got < 0 ? static_cast<int>(-got) : EIO, "spool of image " + id_);
  }
  return Status::Ok();
}

void GlanceByteSource::Stream() {
  // The whole image in one request, spooled 1 MiB at a time as it arrives.
  constexpr uint64_t kChunk = 1 << 20;
  std::vector<char> buffer(kChunk);
  Status spool_error;  // this thread's only
  Status error = ReadRange(
      0, size_,
      [&](size_t i) -> IoSlice {
        MutexLock lock(&mu_);
        if (stopping_ || !spool_error.ok()) return {nullptr, 0};  // ends the request
        return {buffer.data(), static_cast<size_t>(std::min(kChunk, size_ - i * kChunk))};
      },
      [&](size_t i) {
        uint64_t at = i * kChunk, len = std::min(kChunk, size_ - at);
        if (int err = WriteFullyAt(spool_fd_, buffer.data(), len, at); err != 0) {
          spool_error = Status::FromErrno(err, "spool of image " + id_);
          return;
        }
        MutexLock lock(&mu_);
        streamed_ = at + len;
        cv_.SignalAll();
      });
  if (!spool_error.ok()) error = spool_error;
  MutexLock lock(&mu_);
  if (!error.ok() && !stopping_) {  // a stream cut short by closing the source is no error
    LOG_ERROR("image %s: reading it whole: %s", id_.c_str(), error.ToString().c_str());
    streamed_ = 0;  // nothing unverified is served; the next read starts a new stream
  }
  stream_error_ = error;
  streaming_ = false;
  cv_.SignalAll();
}

}  // namespace glancefs::backends
