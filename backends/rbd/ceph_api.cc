#include "backends/rbd/ceph_api.h"

#include <dlfcn.h>

#include <string>

#include "fs/base/log.h"

namespace glancefs::backends::rbd {
namespace {

CephApi api;

// The sonames of the Debian 12 packages librados2 and librbd1 (ABI versions 2 and 1).
constexpr const char* kLibrados = "librados.so.2";
constexpr const char* kLibrbd = "librbd.so.1";

Status Load() {
  void* rados = ::dlopen(kLibrados, RTLD_NOW | RTLD_LOCAL);
  if (!rados) return Status::Unavailable(std::string("cannot load ") + ::dlerror());
  void* rbd = ::dlopen(kLibrbd, RTLD_NOW | RTLD_LOCAL);
  if (!rbd) return Status::Unavailable(std::string("cannot load ") + ::dlerror());
  // Both stay loaded for the process's life: librados's threads outlive any one caller.
  auto resolve = [](void* library, const char* soname, const char* function, void** slot) {
    *slot = ::dlsym(library, function);
    if (*slot) return Status::Ok();
    return Status::Unavailable(std::string(soname) + " has no " + function);
  };
#define GLANCEFS_CEPH_RESOLVE(library, function)                                               \
  GLANCEFS_RETURN_IF_ERROR(resolve(library, library == rados ? kLibrados : kLibrbd, #function, \
                                   reinterpret_cast<void**>(&api.function)));
  GLANCEFS_CEPH_FUNCTIONS(GLANCEFS_CEPH_RESOLVE)
#undef GLANCEFS_CEPH_RESOLVE
  LOG_INFO("ceph: loaded %s and %s", kLibrados, kLibrbd);
  return Status::Ok();
}

}  // namespace

Status LoadCeph() {
  static const Status loaded = [] {
    Status s = Load();
    if (!s.ok()) {
      LOG_WARNING("ceph: %s: rbd:// locations are read through the catalog (install librbd1)",
                  s.message().c_str());
    }
    return s;
  }();
  return loaded;
}

const CephApi& Ceph() { return api; }

}  // namespace glancefs::backends::rbd
