// Helpers for integration tests that mount glancefs for real and drive it with the tools a user
// has (ls, stat, cat, cmp, cp, rsync, getfattr, find, qemu-img).
#pragma once

#include <gtest/gtest.h>
#include <sys/types.h>

#include <map>
#include <string>

namespace glancefs::itest {

struct CmdResult {
  int status = -1;  // exit status; -1 if the command could not run or was killed
  std::string out;  // stdout and stderr together
};

// Runs `cmd` with bash, with a time limit of `timeout_s` (a hang fails the test, never blocks CI).
CmdResult Sh(const std::string& cmd, int timeout_s = 120);
// Like Sh, but fails the current test unless the exit status is 0; returns stdout+stderr.
std::string MustSh(const std::string& cmd, int timeout_s = 120);

std::string Quote(const std::string& s);
std::string MakeTempDir(const std::string& prefix);
std::string ReadFile(const std::string& path);
void WriteFile(const std::string& path, const std::string& text);

// Adds FILE to CATALOG with glancefs-catalog; returns the new id.
std::string AddImage(const std::string& catalog, const std::string& file,
                     const std::string& args = "");

// True iff a command exists on PATH.
bool HaveCommand(const std::string& name);

// A loopback TCP port nobody listens on now (the kernel picks it).
int FreePort();

// Starts again the servers tests/fixtures/glance/glance-up.sh set up in STATE_DIR (after
// glance-down.sh without --purge). A failure's message holds the fixture's log.
::testing::AssertionResult GlanceUpAgain(const std::string& state_dir);

// The `export NAME=VALUE` lines a fixture prints (tests/fixtures/glance), quotes removed.
std::map<std::string, std::string> ParseExports(const std::string& text);

// A running `glancefs dir:CATALOG MOUNTPOINT -f` with its stderr captured.
class Mount {
 public:
  Mount(const std::string& source, const std::string& options = "-o refresh=1");
  ~Mount();
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;

  bool mounted() const { return mounted_; }
  const std::string& path() const { return path_; }
  std::string Log() const;
  // fusermount3 -u and wait; returns glancefs's exit status (-1 on timeout or signal).
  int Unmount();
  // Sends a signal and waits; returns the exit status.
  int Signal(int sig);
  // Sends a signal to glancefs's first thread named `comm` (tgkill), not to the process, and
  // waits; returns the exit status, or -2 when no thread has had that name for 10 s.
  int SignalThread(const std::string& comm, int sig);
  pid_t pid() const { return pid_; }

 private:
  int Wait(int timeout_s);

  std::string dir_;
  std::string path_;
  std::string log_path_;
  pid_t pid_ = -1;
  bool mounted_ = false;
};

bool IsMounted(const std::string& path);

}  // namespace glancefs::itest
