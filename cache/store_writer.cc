#include "cache/store_writer.h"

namespace glancefs::cache {

void StoreWriter::Submit(std::function<void()> run) {
  {
    MutexLock lock(&mu_);
    while (pending_ >= max_pending_) cv_.Wait(&mu_);
    ++pending_;
  }
  auto task = [this, run = std::move(run)] {
    run();
    Done();
  };
  if (!pool_->Submit(task)) task();  // shutting down: write it here
}

void StoreWriter::Done() {
  // Signalled under the lock: once Drain sees none pending, the writer may be destroyed.
  MutexLock lock(&mu_);
  --pending_;
  cv_.SignalAll();
}

void StoreWriter::Drain() {
  MutexLock lock(&mu_);
  while (pending_ > 0) cv_.Wait(&mu_);
}

}  // namespace glancefs::cache
