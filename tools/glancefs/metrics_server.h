// MetricsServer: -o metrics_listen=[HOST:]PORT serves the mount's metrics.prom over HTTP for
// Prometheus to scrape: GET /metrics, text format 0.0.4 (cpp-httplib, one worker thread).
//
// Contract: bound to 127.0.0.1 unless HOST says otherwise; a port already taken fails Start
// (no SO_REUSEPORT: two mounts never share a port silently); other paths answer 404, other
// methods 405. The metrics function is called on the server's thread for each scrape.
// Stopped and joined by the destructor.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "fs/base/status.h"

namespace httplib {
class Server;
}

namespace glancefs::tools {

class MetricsServer {
 public:
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& listen,
                                                      std::function<std::string()> metrics);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // "127.0.0.1:9105", as bound (the port the kernel picked for port 0).
  const std::string& address() const { return address_; }

 private:
  MetricsServer() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::string address_;
};

// "9105" -> {"127.0.0.1", 9105}; "0.0.0.0:9105"; "[::1]:9105". InvalidArgument otherwise.
Result<std::pair<std::string, int>> ParseListen(const std::string& listen);

}  // namespace glancefs::tools
