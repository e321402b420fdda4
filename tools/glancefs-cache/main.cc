// glancefs-cache: glance-cache-manage's commands for a glancefs mount, done through the mount
// itself (queue/, cache/ and their xattrs; docs/CACHE.md), so it needs no socket or privilege
// beyond the mount's.
//
//   glancefs-cache MOUNT list-cached | list-queued | stats
//   glancefs-cache MOUNT queue [--wait] IMAGE...      IMAGE: an id or a by-name entry
//   glancefs-cache MOUNT delete-cached IMAGE... | delete-all-cached
//   glancefs-cache MOUNT delete-queued IMAGE... | delete-all-queued
#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;

std::string Xattr(const std::string& path, const char* name) {
  char buf[4096];
  ssize_t n = ::getxattr(path.c_str(), name, buf, sizeof buf);
  return n < 0 ? "" : std::string(buf, static_cast<size_t>(n));
}

uint64_t Num(const std::string& s) { return s.empty() ? 0 : std::strtoull(s.c_str(), nullptr, 10); }

int Usage() {
  std::fprintf(stderr,
               "usage: glancefs-cache MOUNT list-cached | list-queued | stats\n"
               "       glancefs-cache MOUNT queue [--wait] IMAGE...\n"
               "       glancefs-cache MOUNT delete-cached IMAGE... | delete-all-cached\n"
               "       glancefs-cache MOUNT delete-queued IMAGE... | delete-all-queued\n");
  return 2;
}

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) out.push_back(e.path().filename());
  std::sort(out.begin(), out.end());
  return out;
}

int List(const std::string& dir) {
  if (!fs::is_directory(dir)) {
    std::fprintf(stderr, "glancefs-cache: %s: not a glancefs mount with a cache\n", dir.c_str());
    return 1;
  }
  std::printf("%-40s %14s %14s  %s\n", "ID", "CACHED", "SIZE", "STATE");
  for (const auto& id : Entries(dir)) {
    std::string p = dir + "/" + id;
    std::printf("%-40s %14llu %14llu  %s\n", id.c_str(),
                static_cast<unsigned long long>(Num(Xattr(p, "user.glancefs.cached_bytes"))),
                static_cast<unsigned long long>(Num(Xattr(p, "user.glancefs.size"))),
                Xattr(p, "user.glancefs.state").c_str());
  }
  return 0;
}

int Remove(const std::string& dir, const std::vector<std::string>& ids) {
  int rc = 0;
  for (const auto& id : ids) {
    if (::unlink((dir + "/" + id).c_str()) != 0) {
      std::fprintf(stderr, "glancefs-cache: %s: %s\n", id.c_str(), std::strerror(errno));
      rc = 1;
    }
  }
  return rc;
}

// Queues the images; with --wait, shows progress until each is cached and verified.
int Queue(const std::string& mount, const std::vector<std::string>& images, bool wait) {
  std::vector<std::string> ids;
  for (const auto& image : images) {
    std::string path = mount + "/queue/" + image;
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
      std::fprintf(stderr, "glancefs-cache: cannot queue %s: %s\n", image.c_str(),
                   std::strerror(errno));
      return 1;
    }
    ::close(fd);
    // The id behind a by-name entry: the image directory the link points to.
    std::error_code ec;
    fs::path target = fs::read_symlink(mount + "/by-name/" + image, ec);
    ids.push_back(ec ? image : target.filename().string());
  }
  if (!wait) return 0;
  bool tty = ::isatty(2);
  for (;;) {
    uint64_t cached = 0, total = 0;
    int done = 0;
    for (const auto& id : ids) {
      std::string q = mount + "/queue/" + id, c = mount + "/cache/" + id;
      bool queued = ::access(q.c_str(), F_OK) == 0;
      std::string state = Xattr(c, "user.glancefs.state");
      if (state == "corrupt") {
        std::fprintf(stderr, "\nglancefs-cache: %s failed verification: %s\n", id.c_str(),
                     Xattr(c, "user.glancefs.error").c_str());
        return 1;
      }
      std::string p = queued ? q : c;
      cached += Num(Xattr(p, "user.glancefs.cached_bytes"));
      total += Num(Xattr(p, "user.glancefs.size"));
      if (!queued && (state == "verified" || state == "complete")) ++done;
    }
    double frac = total ? static_cast<double>(cached) / total : 0;
    int bar = static_cast<int>(frac * 30);
    if (tty || done == static_cast<int>(ids.size())) {
      std::fprintf(stderr, "\r[%-30s] %3.0f%%  %llu/%llu MiB  %d/%zu images",
                   std::string(bar, '#').c_str(), frac * 100,
                   static_cast<unsigned long long>(cached >> 20),
                   static_cast<unsigned long long>(total >> 20), done, ids.size());
    }
    if (done == static_cast<int>(ids.size())) {
      std::fprintf(stderr, "\n");
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) return Usage();
  std::string mount = argv[1], cmd = argv[2];
  std::vector<std::string> args(argv + 3, argv + argc);
  if (cmd == "list-cached") return List(mount + "/cache");
  if (cmd == "list-queued") return List(mount + "/queue");
  if (cmd == "stats") {
    char names[65536];
    ssize_t n = ::listxattr(mount.c_str(), names, sizeof names);
    if (n < 0) return std::perror("glancefs-cache"), 1;
    for (ssize_t i = 0; i < n; i += static_cast<ssize_t>(std::strlen(names + i)) + 1) {
      std::string name = names + i;
      if (name.rfind("user.glancefs.cache.", 0) == 0) {
        std::printf("%s %s\n", name.substr(20).c_str(), Xattr(mount, name.c_str()).c_str());
      }
    }
    return 0;
  }
  if (cmd == "queue") {
    bool wait = !args.empty() && args[0] == "--wait";
    if (wait) args.erase(args.begin());
    if (args.empty()) return Usage();
    return Queue(mount, args, wait);
  }
  if (cmd == "delete-cached" && !args.empty()) return Remove(mount + "/cache", args);
  if (cmd == "delete-queued" && !args.empty()) return Remove(mount + "/queue", args);
  if (cmd == "delete-all-cached") return Remove(mount + "/cache", Entries(mount + "/cache"));
  if (cmd == "delete-all-queued") return Remove(mount + "/queue", Entries(mount + "/queue"));
  return Usage();
}
