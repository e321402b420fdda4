// HttpClient: the one seam between glancefs and HTTP (Glance, later Keystone and object stores).
//
// The Glance backend talks only to this interface, so tests can put a local server or a
// fault-injecting client behind it. NewCurlHttpClient is the real one: libcurl easy handles kept
// in a pool, so connections stay alive between requests; timeouts for connecting, for the whole
// request and for stalls. Thread-safe: any number of concurrent Get calls.
//
// A Get reports transport failures (refused, reset, timed out, TLS) as Status::Unavailable; any
// HTTP answer, 500 included, is a response for the caller to classify.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "fs/base/status.h"

namespace glancefs::backends {

struct HttpResponse {
  long status = 0;
  std::string body;  // collected when the request had no sink, or the answer was not 2xx
  std::string content_range;
  std::optional<uint64_t> content_length;
  std::string retry_after;
  std::string subject_token;  // X-Subject-Token (Keystone)
  bool aborted = false;       // the sink refused more of the body (the status is still valid)
};

// Receives a 2xx answer's body as it arrives, with the answer's status and headers so far in
// `head` (any other answer's body goes to HttpResponse::body, truncated), so a sink can refuse
// an answer before it takes a byte of it. Returns false to abort the transfer (the Get then
// returns the response with `aborted` set).
using BodySink = std::function<bool(const HttpResponse& head, const char* data, size_t n)>;

struct HttpOptions {
  long connect_timeout_ms = 5000;
  // A transfer that moves fewer than low_speed_bytes per second for low_speed_time_s is
  // abandoned: a stalled server becomes an error in bounded time, whatever the body size.
  long low_speed_bytes = 1024;
  long low_speed_time_s = 15;
  // Upper bound for a whole request without a sink (catalog listings).
  long request_timeout_ms = 120000;
  std::string ca_file;    // TLS: extra CA bundle (-o cacert=)
  bool insecure = false;  // TLS: skip verification (-o insecure)
};

class HttpClient {
 public:
  virtual ~HttpClient() = default;
  // GET `url` with `headers` ("Name: value"). The body goes to `sink` if given, else into
  // HttpResponse::body, at most `max_body` bytes (more is an error).
  virtual Result<HttpResponse> Get(const std::string& url, const std::vector<std::string>& headers,
                                   const BodySink* sink, size_t max_body) = 0;
  // POST `body`; the answer's body is collected (at most `max_body` bytes). Never retried here.
  virtual Result<HttpResponse> Post(const std::string& url, const std::vector<std::string>& headers,
                                    const std::string& body, size_t max_body) = 0;
};

std::unique_ptr<HttpClient> NewCurlHttpClient(const HttpOptions& options);

}  // namespace glancefs::backends
