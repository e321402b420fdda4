#include "backends/rbd/rbd_byte_source.h"

#include <sys/uio.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <utility>

#include "backends/rbd/ceph_api.h"
#include "fs/base/log.h"

namespace glancefs::backends::rbd {
namespace {

int CollectData(uint64_t off, size_t len, int exists, void* arg) {
  auto* out = static_cast<std::vector<Extent>*>(arg);
  if (!exists || len == 0) return 0;
  if (!out->empty() && out->back().offset + out->back().length == off) {
    out->back().length += len;
  } else {
    out->push_back(Extent{off, len, Extent::Kind::kData});
  }
  return 0;
}

bool AllZero(const char* p, size_t n) {
  return n == 0 || (p[0] == 0 && std::memcmp(p, p + 1, n - 1) == 0);
}

// One librbd read of a contiguous run of the image into pieces of the caller's slices.
struct Run {
  uint64_t off = 0;
  uint64_t len = 0;
  std::vector<struct iovec> iov;
  rbd_completion_t completion = nullptr;
};

}  // namespace

Result<std::shared_ptr<RbdByteSource>> RbdByteSource::Open(std::shared_ptr<CephPool> pool,
                                                           const RbdLocation& location,
                                                           uint64_t expected_size,
                                                           std::shared_ptr<SourceStats> stats) {
  const std::string what = pool->label() + "/" + location.image + "@" + location.snapshot;
  rbd_image_t image;
  int r = Ceph().rbd_open_read_only(pool->ioctx(), location.image.c_str(), &image,
                                    location.snapshot.c_str());
  if (r < 0) return CephError(r, "cannot open rbd image " + what);
  auto fail = [&](Status s) {
    Ceph().rbd_close(image);
    return s;
  };
  uint64_t size = 0;
  if (r = Ceph().rbd_get_size(image, &size); r < 0) return fail(CephError(r, "size of " + what));
  if (size != expected_size) {
    return fail(Status::Corruption("rbd image " + what + " holds " + std::to_string(size) +
                                   " bytes, its record says " + std::to_string(expected_size)));
  }
  std::vector<Extent> data;
  r = Ceph().rbd_diff_iterate2(image, nullptr, 0, size, /*include_parent=*/1,
                               /*whole_object=*/1, CollectData, &data);
  if (r < 0) return fail(CephError(r, "allocation of " + what));
  return std::shared_ptr<RbdByteSource>(new RbdByteSource(
      std::move(pool), location, image, size, std::move(data), std::move(stats)));
}

RbdByteSource::RbdByteSource(std::shared_ptr<CephPool> pool, RbdLocation location,
                             rbd_image_t image, uint64_t size, std::vector<Extent> data,
                             std::shared_ptr<SourceStats> stats)
    : pool_(std::move(pool)),
      location_(std::move(location)),
      image_(image),
      size_(size),
      data_(std::move(data)),
      allocated_([this] {
        uint64_t sum = 0;
        for (const Extent& e : data_) sum += e.length;
        return sum;
      }()),
      stats_(std::move(stats)) {}

RbdByteSource::~RbdByteSource() { Ceph().rbd_close(image_); }

std::string RbdByteSource::Describe() const {
  return pool_->label() + "/" + location_.image + "@" + location_.snapshot;
}

size_t RbdByteSource::DataIndexAfter(uint64_t off) const {
  auto it = std::upper_bound(data_.begin(), data_.end(), off, [](uint64_t o, const Extent& e) {
    return o < e.offset + e.length;
  });
  return static_cast<size_t>(it - data_.begin());
}

Result<Extent> RbdByteSource::MapExtent(uint64_t off) {
  if (off >= size_) return Status::OutOfRange("offset past the end of " + Describe());
  size_t i = DataIndexAfter(off);
  if (i < data_.size() && data_[i].offset <= off) {
    uint64_t end = std::min(size_, data_[i].offset + data_[i].length);
    return Extent{off, end - off, Extent::Kind::kData};
  }
  uint64_t end = i < data_.size() ? data_[i].offset : size_;
  return Extent{off, end - off, Extent::Kind::kHole};
}

Status RbdByteSource::CheckStillThere(uint64_t completed_seq) {
  MutexLock lock(&check_mu_);
  if (completed_seq < checked_upto_) return Status::Ok();
  const uint64_t covers = completed_.load() + 1;  // every run completed before this check
  char id[128] = {};
  if (int r = Ceph().rbd_get_id(image_, id, sizeof(id)); r < 0) {
    return CephError(r, "id of " + Describe());
  }
  uint64_t psize;
  time_t mtime;
  std::string header = std::string("rbd_header.") + id;
  int r = Ceph().rados_stat(pool_->ioctx(), header.c_str(), &psize, &mtime);
  if (r == -ENOENT) {
    return Status::IOError("rbd image " + Describe() + " was deleted from the store");
  }
  if (r < 0) return CephError(r, "cannot check that " + Describe() + " still exists");
  checked_upto_ = std::max(checked_upto_, covers);
  return Status::Ok();
}

Status RbdByteSource::ReadAt(uint64_t off, size_t n, char* dst) {
  return ReadScattered(off, n, [&](size_t i) { return i == 0 ? IoSlice{dst, n} : IoSlice{nullptr, 0}; });
}

// One ReadScattered call: the runs of the image it asked librbd for (at most kMaxInFlight in
// flight, oldest first) and, for each of the caller's slices, how many runs must be done before
// the slice is whole and reported. Every run is waited for before Finish returns: librbd writes
// into the caller's buffers.
class RbdByteSource::ScatteredRead {
 public:
  ScatteredRead(RbdByteSource* source, const SliceDone& done) : source_(source), done_(done) {}
  ~ScatteredRead() {
    while (!in_flight_.empty()) FinishOldest();
  }

