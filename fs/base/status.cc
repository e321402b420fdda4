#include "fs/base/status.h"

#include <cstring>

namespace glancefs {
namespace {

const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk:
      return "OK";
    case Status::Code::kNotFound:
      return "Not found";
    case Status::Code::kCorruption:
      return "Corruption";
    case Status::Code::kNotSupported:
      return "Not supported";
    case Status::Code::kInvalidArgument:
      return "Invalid argument";
    case Status::Code::kIOError:
      return "I/O error";
    case Status::Code::kUnavailable:
      return "Unavailable";
    case Status::Code::kPermissionDenied:
      return "Permission denied";
    case Status::Code::kReadOnly:
      return "Read-only";
    case Status::Code::kOutOfRange:
      return "Out of range";
    case Status::Code::kTooBig:
      return "Too big";
    case Status::Code::kRefused:
      return "Refused";
  }
  return "Unknown";
}

}  // namespace

Status Status::FromErrno(int err, std::string_view context) {
  std::string msg(context);
  msg += ": ";
  msg += std::strerror(err);
  Code code = Code::kIOError;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == EACCES || err == EPERM) code = Code::kPermissionDenied;
  return Status(code, msg);
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s = CodeName(code_);
  if (!message_.empty()) {
    s += ": ";
    s += message_;
  }
  return s;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Status(code_, msg);
}

}  // namespace glancefs
