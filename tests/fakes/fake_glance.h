// A fake Glance v2 API for tests, served by TestHttpServer: images with paging and a hidden
// one, data with or without Range support, token checks, and a hook to inject faults.
#pragma once

#include <openssl/evp.h>

#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <string>

#include "fs/base/hash.h"
#include "tests/fakes/http_server.h"

namespace glancefs::testing {

// A Glance with `count` images (and one hidden), paging, and a data file per image.
struct FakeGlance {
  // kIgnore206: the whole image under 206, with a Content-Range saying so.
  enum class RangeMode { kHonour, kRefuse400, kIgnore200, kIgnore206 };
  int count = 5;
  std::string data;  // every image's bytes, unless `files` has its own
  std::map<std::string, std::pair<std::string, std::string>> files;  // id -> (disk_format, bytes)
  RangeMode range_mode = RangeMode::kHonour;
  // Per request: return true and fill *answer to inject a fault.
  std::function<bool(const HttpRequest&, HttpAnswer*)> fault;
  std::string required_token;  // set before serving; while serving, RotateToken
  // Real MD5 checksums (what a glancefs with a cache verifies), instead of "c<i>".
  bool md5_checksums = false;

  FakeGlance() {
    std::mt19937 rng(7);
    data.resize(3 << 20);
    for (char& c : data) c = static_cast<char>(rng());
  }
  static std::string Id(int i) {
    char id[64];
    std::snprintf(id, sizeof id, "00000000-0000-4000-8000-%012d", i);
    return id;
  }
  const std::string& Bytes(const std::string& id) const {
    auto it = files.find(id);
    return it == files.end() ? data : it->second.second;
  }
  std::string Record(int i, bool hidden) const {
    auto it = files.find(Id(i));
    std::string format = it == files.end() ? "raw" : it->second.first;
    return "{\"id\": \"" + Id(i) + "\", \"name\": \"img" + std::to_string(i) +
           "\", \"status\": \"active\", \"disk_format\": \"" + format +
           "\", \"os_hidden\": " + (hidden ? "true" : "false") +
           ", \"size\": " + std::to_string(Bytes(Id(i)).size()) + ", \"checksum\": \"" +
           Checksum(i) + "\", \"updated_at\": \"2024-01-01T00:00:00Z\"}";
  }
  std::string Checksum(int i) const {
    if (!md5_checksums) return "c" + std::to_string(i);
    const std::string& bytes = Bytes(Id(i));
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_md5(), nullptr);
    return HexOf(md, len);
  }
  // The token Glance accepts from now on, while the server runs.
  void RotateToken(std::string token) {
    std::lock_guard<std::mutex> lock(token_mu_);
    required_token = std::move(token);
  }
  HttpAnswer Handle(const HttpRequest& req) {
    HttpAnswer a;
    if (fault && fault(req, &a)) return a;
    std::string token;
    {
      std::lock_guard<std::mutex> lock(token_mu_);
      token = required_token;
    }
    if (!token.empty()) {
      auto it = req.headers.find("x-auth-token");
      if (it == req.headers.end() || it->second != token) {
        a.status = 401;
        a.body = "<h1>401 Unauthorized</h1>";
        return a;
      }
    }
    const std::string& t = req.target;
    if (t.rfind("/v2/images?", 0) == 0) {
      bool hidden = t.find("os_hidden=true") != std::string::npos;
      int limit = std::stoi(t.substr(t.find("limit=") + 6));
      int start = 0;
      if (auto m = t.find("marker="); m != std::string::npos) {
        start = std::stoi(t.substr(m + 7 + 24)) + 1;
      }
      int first = hidden ? count : 0, end = hidden ? count + 1 : count;
      start = std::max(start, first);
      std::string body = "{\"images\": [";
      int n = 0;
      for (int i = start; i < end && n < limit; ++i, ++n) {
        body += (n ? ", " : "") + Record(i, hidden);
      }
      body += "], \"schema\": \"/v2/schemas/images\"";
      if (n == limit) {  // Glance: a full page always has a next, even if nothing follows
        body += ", \"next\": \"/v2/images?limit=" + std::to_string(limit) +
                (hidden ? "&os_hidden=true" : "") + "&marker=" + Id(start + n - 1) + "\"";
      }
      a.body = body + "}";
      return a;
    }
    if (t.find("/file") != std::string::npos) {
      const std::string id = t.substr(11, t.find("/file") - 11);  // "/v2/images/<id>/file"
      const std::string& data = Bytes(id);
      auto range = req.headers.find("range");
      if (range == req.headers.end() || range_mode == RangeMode::kIgnore200) {
        a.body = data;
        return a;
      }
      if (range_mode == RangeMode::kRefuse400) {
        a.status = 400;
        a.body = "<h1>400 Bad Request</h1> Range not supported<br />";
        return a;
      }
      unsigned long long x, y;
      std::sscanf(range->second.c_str(), "bytes=%llu-%llu", &x, &y);
      if (range_mode == RangeMode::kIgnore206) x = 0, y = data.size() - 1;
      a.status = 206;
      a.body = data.substr(x, y - x + 1);
      a.headers.push_back({"Content-Range", "bytes " + std::to_string(x) + "-" + std::to_string(y) +
                                                "/" + std::to_string(data.size())});
      return a;
    }
    a.status = 404;
    return a;
  }

 private:
  std::mutex token_mu_;
};

}  // namespace glancefs::testing
