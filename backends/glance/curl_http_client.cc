#include <curl/curl.h>

#include <cstring>
#include <vector>

#include "backends/glance/http_client.h"
#include "fs/base/mutex.h"

namespace glancefs::backends {
namespace {

std::once_flag g_curl_init;

struct Transfer {
  CURL* handle = nullptr;
  const BodySink* sink = nullptr;
  size_t max_body = 0;
  HttpResponse* response = nullptr;
  bool overflow = false;
};

// Bodies of answers that are not 2xx are kept for diagnostics, up to this much.
constexpr size_t kMaxErrorBody = 64 << 10;

size_t OnBody(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nmemb;
  if (t->sink) {
    // Only a 2xx body is data: an error page (Glance's are HTML) must never reach the sink.
    curl_easy_getinfo(t->handle, CURLINFO_RESPONSE_CODE, &t->response->status);
    long status = t->response->status;
    if (status >= 200 && status < 300) return (*t->sink)(*t->response, data, n) ? n : 0;
    if (t->response->body.size() + n <= kMaxErrorBody) t->response->body.append(data, n);
    return n;
  }
  if (t->response->body.size() + n > t->max_body) {
    t->overflow = true;
    return 0;
  }
  t->response->body.append(data, n);
  return n;
}

// Keeps the headers this client reads; names are case-insensitive.
size_t OnHeader(char* data, size_t size, size_t nmemb, void* user) {
  auto* t = static_cast<Transfer*>(user);
  size_t n = size * nmemb;
  std::string line(data, n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.rfind("HTTP/", 0) == 0) {  // a new response (after a redirect or 100): start over
    t->response->content_range.clear();
    t->response->retry_after.clear();
    return n;
  }
  size_t colon = line.find(':');
  if (colon == std::string::npos) return n;
  std::string name = line.substr(0, colon);
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  size_t start = line.find_first_not_of(' ', colon + 1);
  std::string value = start == std::string::npos ? "" : line.substr(start);
  if (name == "content-range") t->response->content_range = value;
  if (name == "retry-after") t->response->retry_after = value;
  if (name == "x-subject-token") t->response->subject_token = value;
  return n;
}

class CurlHttpClient final : public HttpClient {
 public:
  explicit CurlHttpClient(const HttpOptions& options) : options_(options) {
    std::call_once(g_curl_init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }
  ~CurlHttpClient() override {
    for (CURL* h : idle_) curl_easy_cleanup(h);
  }

  Result<HttpResponse> Get(const std::string& url, const std::vector<std::string>& headers,
                           const BodySink* sink, size_t max_body) override {
    return Perform(url, headers, nullptr, sink, max_body);
  }

  Result<HttpResponse> Post(const std::string& url, const std::vector<std::string>& headers,
                            const std::string& body, size_t max_body) override {
    return Perform(url, headers, &body, nullptr, max_body);
  }

 private:
  Result<HttpResponse> Perform(const std::string& url, const std::vector<std::string>& headers,
                               const std::string* post_body, const BodySink* sink,
                               size_t max_body) {
    CURL* h = Take();
    if (h == nullptr) return Status::IOError("curl: cannot create a handle");
    HttpResponse response;
    Transfer t{h, sink, max_body, &response, false};
    struct curl_slist* list = nullptr;
    for (const auto& header : headers) list = curl_slist_append(list, header.c_str());
    // "Expect:" off, and no compression: bodies are image bytes.
    list = curl_slist_append(list, "Expect:");
    char error[CURL_ERROR_SIZE] = "";
    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, options_.connect_timeout_ms);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, options_.low_speed_bytes);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, options_.low_speed_time_s);
    if (!sink) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, options_.request_timeout_ms);
    curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 512L * 1024);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);  // a redirect is an answer, never followed
    if (post_body) {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, post_body->data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(post_body->size()));
    }
    if (!options_.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, options_.ca_file.c_str());
    if (options_.insecure) {
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    CURLcode rc = curl_easy_perform(h);
    curl_slist_free_all(list);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &response.status);
    curl_off_t length = -1;
    if (curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &length) == CURLE_OK &&
        length >= 0) {
      response.content_length = static_cast<uint64_t>(length);
    }
    Give(h, rc == CURLE_OK);
    if (t.overflow)
      return Status::Corruption("response body from " + Redact(url) + " is too large");
    if (rc == CURLE_WRITE_ERROR && sink) {
      response.aborted = true;  // the caller decides what the status means
      return response;
    }
    if (rc != CURLE_OK) {
      return Status::Unavailable(std::string(post_body ? "POST " : "GET ") + Redact(url) + ": " +
                                 (error[0] ? std::string(error) : curl_easy_strerror(rc)));
    }
    return response;
  }

  // URLs never carry credentials here, but a query string could: log the path only.
  static std::string Redact(const std::string& url) { return url.substr(0, url.find('?')); }

  CURL* Take() {
    {
      MutexLock lock(&mu_);
      if (!idle_.empty()) {
        CURL* h = idle_.back();
        idle_.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }
  // Returns a handle to the pool (its connection stays alive), or drops it after a failure.
  void Give(CURL* h, bool healthy) {
    if (healthy) {
      MutexLock lock(&mu_);
      if (idle_.size() < kMaxIdle) {
        idle_.push_back(h);
        return;
      }
    }
    curl_easy_cleanup(h);
  }

  static constexpr size_t kMaxIdle = 32;
  const HttpOptions options_;
  Mutex mu_;
  std::vector<CURL*> idle_ GUARDED_BY(mu_);
};

}  // namespace

std::unique_ptr<HttpClient> NewCurlHttpClient(const HttpOptions& options) {
  return std::make_unique<CurlHttpClient>(options);
}

}  // namespace glancefs::backends
