// The one place that pins the libfuse API version. Debian 12 ships libfuse 3.14; 3.12 is the
// oldest API glancefs uses (fuse_loop_config objects for the multi-threaded loop).
#pragma once

#define FUSE_USE_VERSION 312
#include <fuse_lowlevel.h>
