// A small HTTP/1.1 server on 127.0.0.1 for tests: one thread per connection, keep-alive, and a
// handler that decides each answer. Faults are part of the answer: a delay before the body, a
// body cut short, a connection reset. Counts requests so tests can assert on them.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace glancefs::testing {

struct HttpRequest {
  std::string method;
  std::string target;  // path and query
  std::string body;
  std::map<std::string, std::string> headers;  // lower-case names
};

struct HttpAnswer {
  int status = 200;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  long content_length = -1;      // -1: body.size(); else sent as is (to lie)
  size_t send_bytes = SIZE_MAX;  // send only this much of the body, then close
  int delay_ms = 0;              // before the body
  bool reset = false;            // close the connection without answering
};

class TestHttpServer {
 public:
  using Handler = std::function<HttpAnswer(const HttpRequest&)>;
  explicit TestHttpServer(Handler handler) : handler_(std::move(handler)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 64);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~TestHttpServer() {
    stop_ = true;
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    acceptor_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (int c : conns_) ::shutdown(c, SHUT_RDWR);
    for (auto& t : workers_) t.join();
    for (int c : conns_) ::close(c);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return requests_; }

 private:
  void Accept() {
    while (!stop_) {
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::lock_guard<std::mutex> lock(mu_);
      conns_.push_back(c);
      workers_.emplace_back([this, c] { Serve(c); });
    }
  }
  void Serve(int c) {
    std::string buf;
    char tmp[8192];
    for (;;) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
        if (n <= 0) return Close(c);
        buf.append(tmp, n);
      }
      HttpRequest req;
      std::string head = buf.substr(0, end);
      buf.erase(0, end + 4);
      size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
      req.method = head.substr(0, sp1);
      req.target = head.substr(sp1 + 1, sp2 - sp1 - 1);
      size_t pos = head.find("\r\n");
      while (pos != std::string::npos) {
        size_t next = head.find("\r\n", pos + 2);
        std::string line =
            head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
        size_t colon = line.find(':');
        if (colon != std::string::npos) {
          std::string name = line.substr(0, colon);
          for (char& ch : name)
            ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          req.headers[name] = line.substr(line.find_first_not_of(' ', colon + 1));
        }
        pos = next;
      }
      if (auto it = req.headers.find("content-length"); it != req.headers.end()) {
        size_t want = std::stoul(it->second);
        while (buf.size() < want) {
          ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
          if (n <= 0) return Close(c);
          buf.append(tmp, n);
        }
        req.body = buf.substr(0, want);
        buf.erase(0, want);
      }
      ++requests_;
      HttpAnswer a = handler_(req);
      if (a.reset) {
        linger l{1, 0};  // RST instead of FIN
        ::setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        return Close(c);
      }
      std::string out = "HTTP/1.1 " + std::to_string(a.status) + " X\r\n";
      for (auto& [k, v] : a.headers) out += k + ": " + v + "\r\n";
      long length = a.content_length >= 0 ? a.content_length : static_cast<long>(a.body.size());
      out += "Content-Length: " + std::to_string(length) + "\r\n\r\n";
      if (!SendAll(c, out)) return Close(c);
      if (a.delay_ms) std::this_thread::sleep_for(std::chrono::milliseconds(a.delay_ms));
      std::string body = a.body.substr(0, std::min(a.send_bytes, a.body.size()));
      if (!SendAll(c, body) || a.send_bytes != SIZE_MAX ||
          static_cast<long>(a.body.size()) != length) {
        return Close(c);
      }
    }
  }
  static bool SendAll(int c, const std::string& s) {
    for (size_t done = 0; done < s.size();) {
      ssize_t n = ::send(c, s.data() + done, s.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += n;
    }
    return true;
  }
  void Close(int c) { ::shutdown(c, SHUT_RDWR); }

  Handler handler_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
  std::thread acceptor_;
  std::mutex mu_;
  std::vector<int> conns_;
  std::vector<std::thread> workers_;
};

}  // namespace glancefs::testing
