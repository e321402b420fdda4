// RbdCatalog: a Catalog decorator that reads image bytes straight from Ceph RBD.
//
// Contract:
//  - Listing (Refresh, Describe) is the upstream's (glance-api, or a local catalog).
//  - OpenData reads an image that has `rbd://` locations (the record's `locations`, else its
//    `direct_url`; Glance shows them with show_multiple_locations / show_image_direct_url)
//    from Ceph, in this order: the locations of the preferred store (-o store=NAME, matching
//    `locations[].metadata.store`), then the other rbd locations in the record's order, then
//    the upstream (glance-api's /file, or the local catalog's own data file).
//  - A location is skipped, with one log line, when its store is still importing the image
//    (`os_glance_importing_to_stores`), when no conf names its fsid, and for `retry_s` seconds
//    after it failed. Schemes other than rbd:// are never followed: a record cannot make
//    glancefs open a path or a URL.
//  - The RBD sources of the last kKeepOpen images opened stay open for kKeepSeconds, since
//    opening an RBD image costs round trips; every open file of one image version shares one.
//    Upstream sources are the upstream's to keep: each OpenData asks it again.
//  - Allocation: a background prober opens each listed image that has rbd:// locations once
//    per image version, learns its allocation (RbdByteSource) and the next Refresh publishes it
//    as the record's allocated_bytes, so st_blocks tells `cp --sparse`/`rsync -S` that a thin
//    image is sparse before anyone opened it.
//  - ImageInfo says which source serves an image (user.glancefs.source); Metrics counts bytes,
//    reads and errors by source, and location failures.
// Thread-safe.
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backends/rbd/ceph_clusters.h"
#include "backends/rbd/rbd_byte_source.h"
#include "fs/base/catalog.h"
#include "fs/base/mutex.h"

namespace glancefs::backends::rbd {

struct RbdCatalogOptions {
  CephOptions ceph;
  std::string store;  // the preferred store's name; empty: the record's order
};

// One location of an image as its record lists it.
struct ImageLocation {
  std::string url;
  std::string store;  // metadata.store; empty if none
};

// The record's locations (`locations`, then `direct_url` if it is not among them), in the
// record's order. Malformed entries are left out.
std::vector<ImageLocation> LocationsOf(const ImageRecord& record);

// The rbd locations to try, best first: `store`'s, then the others; stores that are still
// importing the image are left out. Each comes with the store name ("" if none).
std::vector<std::pair<RbdLocation, std::string>> RbdCandidates(const ImageRecord& record,
                                                               const std::string& store);

class RbdCatalog final : public Catalog {
 public:
  static constexpr size_t kKeepOpen = 32;
  static constexpr int kKeepSeconds = 300;

  RbdCatalog(std::unique_ptr<Catalog> upstream, RbdCatalogOptions options);
  ~RbdCatalog() override;

  std::string Describe() const override { return upstream_->Describe(); }
  // The upstream's snapshot, with the allocation the prober learned in allocated_bytes.
  Result<std::shared_ptr<const CatalogSnapshot>> Refresh() override;
  Result<std::shared_ptr<ByteSource>> OpenData(const ImageRecord& record) override;
  std::vector<std::pair<std::string, std::string>> ImageInfo(const ImageRecord& record) override;
  std::string Metrics() override;
  std::vector<std::pair<std::string, std::string>> Info() override { return upstream_->Info(); }

 private:
  using Clock = std::chrono::steady_clock;
  std::shared_ptr<SourceStats> StatsFor(const std::string& label);
  // The first rbd location of `record` that opens, skipping those that failed lately; the
  // label it is counted under goes to *label. NotFound when there is none to try.
  Result<std::shared_ptr<RbdByteSource>> OpenFromCeph(const ImageRecord& record,
                                                      std::string* label);
  void ProbeLoop();
  // The label a location's reads are counted under: "rbd:<store>", or "rbd:<fsid>/<pool>".
  static std::string LabelOf(const RbdLocation& location, const std::string& store);

  const std::unique_ptr<Catalog> upstream_;
  const RbdCatalogOptions options_;
  CephClusters clusters_;

  Mutex mu_;  // guards everything below
  std::map<std::string, std::weak_ptr<ByteSource>> open_ GUARDED_BY(mu_);  // by id + version
  std::deque<std::pair<Clock::time_point, std::shared_ptr<ByteSource>>> kept_ GUARDED_BY(mu_);
  // Image id -> label of the source serving it.
  std::map<std::string, std::string> source_of_ GUARDED_BY(mu_);
  std::map<std::string, Clock::time_point> failed_until_ GUARDED_BY(mu_);  // by location url
  std::map<std::string, std::shared_ptr<SourceStats>> stats_ GUARDED_BY(mu_);  // by label
  uint64_t location_failures_ GUARDED_BY(mu_) = 0;

  // The allocation prober.
  std::map<std::string, uint64_t> allocated_ GUARDED_BY(mu_);  // by id + data version
  std::set<std::string> probed_ GUARDED_BY(mu_);  // keys queued or probed (failed ones too)
  std::deque<std::shared_ptr<const ImageRecord>> probe_queue_ GUARDED_BY(mu_);
  uint64_t learned_ GUARDED_BY(mu_) = 0;  // allocations learned so far
  bool stopping_ GUARDED_BY(mu_) = false;
  CondVar probe_cv_;  // probe_queue_ or stopping_ changed
  std::thread prober_ GUARDED_BY(mu_);
  // Refresh's own state.
  std::shared_ptr<const CatalogSnapshot> last_upstream_ GUARDED_BY(mu_);
  std::shared_ptr<const CatalogSnapshot> last_out_ GUARDED_BY(mu_);
  uint64_t last_learned_ GUARDED_BY(mu_) = 0;
};

}  // namespace glancefs::backends::rbd
