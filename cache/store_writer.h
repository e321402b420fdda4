// StoreWriter: the store side of one fetch request, with backpressure (mountpoint-s3's
// backpressure_controller, for the disk instead of the reader). Blocks arrive from the network
// and are written by the store threads in runs while the rest of the request streams in, so the
// disk write of one run overlaps the arrival of the next. At most max_pending runs of a request
// wait for (or are in) the store threads: Submit blocks the receiving thread while that many
// are pending, which holds the stream back when the disk is the slower.
//
// One per request, owned by the fetching thread. Drain (or the destructor) waits for every run
// submitted. A run the pool refuses (it is shutting down) is written on the caller's thread.
// Thread-safe; mu_ is a leaf lock, held to count runs only.
#pragma once

#include <functional>

#include "cache/work_pool.h"
#include "fs/base/mutex.h"

namespace glancefs::cache {

class StoreWriter {
 public:
  StoreWriter(WorkPool* pool, int max_pending) : pool_(pool), max_pending_(max_pending) {}
  ~StoreWriter() { Drain(); }
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  // Runs `run` on the pool once fewer than max_pending runs are pending.
  void Submit(std::function<void()> run) EXCLUDES(mu_);
  // Waits until every submitted run has finished.
  void Drain() EXCLUDES(mu_);

 private:
  void Done() EXCLUDES(mu_);

  WorkPool* const pool_;
  const int max_pending_;
  Mutex mu_;
  CondVar cv_;
  int pending_ GUARDED_BY(mu_) = 0;  // runs queued or being written
};

}  // namespace glancefs::cache
