// The MountTest fixture shared by the mount test files: a generated local catalog in a fresh
// work directory, the tools the tests drive, and images to put in it.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "tests/integration/harness.h"

namespace glancefs::itest {

namespace fs = std::filesystem;

// Waits up to `seconds` for `cmd` to succeed (the catalog refresh runs every second here).
inline bool Eventually(const std::string& cmd, int seconds = 10) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Sh(cmd, 30).status == 0) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return false;
}

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* tool : {"qemu-img", "qemu-io", "getfattr", "rsync", "fusermount3"}) {
      ASSERT_TRUE(HaveCommand(tool)) << tool << " is missing: run scripts/install-deps.sh";
    }
    ASSERT_TRUE(fs::exists("/dev/fuse")) << "/dev/fuse is missing: modprobe fuse";
    work_ = MakeTempDir("glancefs-it");
    catalog_ = work_ + "/catalog";
    fs::create_directory(catalog_);
  }
  void TearDown() override { fs::remove_all(work_); }

  // A 24 MiB raw image with data, a hole and a zero run.
  std::string MakeRaw(const std::string& name) {
    std::string f = work_ + "/" + name;
    MustSh("set -e; truncate -s 24M " + f + "; head -c 4M /dev/urandom | dd of=" + f +
           " conv=notrunc status=none; head -c 2M /dev/urandom | dd of=" + f +
           " bs=1M seek=20 conv=notrunc status=none");
    return f;
  }
  std::string MakeQcow2(const std::string& name) {
    std::string f = work_ + "/" + name;
    MustSh("set -e; qemu-img create -q -f qcow2 " + f +
           " 64M; qemu-io -f qcow2 -c 'write -P 0xab 0 1M' "
           "-c 'write -P 0xcd 32M 512k' " +
           f + " >/dev/null");
    return f;
  }

  std::string work_, catalog_;
};

}  // namespace glancefs::itest
