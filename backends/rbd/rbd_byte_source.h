// RbdByteSource: one RBD image snapshot read with librbd, as a ByteSource.
//
// Contract:
//  - Opened read-only at the location's snapshot (Glance protects the snapshot it creates at
//    upload); its size must equal the record's, else Corruption.
//  - The allocation (librbd's diff iteration over whole objects, from the object map when the
//    image has fast-diff) is read once at open. MapExtent answers SEEK_DATA/SEEK_HOLE from it,
//    allocated_bytes() is its sum, and reads place zeros for unallocated ranges without asking
//    Ceph for them: a thin image costs only its data.
//  - ReadScattered splits a request into runs of at most kMaxRequest bytes, kMaxInFlight of them
//    in flight (rbd_aio_readv straight into the caller's slices), and reports slices in order
//    as their runs complete. librbd's own timeouts (rados_osd_op_timeout) bound every read.
//  - Never stale, never zeros for data: librbd reads the objects of an image deleted under an
//    open handle as zeros (or ENOENT). A run that reads all zeros where the allocation says
//    data, or ENOENT, is served only after the snapshot has been opened anew, after that run
//    completed, and found; a snapshot that is gone gives IOError "was deleted from the store".
//    One such check covers every run that completed before it started.
// Thread-safe: librbd image handles take concurrent aio.
#pragma once

#include <rbd/librbd.h>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "backends/rbd/ceph_clusters.h"
#include "backends/rbd/rbd_url.h"
#include "fs/base/byte_source.h"
#include "fs/base/mutex.h"

namespace glancefs::backends::rbd {

// Counters of one source label (a store), shared by its images; read for metrics.
struct SourceStats {
  std::atomic<uint64_t> bytes{0};   // bytes read from Ceph (holes not included)
  std::atomic<uint64_t> reads{0};   // librbd read requests
  std::atomic<uint64_t> errors{0};  // reads that failed
};

class RbdByteSource final : public ByteSource {
 public:
  static constexpr uint64_t kMaxRequest = 8ULL << 20;
  static constexpr int kMaxInFlight = 8;

  static Result<std::shared_ptr<RbdByteSource>> Open(std::shared_ptr<CephPool> pool,
                                                     const RbdLocation& location,
                                                     uint64_t expected_size,
                                                     std::shared_ptr<SourceStats> stats);
  ~RbdByteSource() override;
  RbdByteSource(const RbdByteSource&) = delete;
  RbdByteSource& operator=(const RbdByteSource&) = delete;

  uint64_t size() const override { return size_; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override;
  Status ReadScattered(uint64_t off, uint64_t n, const SliceFor& slice_for,
                       const SliceDone& done = nullptr) override;
  Result<Extent> MapExtent(uint64_t off) override;
  uint64_t allocated_bytes() const override { return allocated_; }

 private:
  RbdByteSource(std::shared_ptr<CephPool> pool, RbdLocation location, rbd_image_t image,
                uint64_t size, std::vector<Extent> data, std::shared_ptr<SourceStats> stats);
  class ScatteredRead;  // one ReadScattered call's runs in flight (rbd_byte_source.cc)

  // Index of the first data extent that ends after `off`.
  size_t DataIndexAfter(uint64_t off) const;
  // OK if the snapshot still exists (opened anew after every run up to `completed_seq`).
  Status CheckStillThere(uint64_t completed_seq) EXCLUDES(check_mu_);
  std::string Describe() const;

  const std::shared_ptr<CephPool> pool_;
  const RbdLocation location_;
  const rbd_image_t image_;
  const uint64_t size_;
  const std::vector<Extent> data_;  // allocated runs, sorted, disjoint
  const uint64_t allocated_;
  const std::shared_ptr<SourceStats> stats_;

  std::atomic<uint64_t> completed_{0};  // runs completed so far (a sequence)
  Mutex check_mu_;                      // one existence check at a time
  uint64_t checked_upto_ GUARDED_BY(check_mu_) = 0;  // runs below it were confirmed
};

}  // namespace glancefs::backends::rbd
