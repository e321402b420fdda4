// CephApi: librados and librbd, loaded the first time an rbd:// location is read.
//
// Contract:
//  - glancefs does not link librados or librbd. A node that never reads from Ceph never maps
//    them (with libceph-common, 22 MB that a cold mount spent 27 ms loading on the reference
//    machine), and glancefs runs where they are not installed.
//  - LoadCeph() loads librados.so.2 and librbd.so.1 by soname, through the system's library
//    search path only (never a path from an image, a catalog record or an option), and
//    resolves every function the rbd backend calls. It runs once; its verdict is every later
//    caller's: Unavailable naming the missing library or function (install librbd1).
//  - Ceph() is the loaded table. Only code holding a CephPool (which exists only after a
//    successful LoadCeph) calls it.
// Thread-safe.
#pragma once

#include <rados/librados.h>
#include <rbd/librbd.h>

#include "fs/base/status.h"

namespace glancefs::backends::rbd {

// Every librados/librbd function the backend calls: X(library, function).
// clang-format off
#define GLANCEFS_CEPH_FUNCTIONS(X)  \
  X(rados, rados_create2)           \
  X(rados, rados_conf_read_file)    \
  X(rados, rados_conf_get)          \
  X(rados, rados_conf_set)          \
  X(rados, rados_connect)           \
  X(rados, rados_cluster_fsid)      \
  X(rados, rados_shutdown)          \
  X(rados, rados_ioctx_create)      \
  X(rados, rados_ioctx_destroy)     \
  X(rados, rados_stat)              \
  X(rbd, rbd_open_read_only)        \
  X(rbd, rbd_close)                 \
  X(rbd, rbd_get_size)              \
  X(rbd, rbd_get_id)                \
  X(rbd, rbd_diff_iterate2)         \
  X(rbd, rbd_aio_create_completion) \
  X(rbd, rbd_aio_readv)             \
  X(rbd, rbd_aio_wait_for_complete) \
  X(rbd, rbd_aio_get_return_value)  \
  X(rbd, rbd_aio_release)
// clang-format on

struct CephApi {
#define GLANCEFS_CEPH_POINTER(library, function) decltype(&::function) function = nullptr;
  GLANCEFS_CEPH_FUNCTIONS(GLANCEFS_CEPH_POINTER)
#undef GLANCEFS_CEPH_POINTER
};

// Loads the libraries once. Ok, or why Ceph cannot be read from on this node.
Status LoadCeph();

// The loaded functions. Valid only after LoadCeph() returned Ok.
const CephApi& Ceph();

}  // namespace glancefs::backends::rbd
