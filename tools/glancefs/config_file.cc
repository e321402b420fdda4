#include "tools/glancefs/config_file.h"

#include <boost/property_tree/ini_parser.hpp>
#include <boost/property_tree/ptree.hpp>

#include <cctype>

#include "fs/fuse/cmdline.h"

namespace glancefs::tools {
namespace {

bool IsOptionName(const std::string& key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!std::islower(static_cast<unsigned char>(c)) && !std::isdigit(static_cast<unsigned char>(c)) &&
        c != '_') {
      return false;
    }
  }
  return true;
}

struct FileSettings {
  std::string source, mountpoint;
  std::vector<std::string> options;  // "key=value" or "flag"
};

Result<FileSettings> ReadConfig(const std::string& path) {
  namespace pt = boost::property_tree;
  pt::ptree tree;
  try {
    pt::read_ini(path, tree);
  } catch (const pt::ini_parser_error& e) {
    return Status::InvalidArgument("config " + path + ": " + e.message() +
                                   (e.line() ? " (line " + std::to_string(e.line()) + ")" : ""));
  }
  FileSettings out;
  bool found = false;
  for (const auto& [section, keys] : tree) {
    if (keys.empty()) {
      return Status::InvalidArgument("config " + path + ": '" + section +
                                     "' is outside the [glancefs] section");
    }
    if (section != "glancefs") {
      return Status::InvalidArgument("config " + path + ": unknown section [" + section +
                                     "] (only [glancefs])");
    }
    found = true;
    for (const auto& [key, node] : keys) {
      const std::string value = node.data();
      if (!IsOptionName(key)) {
        return Status::InvalidArgument("config " + path + ": '" + key + "' is not an option name");
      }
      if (value.find_first_of("\r\n") != std::string::npos) {
        return Status::InvalidArgument("config " + path + ": " + key + " holds a line break");
      }
      if (key == "source") {
        out.source = value;
      } else if (key == "mountpoint") {
        out.mountpoint = value;
      } else if (value == "true" || value == "yes") {
        out.options.push_back(key);
      } else if (value == "false" || value == "no") {
        continue;
      } else {
        out.options.push_back(key + "=" + fuse::EscapeFuseOption(value));
      }
    }
  }
  if (!found) return Status::InvalidArgument("config " + path + ": no [glancefs] section");
  return out;
}

}  // namespace

Result<std::vector<std::string>> ExpandConfig(const std::vector<std::string>& argv) {
  std::string path;
  std::vector<std::string> rest, positional;
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--config") {
      if (i + 1 >= argv.size()) return Status::InvalidArgument("--config needs a FILE");
      path = argv[++i];
    } else if (a.rfind("--config=", 0) == 0) {
      path = a.substr(9);
    } else if (a == "-o" && i + 1 < argv.size()) {
      rest.push_back(a);
      rest.push_back(argv[++i]);
    } else if (!a.empty() && a[0] != '-') {
      positional.push_back(a);
    } else {
      rest.push_back(a);
    }
  }
  if (path.empty()) return argv;
  GLANCEFS_ASSIGN_OR_RETURN(FileSettings file, ReadConfig(path));
  if (positional.size() > 1) {
    return Status::InvalidArgument("with --config, the command line gives at most MOUNTPOINT");
  }
  if (!positional.empty()) file.mountpoint = positional[0];
  if (file.source.empty()) return Status::InvalidArgument("config " + path + ": no source");
  if (file.mountpoint.empty()) {
    return Status::InvalidArgument("config " + path + ": no mountpoint (nor one on the command line)");
  }
  std::vector<std::string> out = {argv[0], file.source, file.mountpoint};
  if (!file.options.empty()) {
    std::string list;
    for (const std::string& o : file.options) list += (list.empty() ? "" : ",") + o;
    out.push_back("-o");
    out.push_back(list);
  }
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

}  // namespace glancefs::tools
