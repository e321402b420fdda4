#include "fs/format/inspect.h"

#include <memory>

#include "fs/format/probe.h"
#include "fs/format/qcow2_reader.h"

namespace glancefs::format {
namespace {

// A ByteSource that borrows another for the duration of one call.
class Borrowed final : public ByteSource {
 public:
  explicit Borrowed(ByteSource& src) : src_(src) {}
  uint64_t size() const override { return src_.size(); }
  Status ReadAt(uint64_t off, size_t n, char* dst) override { return src_.ReadAt(off, n, dst); }

 private:
  ByteSource& src_;
};

}  // namespace

Result<Verdict> Inspect(ByteSource& src, const std::string& disk_format) {
  Verdict v;
  GLANCEFS_ASSIGN_OR_RETURN(v.format, ProbeFormat(src));
  if (disk_format == "raw" || disk_format == "iso") {
    // Exposed as the bytes they are, never decoded, whatever they look like.
    v.virtual_size = src.size();
    return v;
  }
  if (disk_format == "qcow2") {
    if (v.format != "qcow2") {
      v.refused = "the record says qcow2 but the bytes are " + v.format;
      return v;
    }
    auto reader = Qcow2Reader::Open(std::make_shared<Borrowed>(src));
    if (!reader.ok()) {
      if (reader.status().code() != Status::Code::kRefused &&
          reader.status().code() != Status::Code::kCorruption) {
        return reader.status();  // an I/O failure is not a verdict
      }
      v.refused = reader.status().message();
      return v;
    }
    v.virtual_size = (*reader)->size();
    return v;
  }
  v.refused = "disk_format '" + disk_format + "' is not decoded by this version";
  return v;
}

}  // namespace glancefs::format
