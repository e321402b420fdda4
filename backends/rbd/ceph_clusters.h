// CephClusters: the Ceph clusters this node may read images from, found by fsid.
//
// Contract:
//  - Clusters are configured the way multi-site Ceph clients are: DIR (-o ceph_conf_dir,
//    default /etc/ceph) holds one `<cluster>.conf` per cluster, each naming its `fsid` and
//    monitors. librados itself reads each conf (nothing here parses Ceph's format).
//  - The client is `client.<user>` (-o rbd_user, default glance). Its keyring is the conf's
//    `keyring` setting when the conf names one file, else DIR/<cluster>.client.<user>.keyring.
//    A keyring that others may read is refused, as the token file is.
//  - A location's fsid picks its cluster; the fsid the cluster reports after connecting is
//    checked against it.
//  - Every wait is bounded: client_mount_timeout, rados_mon_op_timeout and rados_osd_op_timeout
//    are set to `timeout_s` whatever the conf says, and librbd's cache is off (the block cache
//    above is the cache). A dead monitor or a hung OSD therefore gives an error in bounded time.
//  - One connection per cluster, made on first use by one caller while the others wait for it
//    (single flight). After a failure the cluster is not tried again for `retry_s` seconds:
//    callers get Unavailable at once, then the next caller connects anew. No remount is needed
//    when a cluster comes back.
//  - One I/O context per pool, shared by every image read from it.
// Thread-safe.
#pragma once

#include <rados/librados.h>

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "fs/base/status.h"
#include "fs/base/mutex.h"

namespace glancefs::backends::rbd {

struct CephOptions {
  std::string conf_dir = "/etc/ceph";
  std::string user = "glance";
  unsigned timeout_s = 30;
  unsigned retry_s = 30;
};

// A negative librados/librbd return value as a Status: -ETIMEDOUT is Unavailable, -ENOENT
// NotFound, -EACCES/-EPERM PermissionDenied, anything else an IOError naming strerror.
Status CephError(int negative_errno, const std::string& context);

class CephCluster;

// An I/O context on one pool of a connected cluster. Keeps its cluster connected.
class CephPool {
 public:
  CephPool(std::shared_ptr<CephCluster> cluster, rados_ioctx_t ioctx, std::string label)
      : cluster_(std::move(cluster)), ioctx_(ioctx), label_(std::move(label)) {}
  ~CephPool();
  CephPool(const CephPool&) = delete;
  CephPool& operator=(const CephPool&) = delete;

  rados_ioctx_t ioctx() const { return ioctx_; }
  // "<cluster>/<pool>", for logs.
  const std::string& label() const { return label_; }

 private:
  const std::shared_ptr<CephCluster> cluster_;
  const rados_ioctx_t ioctx_;
  const std::string label_;
};

class CephClusters {
 public:
  explicit CephClusters(CephOptions options);
  ~CephClusters();
  CephClusters(const CephClusters&) = delete;
  CephClusters& operator=(const CephClusters&) = delete;

  // The pool `pool` of the cluster whose fsid is `fsid` (lower case), connecting on first use.
  // NotFound: no conf names that fsid. Unavailable: it cannot be reached now (or failed less
  // than retry_s ago). PermissionDenied: a keyring others may read, or missing caps.
  Result<std::shared_ptr<CephPool>> Pool(const std::string& fsid, const std::string& pool);

  // The keyring file that `conf_path` makes the client use (for tests and logs).
  Result<std::string> KeyringOf(const std::string& cluster, const std::string& conf_path) const;

  const CephOptions& options() const { return options_; }

 private:
  struct Entry;
  // The conf files of conf_dir by fsid; rescanned when an fsid is not found.
  Status Scan();
  Result<std::shared_ptr<CephCluster>> Connect(Entry& entry);

  const CephOptions options_;
  Mutex mu_;  // guards entries_ (the map, not the entries' own state) and scanned_
  std::map<std::string, std::shared_ptr<Entry>> entries_ GUARDED_BY(mu_);  // by fsid
  std::chrono::steady_clock::time_point scanned_ GUARDED_BY(mu_){};
};

}  // namespace glancefs::backends::rbd
