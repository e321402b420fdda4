#include "backends/rbd/ceph_clusters.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "backends/rbd/ceph_api.h"
#include "fs/base/log.h"

namespace glancefs::backends::rbd {

Status CephError(int negative_errno, const std::string& context) {
  int err = -negative_errno;
  std::string msg = context + ": " + std::strerror(err);
  switch (err) {
    case ETIMEDOUT:
      return Status::Unavailable(msg + " (rbd_timeout)");
    case ENOENT:
      return Status::NotFound(msg);
    case EACCES:
    case EPERM:
      return Status::PermissionDenied(msg);
    default:
      return Status::IOError(msg);
  }
}

// One connected cluster handle. Shut down when the last pool and the registry let it go.
class CephCluster {
 public:
  explicit CephCluster(rados_t handle) : handle_(handle) {}
  ~CephCluster() { Ceph().rados_shutdown(handle_); }
  CephCluster(const CephCluster&) = delete;
  CephCluster& operator=(const CephCluster&) = delete;
  rados_t handle() const { return handle_; }

 private:
  const rados_t handle_;
};

CephPool::~CephPool() { Ceph().rados_ioctx_destroy(ioctx_); }

struct CephClusters::Entry {
  std::string name;       // the cluster name: the conf file's base name
  std::string conf_path;  // DIR/<name>.conf
  Mutex mu;  // held while connecting (single flight); guards the fields below
  std::shared_ptr<CephCluster> cluster GUARDED_BY(mu);
  std::map<std::string, std::shared_ptr<CephPool>> pools GUARDED_BY(mu);
  std::chrono::steady_clock::time_point failed_until GUARDED_BY(mu){};
  Status failure GUARDED_BY(mu);
};

namespace {

using Clock = std::chrono::steady_clock;

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// A rados handle for `cluster` as client.<user>, with `conf_path` read. Not connected.
Result<rados_t> NewHandle(const std::string& cluster, const std::string& user,
                          const std::string& conf_path) {
  rados_t handle;
  std::string name = "client." + user;
  int r = Ceph().rados_create2(&handle, cluster.c_str(), name.c_str(), 0);
  if (r < 0) return CephError(r, "rados_create2 for " + conf_path);
  r = Ceph().rados_conf_read_file(handle, conf_path.c_str());
  if (r < 0) {
    Ceph().rados_shutdown(handle);
    return CephError(r, "cannot read " + conf_path);
  }
  return handle;
}

Result<std::string> ConfGet(rados_t handle, const char* option) {
  char buf[4096];
  int r = Ceph().rados_conf_get(handle, option, buf, sizeof(buf));
  if (r < 0) return CephError(r, std::string("conf ") + option);
  return std::string(buf);
}

}  // namespace

CephClusters::CephClusters(CephOptions options) : options_(std::move(options)) {}

CephClusters::~CephClusters() = default;

Status CephClusters::Scan() {
  DIR* dir = ::opendir(options_.conf_dir.c_str());
  if (!dir) return Status::FromErrno(errno, "ceph_conf_dir " + options_.conf_dir);
  std::vector<std::string> names;
  while (struct dirent* e = ::readdir(dir)) {
    std::string file = e->d_name;
    if (file.size() > 5 && file[0] != '.' && file.compare(file.size() - 5, 5, ".conf") == 0) {
      names.push_back(file.substr(0, file.size() - 5));
    }
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  std::map<std::string, std::string> found;  // fsid -> cluster name
  for (const std::string& name : names) {
    std::string path = options_.conf_dir + "/" + name + ".conf";
    auto handle = NewHandle(name, options_.user, path);
    if (!handle.ok()) {
      LOG_WARNING("ceph: %s", handle.status().message().c_str());
      continue;
    }
    auto fsid = ConfGet(*handle, "fsid");
    Ceph().rados_shutdown(*handle);
    if (!fsid.ok() || fsid->empty() || *fsid == "00000000-0000-0000-0000-000000000000") {
      LOG_WARNING("ceph: %s names no fsid: not used", path.c_str());
      continue;
    }
    found.emplace(Lower(*fsid), name);
  }
  MutexLock lock(&mu_);
  scanned_ = Clock::now();
  for (const auto& [fsid, name] : found) {
    auto& entry = entries_[fsid];
    std::string path = options_.conf_dir + "/" + name + ".conf";
    if (entry && entry->conf_path == path) continue;
    entry = std::make_shared<Entry>();
    entry->name = name;
    entry->conf_path = path;
    LOG_INFO("ceph: cluster %s (fsid %s) from %s", name.c_str(), fsid.c_str(), path.c_str());
  }
  return Status::Ok();
}

Result<std::string> CephClusters::KeyringOf(const std::string& cluster,
                                            const std::string& conf_path) const {
  GLANCEFS_RETURN_IF_ERROR(LoadCeph());
  GLANCEFS_ASSIGN_OR_RETURN(rados_t handle, NewHandle(cluster, options_.user, conf_path));
  auto keyring = ConfGet(handle, "keyring");
  Ceph().rados_shutdown(handle);
  if (!keyring.ok()) return keyring.status();
  // Ceph's default is a search list; a conf that sets `keyring` names one file.
  if (keyring->empty() || keyring->find(',') != std::string::npos) {
    return options_.conf_dir + "/" + cluster + ".client." + options_.user + ".keyring";
  }
  return *keyring;
}

Result<std::shared_ptr<CephCluster>> CephClusters::Connect(Entry& entry) {
  GLANCEFS_ASSIGN_OR_RETURN(std::string keyring, KeyringOf(entry.name, entry.conf_path));
  struct stat st;
  if (::stat(keyring.c_str(), &st) != 0) {
    return Status::FromErrno(errno, "keyring " + keyring + " of cluster " + entry.name);
  }
  if (st.st_mode & (S_IROTH | S_IWOTH)) {
    return Status::PermissionDenied("keyring " + keyring + " is readable by others: chmod o-rw it");
  }
  GLANCEFS_ASSIGN_OR_RETURN(rados_t handle, NewHandle(entry.name, options_.user, entry.conf_path));
  auto cluster = std::make_shared<CephCluster>(handle);  // shuts the handle down on any return
  const std::string timeout = std::to_string(std::max(1u, options_.timeout_s));
  const std::pair<const char*, std::string> settings[] = {
      {"keyring", keyring},
      {"client_mount_timeout", timeout},
      {"rados_mon_op_timeout", timeout},
      {"rados_osd_op_timeout", timeout},
      {"rbd_cache", "false"},
  };
  for (const auto& [option, value] : settings) {
    if (int r = Ceph().rados_conf_set(handle, option, value.c_str()); r < 0) {
      return CephError(r, std::string("conf set ") + option);
    }
  }
  if (int r = Ceph().rados_connect(handle); r < 0) {
    return CephError(r, "cannot connect to ceph cluster " + entry.name + " as client." +
                            options_.user);
  }
  return cluster;
}

Result<std::shared_ptr<CephPool>> CephClusters::Pool(const std::string& fsid,
                                                     const std::string& pool) {
  GLANCEFS_RETURN_IF_ERROR(LoadCeph());
  std::shared_ptr<Entry> entry;
  for (int pass = 0; pass < 2 && !entry; ++pass) {
    {
      MutexLock lock(&mu_);
      auto it = entries_.find(fsid);
      if (it != entries_.end()) entry = it->second;
      bool stale = scanned_ == Clock::time_point{} ||
                   Clock::now() - scanned_ > std::chrono::seconds(options_.retry_s);
      if (entry || (pass == 0 && !stale)) break;
    }
    if (pass == 0) GLANCEFS_RETURN_IF_ERROR(Scan());
  }
  if (!entry) {
    return Status::NotFound("no conf in " + options_.conf_dir + " names ceph fsid " + fsid);
  }

  MutexLock lock(&entry->mu);  // single flight: others wait for this connect
  if (!entry->cluster) {
    if (Clock::now() < entry->failed_until) return entry->failure;
    auto connected = Connect(*entry);
    if (!connected.ok()) {
      entry->failure = Status::Unavailable(connected.status().message());
      if (connected.status().code() == Status::Code::kPermissionDenied) {
        entry->failure = connected.status();
      }
      entry->failed_until = Clock::now() + std::chrono::seconds(options_.retry_s);
      LOG_WARNING("ceph: %s (not tried again for %u s)", connected.status().message().c_str(),
                  options_.retry_s);
      return entry->failure;
    }
    char got[64] = {};
    int n = Ceph().rados_cluster_fsid((*connected)->handle(), got, sizeof(got) - 1);
    if (n < 0 || Lower(got) != fsid) {
      entry->failure = Status::PermissionDenied("cluster " + entry->name + " reports fsid " +
                                                got + ", its conf says " + fsid);
      entry->failed_until = Clock::now() + std::chrono::seconds(options_.retry_s);
      LOG_WARNING("ceph: %s", entry->failure.message().c_str());
      return entry->failure;
    }
    entry->cluster = std::move(connected).value();
    LOG_INFO("ceph: connected to cluster %s (fsid %s) as client.%s", entry->name.c_str(),
             fsid.c_str(), options_.user.c_str());
  }
  auto& slot = entry->pools[pool];
  if (!slot) {
    rados_ioctx_t ioctx;
    int r = Ceph().rados_ioctx_create(entry->cluster->handle(), pool.c_str(), &ioctx);
    if (r < 0) {
      entry->pools.erase(pool);
      return CephError(r, "pool " + pool + " of cluster " + entry->name);
    }
    slot = std::make_shared<CephPool>(entry->cluster, ioctx, entry->name + "/" + pool);
  }
  return slot;
}

}  // namespace glancefs::backends::rbd
