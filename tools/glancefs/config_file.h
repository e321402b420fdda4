// The config file: /etc/glancefs/<name>.conf, INI like every OpenStack service's.
//
//   [glancefs]
//   source = http://glance.internal:9292     # SOURCE
//   mountpoint = /mnt/glance                 # MOUNTPOINT (the command line's wins)
//   token_file = /etc/glancefs/token         # every other key is a -o option...
//   cache_size = 20G
//   allow_other = true                       # ...and true/yes turns a flag on, false/no off
//
// `glancefs --config FILE [MOUNTPOINT] [-o opts] [-f]`: the file's options come first and the
// command line's -o options after them, so the command line wins. Parsed with
// Boost.PropertyTree: keys outside [glancefs], other sections, duplicate keys, keys that are
// not option names and values with line breaks are refused by name.
#pragma once

#include <string>
#include <vector>

#include "fs/base/status.h"

namespace glancefs::tools {

// `argv` with `--config FILE` (or `--config=FILE`) replaced by SOURCE, MOUNTPOINT and one -o
// option list from FILE. Unchanged when there is no --config.
Result<std::vector<std::string>> ExpandConfig(const std::vector<std::string>& argv);

}  // namespace glancefs::tools
