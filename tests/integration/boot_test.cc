// A VM boots through the mount: from disk.raw of a compressed qcow2 image, and from the
// synthesized disk.qcow2 of a raw image. qemu-system-x86_64 (software emulation) reads the boot
// sector and everything the BIOS touches through glancefs.
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

// Boots DISK (FORMAT) read-only; returns the serial console's text.
std::string Boot(const std::string& work, const std::string& disk, const std::string& format) {
  std::string serial = work + "/serial-" + format + ".txt";
  CmdResult r = Sh("qemu-system-x86_64 -accel tcg -m 64 -display none -monitor none -no-reboot "
                   "-serial file:" + serial + " -drive file=" + disk + ",format=" + format +
                       ",readonly=on,if=virtio & pid=$!; "
                       "for i in $(seq 600); do grep -q GLANCEFS-BOOT-OK " + serial +
                       " 2>/dev/null && break; sleep 0.1; done; kill $pid; wait $pid; cat " +
                       serial,
                   120);
  return r.out;
}

TEST(BootTest, VmBootsFromTheDecodedRawViewAndTheSynthesizedQcow2View) {
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
  AddImage(catalog, qcow, "--name bootable");
  AddImage(catalog, raw, "--name bootable-raw --disk-format raw");
  {
    Mount m("dir:" + catalog);
    ASSERT_TRUE(m.mounted());
    std::string out = Boot(work, m.path() + "/by-name/bootable/disk.raw", "raw");
    EXPECT_NE(out.find("GLANCEFS-BOOT-OK"), std::string::npos) << out;
    out = Boot(work, m.path() + "/by-name/bootable-raw/disk.qcow2", "qcow2");
    EXPECT_NE(out.find("GLANCEFS-BOOT-OK"), std::string::npos) << out;
    EXPECT_EQ(m.Unmount(), 0) << m.Log();
  }
  fs::remove_all(work);
}

}  // namespace
}  // namespace glancefs::itest
