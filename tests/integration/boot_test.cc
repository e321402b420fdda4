// A VM boots from disk.raw of a compressed qcow2 image through the mount: qemu-system-x86_64
// (software emulation) reads the boot sector and everything the BIOS touches through glancefs.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "tests/integration/harness.h"

namespace glancefs::itest {
namespace {

namespace fs = std::filesystem;

// A 16-bit boot sector that writes a message to COM1 and halts:
//   cli; xor ax,ax; mov ds,ax; cld; mov si,0x7c17; mov dx,0x3f8
//   loop: lodsb; test al,al; jz done; out dx,al; jmp loop
//   done: hlt; jmp done
//   db "GLANCEFS-BOOT-OK", 13, 10, 0     ... 0x55 0xAA at 510
std::string BootSector() {
  const unsigned char code[] = {0xFA, 0x31, 0xC0, 0x8E, 0xD8, 0xFC, 0xBE, 0x17,
                                0x7C, 0xBA, 0xF8, 0x03, 0xAC, 0x84, 0xC0, 0x74,
                                0x03, 0xEE, 0xEB, 0xF8, 0xF4, 0xEB, 0xFD};
  std::string s(512, '\0');
  s.replace(0, sizeof code, reinterpret_cast<const char*>(code), sizeof code);
  const char msg[] = "GLANCEFS-BOOT-OK\r\n";
  s.replace(sizeof code, sizeof msg - 1, msg);
  s[510] = static_cast<char>(0x55);
  s[511] = static_cast<char>(0xAA);
  return s;
}

TEST(BootTest, VmBootsFromTheDecodedRawView) {
  ASSERT_TRUE(HaveCommand("qemu-system-x86_64"))
      << "qemu-system-x86_64 is missing: run scripts/install-deps.sh";
  std::string work = MakeTempDir("glancefs-boot");
  std::string raw = work + "/boot.raw";
  WriteFile(raw, BootSector());
  // 32 MiB: the boot sector, random data further on, holes between.
  MustSh("truncate -s 32M " + raw + " && head -c 4M /dev/urandom | dd of=" + raw +
         " bs=1M seek=8 conv=notrunc status=none");
  std::string qcow = work + "/boot.qcow2";
  MustSh("qemu-img convert -c -f raw -O qcow2 " + raw + " " + qcow);
  std::string catalog = work + "/catalog";
  fs::create_directory(catalog);
  std::string id = AddImage(catalog, qcow, "--name bootable");
  {
    Mount m("dir:" + catalog);
    ASSERT_TRUE(m.mounted());
    std::string serial = work + "/serial.txt";
    std::string disk = m.path() + "/by-name/bootable/disk.raw";
    CmdResult r =
        Sh("qemu-system-x86_64 -accel tcg -m 64 -display none -monitor none -no-reboot "
           "-serial file:" +
               serial + " -drive file=" + disk +
               ",format=raw,readonly=on,if=virtio & pid=$!; "
               "for i in $(seq 600); do grep -q GLANCEFS-BOOT-OK " +
               serial +
               " 2>/dev/null && break; sleep 0.1; done; kill $pid; wait $pid; "
               "cat " +
               serial,
           120);
    EXPECT_NE(r.out.find("GLANCEFS-BOOT-OK"), std::string::npos) << r.out;
    EXPECT_EQ(m.Unmount(), 0) << m.Log();
  }
  fs::remove_all(work);
}

}  // namespace
}  // namespace glancefs::itest
