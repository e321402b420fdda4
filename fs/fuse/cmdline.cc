#include "fs/fuse/cmdline.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "fs/fuse/fuse_version.h"

namespace glancefs::fuse {
namespace {

constexpr int kKeyBase = 1000;

struct ParseState {
  const std::vector<OwnOption>* own;
  SplitCommandLine* out;
};

// Takes the caller's options and SOURCE out of the arguments; leaves the rest to libfuse.
int TakeOption(void* data, const char* arg, int key, struct fuse_args*) {
  auto* state = static_cast<ParseState*>(data);
  if (key >= kKeyBase) {
    const OwnOption& option = (*state->own)[key - kKeyBase];
    state->out->given[option.name] =
        option.takes_value ? std::string(arg).substr(option.name.size() + 1) : "";
    return 0;
  }
  if (key == FUSE_OPT_KEY_NONOPT && state->out->source.empty()) {
    state->out->source = arg;
    return 0;
  }
  return 1;
}

}  // namespace

Result<SplitCommandLine> SplitFuseCommandLine(const std::vector<std::string>& argv_in,
                                              const std::vector<OwnOption>& own) {
  std::vector<std::string> templates;
  templates.reserve(own.size());
  std::vector<struct fuse_opt> fuse_opts;
  for (size_t i = 0; i < own.size(); ++i) {
    templates.push_back(own[i].name + (own[i].takes_value ? "=%s" : ""));
    fuse_opts.push_back(FUSE_OPT_KEY(templates.back().c_str(), kKeyBase + static_cast<int>(i)));
  }
  fuse_opts.push_back(FUSE_OPT_END);

  std::vector<char*> argv;
  for (const std::string& a : argv_in) argv.push_back(const_cast<char*>(a.c_str()));
  struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  SplitCommandLine out;
  ParseState state{&own, &out};
  if (fuse_opt_parse(&args, &state, fuse_opts.data(), TakeOption) != 0) {
    fuse_opt_free_args(&args);
    return Status::InvalidArgument("cannot parse the options");
  }
  struct fuse_cmdline_opts opts;
  std::memset(&opts, 0, sizeof opts);
  if (fuse_parse_cmdline(&args, &opts) != 0) {
    fuse_opt_free_args(&args);
    return Status::InvalidArgument("cannot parse the command line (see the message above)");
  }
  out.show_help = opts.show_help;
  out.show_version = opts.show_version;
  out.foreground = opts.foreground;
  out.debug = opts.debug;
  out.single_thread = opts.singlethread;
  out.max_threads = opts.max_threads;
  out.clone_fd = opts.clone_fd;
  if (opts.mountpoint) out.mountpoint = opts.mountpoint;
  std::free(opts.mountpoint);
  for (int i = 0; i < args.argc; ++i) out.fuse_args.emplace_back(args.argv[i]);
  fuse_opt_free_args(&args);
  return out;
}

std::string EscapeFuseOption(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

void PrintFuseHelp() {
  std::printf("FUSE options:\n");
  fuse_cmdline_help();
  fuse_lowlevel_help();
}

void PrintFuseVersion() {
  std::printf("libfuse version %s\n", fuse_pkgversion());
  fuse_lowlevel_version();
}

}  // namespace glancefs::fuse
