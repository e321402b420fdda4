// The mount as a node service: metrics for Prometheus (and a real Prometheus scraping them), the
// config file, systemd's notify protocol and a reload that never unmounts.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>

#include "tests/integration/mount_fixture.h"

namespace glancefs::itest {
namespace {

// -o metrics_listen serves metrics.prom for Prometheus; a port already taken fails the mount.
TEST_F(MountTest, MetricsOverHttpForPrometheus) {
  AddImage(catalog_, MakeRaw("a.raw"), "--name one");
  const std::string listen = "127.0.0.1:" + std::to_string(FreePort());
  Mount m("dir:" + catalog_, "-o refresh=1,metrics_listen=" + listen);
  ASSERT_TRUE(m.mounted());
  std::string headers = MustSh("curl -sS -D - -o " + work_ + "/scrape http://" + listen + "/metrics");
  EXPECT_NE(headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << headers;
  std::string scrape = ReadFile(work_ + "/scrape");
  EXPECT_NE(scrape.find("\nglancefs_catalog_images 1\n"), std::string::npos) << scrape;
  EXPECT_NE(scrape.find("glancefs_catalog_last_refresh_timestamp_seconds "), std::string::npos);
  EXPECT_NE(scrape.find("# TYPE glancefs_cache_hits_total"), std::string::npos) << scrape;
  EXPECT_EQ(MustSh("curl -s -o /dev/null -w '%{http_code}' http://" + listen + "/other"), "404");
  // Every sample line is NAME{LABELS} VALUE with a TYPE line before its family.
  MustSh("awk '/^#/ { next } !/^[a-z_]+(\\{[^}]*\\})? [0-9.e+-]+$/ { print; bad = 1 } END { exit bad }' " +
         work_ + "/scrape");
  std::string other = work_ + "/mnt2";
  fs::create_directory(other);
  CmdResult taken = Sh(std::string(GLANCEFS_BIN) + " dir:" + catalog_ + " " + other +
                       " -f -o nocache,metrics_listen=" + listen, 30);
  EXPECT_NE(taken.status, 0);
  EXPECT_NE(taken.out.find("cannot bind"), std::string::npos) << taken.out;
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

// A real Prometheus (Debian's) scrapes the mount's /metrics; a glancefs series comes back
// through Prometheus's HTTP query API.
TEST_F(MountTest, RealPrometheusScrapesTheMount) {
  ASSERT_TRUE(HaveCommand("prometheus")) << "prometheus is missing: run scripts/install-deps.sh";
  AddImage(catalog_, MakeRaw("a.raw"), "--name one");
  AddImage(catalog_, MakeRaw("b.raw"), "--name two");
  const std::string listen = "127.0.0.1:" + std::to_string(FreePort());
  const std::string web = "127.0.0.1:" + std::to_string(FreePort());
  Mount m("dir:" + catalog_, "-o refresh=1,metrics_listen=" + listen);
  ASSERT_TRUE(m.mounted());
  WriteFile(work_ + "/prometheus.yml",
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: glancefs\n"
            "    static_configs:\n      - targets: ['" + listen + "']\n");
  std::string pid = MustSh("setsid prometheus --config.file=" + work_ + "/prometheus.yml"
                           " --storage.tsdb.path=" + work_ + "/tsdb --web.listen-address=" + web +
                           " >" + work_ + "/prometheus.log 2>&1 & echo $!");
  const std::string query = "curl -sS 'http://" + web + "/api/v1/query?query=glancefs_catalog_images'";
  std::string answer;
  for (int i = 0; i < 60; ++i) {
    answer = Sh(query, 10).out;
    if (answer.find("\"glancefs\"") != std::string::npos) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  Sh("kill " + pid + "; sleep 0.5; kill -9 " + pid + " 2>/dev/null");
  auto json = nlohmann::json::parse(answer, nullptr, false);
  ASSERT_FALSE(json.is_discarded()) << answer << ReadFile(work_ + "/prometheus.log");
  ASSERT_EQ(json["status"], "success") << answer;
  ASSERT_EQ(json["data"]["result"].size(), 1u) << answer << ReadFile(work_ + "/prometheus.log");
  EXPECT_EQ(json["data"]["result"][0]["metric"]["job"], "glancefs") << answer;
  EXPECT_EQ(json["data"]["result"][0]["value"][1], "2") << answer;
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

// --config FILE: an INI [glancefs] section gives SOURCE, MOUNTPOINT and options; the command
// line's options win; what the file gets wrong is named.
TEST_F(MountTest, ConfigFileSetsSourceAndOptionsAndTheCommandLineWins) {
  std::string id = AddImage(catalog_, MakeRaw("a.raw"), "--name conf");
  const std::string mnt = work_ + "/mnt", conf = work_ + "/glancefs.conf";
  fs::create_directory(mnt);
  WriteFile(conf, "# a comment\n[glancefs]\nsource = dir:" + catalog_ + "\nmountpoint = " + mnt +
                      "\nrefresh = 1\ncache_dir = " + work_ + "/cache\nallow_other = true\n"
                      "nocache = false\nlog_level = bogus\n");
  CmdResult bad = Sh(std::string(GLANCEFS_BIN) + " --config " + conf + " -f", 30);
  EXPECT_NE(bad.status, 0);
  EXPECT_NE(bad.out.find("log_level: must be"), std::string::npos) << bad.out;
  // The command line's log_level wins; the mount point comes from the file.
  MustSh(std::string(GLANCEFS_BIN) + " --config " + conf + " -o log_level=warning", 30);
  EXPECT_TRUE(IsMounted(mnt));
  MustSh("cmp " + mnt + "/images/" + id + "/disk.raw " + work_ + "/a.raw");
  EXPECT_NE(MustSh("grep ' " + mnt + " ' /proc/mounts"), "");
  EXPECT_NE(MustSh("grep ' " + mnt + " ' /proc/mounts").find("allow_other"), std::string::npos);
  EXPECT_TRUE(fs::exists(work_ + "/cache"));
  MustSh("fusermount3 -u " + mnt);
  for (const auto& [text, said] : std::vector<std::pair<std::string, std::string>>{
           {"source = dir:/x\n", "outside the [glancefs] section"},
           {"[glance]\nsource = dir:/x\n", "unknown section [glance]"},
           {"[glancefs]\nsource = dir:/x\nsource = dir:/y\n", "duplicate"},
           {"[glancefs]\nCache-Size = 1G\n", "not an option name"},
           {"[glancefs]\nrefresh = 1\n", "no source"},
       }) {
    WriteFile(conf, text);
    CmdResult r = Sh(std::string(GLANCEFS_BIN) + " --config " + conf + " " + mnt + " -f", 30);
    EXPECT_NE(r.status, 0) << text;
    EXPECT_NE(r.out.find(said), std::string::npos) << text << r.out;
  }
  // The example that ships with the unit parses.
  CmdResult example = Sh(std::string(GLANCEFS_BIN) + " --config " + GLANCEFS_SOURCE_DIR +
                         "/systemd/glancefs.conf.example " + mnt + " -f -o token_file=/nonexistent", 30);
  EXPECT_NE(example.out.find("token_file /nonexistent"), std::string::npos) << example.out;
}

// The service manager's end of NOTIFY_SOCKET: a datagram socket that collects sd_notify's
// messages.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = {};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr), 0) << path;
    struct timeval tv = {1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  // The next message that changes state (READY=1, RELOADING=1, STOPPING=1) within `seconds`,
  // or "" if none came; STATUS=-only updates (one per refresh) are counted and skipped.
  std::string Next(int seconds) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline) {
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) continue;
      std::string message(buf, static_cast<size_t>(n));
      if (message.rfind("STATUS=", 0) == 0) {
        ++status_updates;
        continue;
      }
      return message;
    }
    return "";
  }
  int status_updates = 0;

 private:
  std::string path_;
  int fd_ = -1;
};

// Type=notify: READY=1 once the mount answers; SIGHUP re-reads the config file and applies
// what can change live (cache_size, log_level) between RELOADING=1 and READY=1, names what
// cannot, and the mount (and a file open on it) stays throughout.
TEST_F(MountTest, SystemdNotifyAndReloadWithoutUnmounting) {
  std::string id = AddImage(catalog_, MakeRaw("a.raw"), "--name hup");
  const std::string conf = work_ + "/glancefs.conf", listen = "127.0.0.1:" + std::to_string(FreePort());
  auto config = [&](const std::string& cache_size, const std::string& level,
                    const std::string& memory) {
    WriteFile(conf, "[glancefs]\nsource = dir:" + catalog_ + "\nrefresh = 1\ncache_dir = " + work_ +
                        "/cache\nmetrics_listen = " + listen + "\ncache_size = " + cache_size +
                        "\nlog_level = " + level + "\ncache_memory = " + memory + "\n");
  };
  config("1G", "info", "64M");
  NotifySocket notify(work_ + "/notify");
  ::setenv("NOTIFY_SOCKET", (work_ + "/notify").c_str(), 1);
  Mount m("--config=" + conf, "");
  ::unsetenv("NOTIFY_SOCKET");
  ASSERT_TRUE(m.mounted()) << m.Log();
  std::string ready = notify.Next(20);
  ASSERT_NE(ready.find("READY=1"), std::string::npos) << ready << m.Log();
  EXPECT_NE(ready.find("STATUS=1 images, catalog live; cache 0 of 1073741824 bytes"),
            std::string::npos) << ready;
  // READY=1 came after the mount had answered the stat that sent it; it answers now.
  EXPECT_EQ(MustSh("ls " + m.path() + "/by-name"), "hup\n");
  std::string metrics = "curl -sS http://" + listen + "/metrics";
  EXPECT_NE(MustSh(metrics).find("\nglancefs_cache_max_bytes 1073741824\n"), std::string::npos);

  // A reader holds the image open across the reload.
  const std::string image = m.path() + "/images/" + id + "/disk.raw";
  int fd = ::open(image.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  config("2G", "debug", "128M");
  ASSERT_EQ(::kill(m.pid(), SIGHUP), 0);
  std::string reloading = notify.Next(10), after = notify.Next(10);
  EXPECT_NE(reloading.find("RELOADING=1"), std::string::npos) << reloading << m.Log();
  EXPECT_NE(after.find("READY=1"), std::string::npos) << after << m.Log();
  EXPECT_NE(after.find("of 2147483648 bytes"), std::string::npos) << after;
  EXPECT_NE(MustSh(metrics).find("\nglancefs_cache_max_bytes 2147483648\n"), std::string::npos);
  EXPECT_NE(m.Log().find("reload: cache_memory cannot change without a remount; keeping '64M'"),
            std::string::npos) << m.Log();
  // A refresh that finds a change logs it at debug level.
  AddImage(catalog_, MakeRaw("b.raw"), "--name second");
  EXPECT_TRUE(Eventually("test -e " + m.path() + "/by-name/second"));
  for (int i = 0; i < 50 && m.Log().find("glancefs: debug:") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(m.Log().find("glancefs: debug:"), std::string::npos) << m.Log();
  char buf[4096];
  EXPECT_EQ(::pread(fd, buf, sizeof buf, 0), static_cast<ssize_t>(sizeof buf));  // never gone
  ::close(fd);
  EXPECT_TRUE(IsMounted(m.path()));

  // A config that no longer parses changes nothing and says why.
  WriteFile(conf, "[glancefs]\nsource = dir:" + catalog_ + "\ncache_size = lots\n");
  ASSERT_EQ(::kill(m.pid(), SIGHUP), 0);
  notify.Next(10);
  after = notify.Next(10);
  EXPECT_NE(after.find("READY=1"), std::string::npos) << after;
  EXPECT_NE(m.Log().find("reload: cache_size: "), std::string::npos) << m.Log();
  EXPECT_NE(MustSh(metrics).find("\nglancefs_cache_max_bytes 2147483648\n"), std::string::npos);
  EXPECT_EQ(m.Signal(SIGTERM), 0) << m.Log();
  std::string stopping = notify.Next(10);
  EXPECT_NE(stopping.find("STOPPING=1"), std::string::npos) << stopping;
  EXPECT_GT(notify.status_updates, 0) << "no STATUS= after a refresh";
}

}  // namespace
}  // namespace glancefs::itest
