// WorkPool: a fixed set of threads running queued tasks, first in first out. Tasks must not
// throw. Shutdown (or the destructor) drops tasks not yet started and joins the threads; tasks
// still running may Submit meanwhile (refused: Submit returns false). Its threads are named
// `name` (NamedThread).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "fs/base/thread.h"

namespace glancefs::cache {

class WorkPool {
 public:
  WorkPool(int threads, const char* name) {
    for (int i = 0; i < threads; ++i) threads_.push_back(NamedThread(name, [this] { Loop(); }));
  }
  ~WorkPool() { Shutdown(); }

  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      tasks_.clear();
    }
    cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `task`; false (and `task` is dropped) once Shutdown has begun.
  bool Submit(std::function<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return false;
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
    return true;
  }

 private:
  void Loop() {
    for (;;) {
      std::function<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
        if (stopping_) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // GUARDED_BY(mu_)
  bool stopping_ = false;                    // GUARDED_BY(mu_)
  std::vector<std::thread> threads_;
};

}  // namespace glancefs::cache
