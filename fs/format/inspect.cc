#include "fs/format/inspect.h"

#include <memory>

#include "fs/format/container.h"
#include "fs/format/probe.h"

namespace glancefs::format {
namespace {

// A ByteSource that borrows another for the duration of one call.
class Borrowed final : public ByteSource {
 public:
  explicit Borrowed(ByteSource& src) : src_(src) {}
  uint64_t size() const override { return src_.size(); }
  Status ReadAt(uint64_t off, size_t n, char* dst) override { return src_.ReadAt(off, n, dst); }
  Result<Extent> MapExtent(uint64_t off) override { return src_.MapExtent(off); }
  void WillNeed(uint64_t off, uint64_t n) override { src_.WillNeed(off, n); }

 private:
  ByteSource& src_;
};

bool IsVerdict(const Status& s) {
  return s.code() == Status::Code::kRefused || s.code() == Status::Code::kCorruption;
}

std::string Join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// A record served as its bytes: refused only when the bytes are a format whose decoder names
// the reason (a backing file, an extent file), or one glancefs cannot check (qed).
Result<Verdict> JudgeStored(std::shared_ptr<ByteSource> disk, const std::string& disk_format,
                            Verdict v) {
  v.info.format = v.format;
  v.info.virtual_size = disk->size();
  if (disk_format == "iso" && v.format != "iso" && v.format != "raw") {
    v.refused = "the record says iso but the bytes are " + v.format;
    return v;
  }
  if (v.format == "qed") {
    v.refused = "the record says " + disk_format + " but the bytes are qed, which can name a "
                "backing file";
    return v;
  }
  const FormatSpec* spec = FindFormat(v.format);
  if (v.format != "iso" && spec && spec->open) {
    auto decoded = spec->open(disk);
    if (!decoded.ok() && decoded.status().code() == Status::Code::kRefused) {
      v.refused = "the record says " + disk_format + " but the bytes are " + v.format + ": " +
                  decoded.status().message();
      return v;
    }
    if (!decoded.ok() && !IsVerdict(decoded.status())) return decoded.status();
  }
  v.virtual_size = disk->size();
  return v;
}

}  // namespace

bool ServedAsStored(const std::string& disk_format) {
  return disk_format == "raw" || disk_format == "iso" || disk_format == "aki" ||
         disk_format == "ari" || disk_format == "ami";
}

Result<Verdict> Inspect(std::shared_ptr<ByteSource> stored, const std::string& disk_format,
                        const std::string& container_format) {
  Verdict v;
  auto disk = OpenContainer(stored, container_format, &v.container);
  if (!disk.ok()) {
    if (!IsVerdict(disk.status())) return disk.status();
    v.format = container_format;
    v.refused = disk.status().message();
    return v;
  }
  GLANCEFS_ASSIGN_OR_RETURN(auto matches, DetectFormats(**disk));
  v.format = matches.empty() ? "raw" : matches.front();
  if (matches.size() > 1) {
    v.refused = "the bytes match several formats: " + Join(matches);
    return v;
  }
  if (ServedAsStored(disk_format)) return JudgeStored(*disk, disk_format, std::move(v));
  const FormatSpec* spec = FindFormat(disk_format);
  if (!spec || !spec->open) {
    v.refused = "disk_format '" + disk_format + "' is not decoded by glancefs";
    return v;
  }
  if (v.format != disk_format) {
    v.refused = "the record says " + disk_format + " but the bytes are " + v.format;
    return v;
  }
  auto decoded = spec->open(*disk);
  if (!decoded.ok()) {
    if (!IsVerdict(decoded.status())) return decoded.status();  // an I/O failure
    v.refused = decoded.status().message();
    return v;
  }
  v.virtual_size = decoded->raw->size();
  v.info = std::move(decoded->info);
  return v;
}

Result<Verdict> Inspect(ByteSource& stored, const std::string& disk_format,
                        const std::string& container_format) {
  return Inspect(std::make_shared<Borrowed>(stored), disk_format, container_format);
}

}  // namespace glancefs::format
