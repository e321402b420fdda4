#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

namespace glancefs::itest {

std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}

CmdResult Sh(const std::string& cmd, int timeout_s) {
  CmdResult r;
  auto start = std::chrono::steady_clock::now();
  std::string full =
      "timeout -k 5 " + std::to_string(timeout_s) + " bash -c " + Quote(cmd) + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  if (r.status == 124) r.out += "\n[timed out after " + std::to_string(timeout_s) + " s]";
  if (::getenv("GLANCEFS_TEST_TRACE")) {  // where a slow test spends its time
    std::chrono::duration<double> took = std::chrono::steady_clock::now() - start;
    std::fprintf(stderr, "[sh %6.1fs] %.150s\n", took.count(), cmd.c_str());
  }
  return r;
}

std::string MustSh(const std::string& cmd, int timeout_s) {
  CmdResult r = Sh(cmd, timeout_s);
  EXPECT_EQ(r.status, 0) << "command failed: " << cmd << "\n" << r.out;
  return r.out;
}

std::string MakeTempDir(const std::string& prefix) {
  std::string tmpl = "/tmp/" + prefix + "-XXXXXX";
  char* d = ::mkdtemp(tmpl.data());
  if (!d) std::abort();
  return d;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string AddImage(const std::string& catalog, const std::string& file, const std::string& args) {
  CmdResult r = Sh(std::string(GLANCEFS_CATALOG_BIN) + " add " + Quote(catalog) + " " +
                   Quote(file) + " " + args);
  EXPECT_EQ(r.status, 0) << r.out;
  std::string id = r.out;
  while (!id.empty() && (id.back() == '\n' || id.back() == '\r')) id.pop_back();
  return id;
}

bool HaveCommand(const std::string& name) {
  return Sh("command -v " + Quote(name) + " >/dev/null").status == 0;
}

int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

::testing::AssertionResult GlanceUpAgain(const std::string& state_dir) {
  // stdout is the environment, dropped; stderr is the log, kept for the message
  CmdResult up = Sh(std::string(GLANCEFS_SOURCE_DIR) + "/tests/fixtures/glance/glance-up.sh " +
                        Quote(state_dir) + " 2>&1 >/dev/null",
                    300);
  if (up.status == 0) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "glance-up.sh " << state_dir << " exited "
                                       << up.status << ":\n" << up.out;
}

std::map<std::string, std::string> ParseExports(const std::string& text) {
  std::map<std::string, std::string> env;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("export ", 0) != 0) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string value = line.substr(eq + 1);
    if (value.size() >= 2 && (value[0] == '\'' || value[0] == '"')) {
      value = value.substr(1, value.size() - 2);
    }
    env[line.substr(7, eq - 7)] = value;
  }
  return env;
}

bool IsMounted(const std::string& path) {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string a, b, c, d, mnt;
    f >> a >> b >> c >> d >> mnt;
    if (mnt == path) return true;
  }
  return false;
}

Mount::Mount(const std::string& source, const std::string& options) {
  dir_ = MakeTempDir("glancefs-mnt");
  path_ = dir_ + "/mnt";
  log_path_ = dir_ + "/glancefs.log";
  std::filesystem::create_directory(path_);
  // Each mount gets its own cache, gone with it, unless the test chose one (or none).
  std::string cache;
  if (options.find("cache_dir=") == std::string::npos &&
      options.find("nocache") == std::string::npos) {
    cache = " -o cache_dir=" + Quote(dir_ + "/cache");
  }
  std::string cmd = std::string("exec ") + GLANCEFS_BIN + " " + Quote(source) + " " + Quote(path_) +
                    " -f " + options + cache + " 2>" + Quote(log_path_);
  pid_ = ::fork();
  if (pid_ == 0) {
    ::execl("/bin/bash", "bash", "-c", cmd.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < deadline) {
    if (IsMounted(path_)) {
      mounted_ = true;
      return;
    }
    int st;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      ADD_FAILURE() << "glancefs exited before mounting:\n" << Log();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ADD_FAILURE() << "glancefs did not mount within 20 s:\n" << Log();
}

Mount::~Mount() {
  if (pid_ > 0) {
    if (IsMounted(path_)) Sh("fusermount3 -u " + Quote(path_), 30);
    if (Wait(20) == -1 && pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  if (IsMounted(path_)) Sh("fusermount3 -uz " + Quote(path_), 30);
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string Mount::Log() const { return ReadFile(log_path_); }

int Mount::Wait(int timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s);
  while (pid_ > 0 && std::chrono::steady_clock::now() < deadline) {
    int st;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

int Mount::Unmount() {
  CmdResult r = Sh("fusermount3 -u " + Quote(path_), 30);
  EXPECT_EQ(r.status, 0) << r.out;
  mounted_ = false;
  return Wait(20);
}

int Mount::Signal(int sig) {
  ::kill(pid_, sig);
  mounted_ = false;
  return Wait(20);
}

int Mount::SignalThread(const std::string& comm, int sig) {
  // The mount is up before glancefs has started all its threads: look for 10 s.
  const std::string tasks = "/proc/" + std::to_string(pid_) + "/task";
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  do {
    std::error_code ec;
    for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
      std::ifstream in(task.path() / "comm");
      std::string name;
      if (!std::getline(in, name) || name != comm) continue;
      ::syscall(SYS_tgkill, pid_, std::stoi(task.path().filename().string()), sig);
      mounted_ = false;
      return Wait(20);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline);
  return -2;
}

}  // namespace glancefs::itest
