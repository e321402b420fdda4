#include "tools/glancefs/metrics_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cstdlib>

#include "fs/base/log.h"
#include "fs/base/thread.h"

namespace glancefs::tools {

Result<std::pair<std::string, int>> ParseListen(const std::string& listen) {
  std::string host = "127.0.0.1", port = listen;
  if (!listen.empty() && listen[0] == '[') {
    size_t close = listen.find("]:");
    if (close == std::string::npos) return Status::InvalidArgument("metrics_listen: bad [IPv6]:PORT");
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else if (size_t colon = listen.rfind(':'); colon != std::string::npos) {
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  char* end = nullptr;
  long n = std::strtol(port.c_str(), &end, 10);
  if (host.empty() || port.empty() || *end != '\0' || n < 0 || n > 65535) {
    return Status::InvalidArgument("metrics_listen '" + listen + "': expected [HOST:]PORT");
  }
  return std::make_pair(host, static_cast<int>(n));
}

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                            std::function<std::string()> metrics) {
  GLANCEFS_ASSIGN_OR_RETURN(auto where, ParseListen(listen));
  std::unique_ptr<MetricsServer> out(new MetricsServer());
  out->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *out->server_;
  server.new_task_queue = [] { return new httplib::ThreadPool(1); };
  server.set_socket_options([](socket_t sock) {  // SO_REUSEADDR only: a taken port fails
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  server.set_read_timeout(5, 0);
  server.set_write_timeout(5, 0);
  server.Get("/metrics", [metrics = std::move(metrics)](const httplib::Request&,
                                                        httplib::Response& res) {
    res.set_content(metrics(), "text/plain; version=0.0.4; charset=utf-8");
  });
  int port = where.second;
  if (port == 0) {
    port = server.bind_to_any_port(where.first);
    if (port < 0) return Status::IOError("metrics_listen " + listen + ": cannot bind");
  } else if (!server.bind_to_port(where.first, port)) {
    return Status::IOError("metrics_listen " + listen + ": cannot bind (address in use?)");
  }
  out->address_ = where.first + ":" + std::to_string(port);
  out->thread_ = NamedThread("gfs-metrics", [&server] { server.listen_after_bind(); });
  LOG_INFO("metrics on http://%s/metrics", out->address_.c_str());
  return out;
}

MetricsServer::~MetricsServer() {
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
}

}  // namespace glancefs::tools
