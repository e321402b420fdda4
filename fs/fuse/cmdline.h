// A FUSE command line, split: the caller's own -o options, SOURCE, and what libfuse takes
// (MOUNTPOINT, -f, -d, -s, max_threads=, allow_other, ...). The caller's option table lives in
// the composition root (tools/glancefs/options.h); this file knows only libfuse's side.
//   PROGRAM SOURCE MOUNTPOINT [-o opt[,opt...]] [-f] [-d] [-s] [-h|--help] [-V|--version]
#pragma once

#include <map>
#include <string>
#include <vector>

#include "fs/base/status.h"

namespace glancefs::fuse {

struct OwnOption {
  std::string name;
  bool takes_value;  // name=VALUE, else a flag
};

struct SplitCommandLine {
  std::string source;  // the first non-option
  std::string mountpoint;
  std::map<std::string, std::string> given;  // the caller's options as given ("" for a flag)
  bool foreground = false;
  bool debug = false;
  bool single_thread = false;
  bool show_help = false;
  bool show_version = false;
  unsigned max_threads = 10;
  bool clone_fd = false;
  std::vector<std::string> fuse_args;  // the rest, for fuse_session_new, argv[0] first
};

Result<SplitCommandLine> SplitFuseCommandLine(const std::vector<std::string>& argv,
                                              const std::vector<OwnOption>& own);

// `value` for an -o list: libfuse splits at ',' and unescapes '\'.
std::string EscapeFuseOption(const std::string& value);

// libfuse's own --help and --version text.
void PrintFuseHelp();
void PrintFuseVersion();

}  // namespace glancefs::fuse