  bool ok() const { return failure_.ok(); }
  void Fail(Status s) { failure_ = std::move(s); }

  // Adds up to `len` bytes of the image at `pos`, read into `dst`, to the open run (a new run
  // once it is not contiguous or full). How many bytes it took.
  uint64_t AddData(uint64_t pos, char* dst, uint64_t len) {
    if (run_.len > 0 && (run_.off + run_.len != pos || run_.len >= kMaxRequest)) {
      Submit(std::exchange(run_, Run{}));
    }
    len = std::min(len, kMaxRequest - run_.len);
    if (run_.len == 0) run_.off = pos;
    run_.iov.push_back({dst, len});
    run_.len += len;
    return len;
  }
  // The slice being filled is complete: whole once every run started so far (and the open
  // one) is done.
  void EndSlice() {
    slice_needs_.push_back(runs_started_ + (run_.len > 0 ? 1 : 0));
    if (run_.len == 0 && ok()) Report();
  }
  // Sends the open run, waits for every run, reports the slices left. The read's outcome.
  Status Finish() {
    Submit(std::exchange(run_, Run{}));
    while (!in_flight_.empty()) FinishOldest();
    if (ok()) Report();
    return failure_;
  }

 private:
  void Submit(Run run) {
    if (run.len == 0 || !ok()) return;
    while (static_cast<int>(in_flight_.size()) >= kMaxInFlight) FinishOldest();
    if (!ok()) return;
    int r = Ceph().rbd_aio_create_completion(nullptr, nullptr, &run.completion);
    if (r >= 0) {
      r = Ceph().rbd_aio_readv(source_->image_, run.iov.data(), static_cast<int>(run.iov.size()),
                               run.off, run.completion);
      if (r < 0) Ceph().rbd_aio_release(run.completion);
    }
    if (r < 0) {
      failure_ = CephError(r, "read of " + source_->Describe());
      return;
    }
    source_->stats_->reads.fetch_add(1, std::memory_order_relaxed);
    ++runs_started_;
    in_flight_.push_back(std::move(run));
  }

  // Waits for the oldest run, checks it, and reports the slices it completes.
  void FinishOldest() {
    Run run = std::move(in_flight_.front());
    in_flight_.pop_front();
    Ceph().rbd_aio_wait_for_complete(run.completion);
    const ssize_t r = Ceph().rbd_aio_get_return_value(run.completion);
    Ceph().rbd_aio_release(run.completion);
    const uint64_t seq = source_->completed_.fetch_add(1) + 1;
    ++runs_done_;
    if (!ok()) return;
    if (r < 0 || static_cast<uint64_t>(r) != run.len) {
      source_->stats_->errors.fetch_add(1, std::memory_order_relaxed);
      failure_ = r == -ENOENT ? source_->CheckStillThere(seq)
                              : CephError(r < 0 ? static_cast<int>(r) : -EIO,
                                          "read of " + source_->Describe() + " at " +
                                              std::to_string(run.off));
      if (ok()) failure_ = CephError(-ENOENT, "read of " + source_->Describe());
      return;
    }
    source_->stats_->bytes.fetch_add(run.len, std::memory_order_relaxed);
    // A run of zeros may be an image deleted under us (librbd reads a gone object as zeros).
    const bool zeros = std::all_of(run.iov.begin(), run.iov.end(), [](const struct iovec& v) {
      return AllZero(static_cast<const char*>(v.iov_base), v.iov_len);
    });
    if (zeros) failure_ = source_->CheckStillThere(seq);
    if (ok()) Report();
  }

  void Report() {
    while (reported_ < slice_needs_.size() && slice_needs_[reported_] <= runs_done_) {
      if (done_) done_(reported_);
      ++reported_;
    }
  }

  RbdByteSource* const source_;
  const SliceDone& done_;
  Run run_;                    // the open run, not sent yet
  std::deque<Run> in_flight_;  // sent, oldest first
  uint64_t runs_started_ = 0, runs_done_ = 0;
  std::vector<uint64_t> slice_needs_;  // runs that must be done before slice i is reported
  size_t reported_ = 0;
  Status failure_;
};

Status RbdByteSource::ReadScattered(uint64_t off, uint64_t n, const SliceFor& slice_for,
                                    const SliceDone& done) {
  if (off > size_ || n > size_ - off) {
    return Status::OutOfRange("read past the end of " + Describe());
  }
  ScatteredRead read(this, done);
  uint64_t pos = off;
  const uint64_t end = off + n;
  size_t data_i = DataIndexAfter(off);
  for (size_t i = 0; pos < end && read.ok(); ++i) {
    IoSlice slice = slice_for(i);
    if (!slice.data || slice.size == 0 || slice.size > end - pos) {
      read.Fail(Status::IOError("no buffer for a scattered read of " + Describe()));
      break;
    }
    char* dst = slice.data;
    const uint64_t slice_end = pos + slice.size;
    while (pos < slice_end && read.ok()) {
      while (data_i < data_.size() && data_[data_i].offset + data_[data_i].length <= pos) ++data_i;
      const bool in_data = data_i < data_.size() && data_[data_i].offset <= pos;
      const uint64_t boundary = in_data                 ? data_[data_i].offset + data_[data_i].length
                                : data_i < data_.size() ? data_[data_i].offset
                                                        : size_;
      uint64_t piece = std::min(slice_end, boundary) - pos;
      if (in_data) {
        piece = read.AddData(pos, dst, piece);
      } else {
        std::memset(dst, 0, piece);  // a hole: zeros, no request
      }
      dst += piece;
      pos += piece;
    }
    read.EndSlice();
  }
  return read.Finish();
}

}  // namespace glancefs::backends::rbd
