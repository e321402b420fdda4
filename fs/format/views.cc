#include "fs/format/views.h"

#include "fs/format/container.h"
#include "fs/format/format.h"
#include "fs/format/inspect.h"
#include "fs/format/qcow2_synth.h"

namespace glancefs::format {
namespace {

bool Bare(const std::string& container_format) {
  return container_format != "ova";
}

Result<std::shared_ptr<ByteSource>> OpenRaw(std::shared_ptr<ByteSource> disk,
                                            const std::string& disk_format) {
  if (ServedAsStored(disk_format)) return disk;
  const FormatSpec* spec = FindFormat(disk_format);
  if (!spec || !spec->open) {
    return Status::Refused("disk_format '" + disk_format + "' is not decoded by glancefs");
  }
  GLANCEFS_ASSIGN_OR_RETURN(Decoded decoded, spec->open(std::move(disk)));
  return std::move(decoded.raw);
}

}  // namespace

bool ViewIsStored(View view, const std::string& disk_format, const std::string& container_format) {
  if (!Bare(container_format)) return false;
  return view == View::kRaw ? ServedAsStored(disk_format) : disk_format == "qcow2";
}

Result<std::shared_ptr<ByteSource>> OpenView(View view, std::shared_ptr<ByteSource> stored,
                                             const std::string& disk_format,
                                             const std::string& container_format) {
  GLANCEFS_ASSIGN_OR_RETURN(auto disk, OpenContainer(std::move(stored), container_format));
  if (view == View::kQcow2 && disk_format == "qcow2") return disk;
  GLANCEFS_ASSIGN_OR_RETURN(auto raw, OpenRaw(std::move(disk), disk_format));
  if (view == View::kRaw) return raw;
  GLANCEFS_ASSIGN_OR_RETURN(auto synth, Qcow2Synth::Open(std::move(raw)));
  return std::shared_ptr<ByteSource>(std::move(synth));
}

}  // namespace glancefs::format
