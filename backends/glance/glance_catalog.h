// The Glance v2 backend: GlanceCatalog lists images, GlanceByteSource reads their data.
//
// Listing (GET /v2/images): pages of `page_limit` images following `next` (an exactly full
// page is followed by an empty one), then the hidden images (os_hidden=true), which the default
// list leaves out. What the token may see is what the mount shows. Between full listings (every
// `relist`-th refresh) a refresh asks only for what changed: images with updated_at at or
// after the newest one already seen (Glance's clock, not ours), merged into the last listing.
// Deletions and lost visibility show up at the next full listing.
//
// Data (GET /v2/images/<id>/file): single `Range: bytes=a-b` requests, checked strictly: the
// answer must be 206 with exactly that Content-Range and exactly that many bytes; anything else
// is an error, never data. Glance has no HEAD (405): sizes come from the record. Content-MD5 on
// a 206 is the whole image's and is ignored. The whole image is asked for without a Range (a
// plain 200). Stores that cannot seek (rbd, swift, s3, http) answer a Range with 400, and some
// deployments with the whole body: from then on a ReadScattered of part of the image answers
// NotSupported, so the block cache reads it whole, storing it as it arrives (byte_source.h),
// and ReadAt (glancefs -o nocache) falls back to one sequential stream of the image, spooled to
// an unlinked temporary file, its readers waiting for their bytes. Transport failures and 5xx
// are retried with backoff (Retry-After honoured, up to a cap); 401 asks the TokenSource for a
// new token once.
//
// Thread-safe. Secrets: the token is sent as X-Auth-Token and never logged.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "backends/glance/http_client.h"
#include "fs/base/catalog.h"
#include "fs/base/mutex.h"

namespace glancefs::backends {

// Where tokens come from: a fixed token today; Keystone (with renewal) plugs in here.
class TokenSource {
 public:
  virtual ~TokenSource() = default;
  // The token to send; empty means none (an unauthenticated Glance).
  virtual Result<std::string> Token() = 0;
  // `token` was rejected (401): the next Token() should be a fresh one if possible.
  virtual void Invalidate(const std::string& token) = 0;
};

// The operator's token (token_file or $OS_AUTH_TOKEN): Set replaces it (a reload).
class StaticToken final : public TokenSource {
 public:
  explicit StaticToken(std::string token) : token_(std::move(token)) {}
  Result<std::string> Token() override EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    return token_;
  }
  void Invalidate(const std::string&) override {}
  void Set(std::string token) EXCLUDES(mu_) {
    MutexLock lock(&mu_);
    token_ = std::move(token);
  }

 private:
  Mutex mu_;
  std::string token_ GUARDED_BY(mu_);
};

struct GlanceOptions {
  std::string endpoint;        // http(s)://host:port, no trailing slash
  unsigned page_limit = 1000;  // Glance caps it at api_limit_max (1000)
  // Every relist-th refresh lists every image; the others ask only for images updated since
  // the newest one seen (updated_at=gte:), which cannot see deletions. 1: always everything.
  unsigned relist = 10;
  unsigned retries = 3;        // per request, after the first try
  unsigned max_backoff_ms = 5000;
  std::string spool_dir = "/var/tmp";  // for images whose store refuses Range
};

class GlanceCatalog final : public Catalog {
 public:
  GlanceCatalog(std::shared_ptr<HttpClient> http, std::shared_ptr<TokenSource> tokens,
                GlanceOptions options);

  std::string Describe() const override { return options_.endpoint; }
  Result<std::shared_ptr<const CatalogSnapshot>> Refresh() override;
  // One source per image version, shared by every open file.
  Result<std::shared_ptr<ByteSource>> OpenData(const ImageRecord& record) override;

 private:
  Status ListAll(const std::string& first_url, std::map<std::string, ImageRecord>* out);

  const std::shared_ptr<HttpClient> http_;
  const std::shared_ptr<TokenSource> tokens_;
  const GlanceOptions options_;
  // Refresh's own state (refreshes do not overlap; refresh_mu_ makes sure).
  Mutex refresh_mu_ ACQUIRED_BEFORE(mu_);
  std::map<std::string, ImageRecord> listed_ GUARDED_BY(refresh_mu_);  // the last listing
  unsigned since_full_ GUARDED_BY(refresh_mu_) = 0;  // refreshes since the last full listing
  bool have_full_ GUARDED_BY(refresh_mu_) = false;
  Mutex mu_;  // guards the two below
  std::shared_ptr<const CatalogSnapshot> snapshot_ GUARDED_BY(mu_);
  std::map<std::string, std::weak_ptr<ByteSource>> sources_ GUARDED_BY(mu_);  // by id + version
};

// GET with the token, retries and backoff. Shared by the catalog and the byte source.
Result<HttpResponse> GlanceGet(HttpClient& http, TokenSource& tokens, const GlanceOptions& options,
                               const std::string& url, std::vector<std::string> headers,
                               const BodySink* sink, size_t max_body,
                               const std::function<void()>& before_retry = nullptr);

class GlanceByteSource final : public ByteSource {
 public:
  GlanceByteSource(std::shared_ptr<HttpClient> http, std::shared_ptr<TokenSource> tokens,
                   GlanceOptions options, std::string image_id, uint64_t size);
  ~GlanceByteSource() override;
  GlanceByteSource(const GlanceByteSource&) = delete;
  GlanceByteSource& operator=(const GlanceByteSource&) = delete;

  uint64_t size() const override { return size_; }
  // Glance spends CPU per request: a sequential reader is best served by one GET.
  bool PrefersOneStream() const override { return true; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  // One request for all the slices, each reported as its last byte arrives. NotSupported for
  // a part of an image whose store refuses Range.
  Status ReadScattered(uint64_t off, uint64_t n, const SliceFor& slice_for,
                       const SliceDone& done = nullptr) override;

 private:
  Status ReadRange(uint64_t off, uint64_t n, const SliceFor& slice_for, const SliceDone& done);
  // ReadRange's outcome from Glance's answer, `got` bytes of whose body were placed.
  Status JudgeRangeAnswer(const HttpResponse& r, uint64_t off, uint64_t n, uint64_t got);
  Status ReadStreamed(uint64_t off, size_t n, char* dst);
  void Stream();

  const std::shared_ptr<HttpClient> http_;
  const std::shared_ptr<TokenSource> tokens_;
  const GlanceOptions options_;
  const std::string id_;
  const std::string url_;
  const uint64_t size_;
  std::atomic<bool> range_refused_{false};

  // The sequential fallback.
  Mutex mu_;
  CondVar cv_;  // streamed_, streaming_ or stopping_ changed
  bool streaming_ GUARDED_BY(mu_) = false;
  bool stopping_ GUARDED_BY(mu_) = false;
  uint64_t streamed_ GUARDED_BY(mu_) = 0;  // bytes of the image in spool_fd_
  Status stream_error_ GUARDED_BY(mu_);
  int spool_fd_ = -1;  // opened under mu_ before the first stream thread starts, which writes it
  std::thread stream_thread_ GUARDED_BY(mu_);
};

}  // namespace glancefs::backends
