// NamedThread: std::thread whose name (at most 15 characters) shows in `top -H`, perf and
// /proc/<pid>/task/*/comm, so glancefs's pools can be told apart.
#pragma once

#include <pthread.h>

#include <thread>
#include <utility>

namespace glancefs {

template <typename F>
std::thread NamedThread(const char* name, F&& f) {
  std::thread t(std::forward<F>(f));
  pthread_setname_np(t.native_handle(), name);
  return t;
}

}  // namespace glancefs
