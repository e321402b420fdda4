// WorkPool: a fixed set of threads running queued tasks, first in first out. Tasks must not
// throw. Shutdown (or the destructor) drops tasks not yet started and joins the threads; tasks
// still running may Submit meanwhile (refused: Submit returns false). Its threads are named
// `name` (NamedThread). Thread-safe; mu_ is a leaf lock, never held while a task runs.
#pragma once

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "fs/base/mutex.h"
#include "fs/base/thread.h"

namespace glancefs::cache {

class WorkPool {
 public:
  WorkPool(int threads, const char* name) {
    for (int i = 0; i < threads; ++i) threads_.push_back(NamedThread(name, [this] { Loop(); }));
  }
  ~WorkPool() { Shutdown(); }

  void Shutdown() EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      stopping_ = true;
      tasks_.clear();
    }
    cv_.SignalAll();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `task`; false (and `task` is dropped) once Shutdown has begun.
  bool Submit(std::function<void()> task) EXCLUDES(mu_) {
    {
      MutexLock lock(&mu_);
      if (stopping_) return false;
      tasks_.push_back(std::move(task));
    }
    cv_.Signal();
    return true;
  }

 private:
  void Loop() EXCLUDES(mu_) {
    for (;;) {
      std::function<void()> task;
      {
        MutexLock lock(&mu_);
        while (!stopping_ && tasks_.empty()) cv_.Wait(&mu_);
        if (stopping_) return;
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  Mutex mu_;
  CondVar cv_;
  std::deque<std::function<void()>> tasks_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace glancefs::cache
