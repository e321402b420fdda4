// Status and Result<T>: how every glancefs layer reports failure.
//
// A Status is OK or an error code plus a message that carries context (image id, offset, file).
// Codes are few on purpose; the one place that turns them into errnos is fs/fuse/errno.cc.
// Corruption (bad bytes from a source or a cache) is kept apart from IOError (the source could
// not be reached or read) so that a cache can drop a bad block and fetch it again.
//
// Both types are cheap to move, immutable after construction and safe to share across threads.
// Nothing in glancefs throws across a layer boundary: third-party exceptions are caught at the
// edge of the module that uses the library and become a Status.
//
// Both are [[nodiscard]], and the build makes an ignored one an error (-Werror=unused-result):
// a failure is handled, passed up, or dropped on purpose with IgnoreError() and a comment
// saying why nothing is lost.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace glancefs {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kNotFound,          // ENOENT: no such image, name or key
    kCorruption,        // EIO: bytes that contradict their own format or checksum
    kNotSupported,      // ENOTSUP: a valid request this build or source cannot serve
    kInvalidArgument,   // EINVAL: a caller passed something malformed
    kIOError,           // EIO: the source or disk failed
    kUnavailable,       // EIO after retries: a remote service is down or too slow
    kPermissionDenied,  // EACCES
    kReadOnly,          // EROFS: an attempt to change the read-only catalog
    kOutOfRange,        // ENXIO for lseek past the end; EINVAL elsewhere
    kTooBig,            // ERANGE / E2BIG: a value does not fit the caller's buffer
    kRefused,           // EIO: an image that glancefs will not decode (unsafe or unsupported)
  };

  Status() = default;  // OK
  static Status Ok() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg); }
  static Status NotSupported(std::string_view msg) { return Status(Code::kNotSupported, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, msg);
  }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, msg); }
  static Status Unavailable(std::string_view msg) { return Status(Code::kUnavailable, msg); }
  static Status PermissionDenied(std::string_view msg) {
    return Status(Code::kPermissionDenied, msg);
  }
  static Status ReadOnly(std::string_view msg) { return Status(Code::kReadOnly, msg); }
  static Status OutOfRange(std::string_view msg) { return Status(Code::kOutOfRange, msg); }
  static Status TooBig(std::string_view msg) { return Status(Code::kTooBig, msg); }
  static Status Refused(std::string_view msg) { return Status(Code::kRefused, msg); }
  // An IOError whose message ends with strerror(err), for failed system calls.
  static Status FromErrno(int err, std::string_view context);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsNotSupported() const { return code_ == Code::kNotSupported; }

  // "Corruption: qcow2 L2 table at 0x30000 is outside the file" (or "OK").
  std::string ToString() const;
  // Returns a copy whose message is "context: message".
  Status WithContext(std::string_view context) const;
  // Drops this status on purpose. The caller says, in a comment, why nothing is lost.
  void IgnoreError() const {}

 private:
  Status(Code code, std::string_view msg) : code_(code), message_(msg) {}

  Code code_ = Code::kOk;
  std::string message_;
};

// A value or the Status that explains why there is none. REQUIRES: the Status is not OK.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok());
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  // Drops this result on purpose (see Status::IgnoreError).
  void IgnoreError() const {}

 private:
  std::variant<T, Status> v_;
};

}  // namespace glancefs

#define GLANCEFS_CONCAT_INNER_(a, b) a##b
#define GLANCEFS_CONCAT_(a, b) GLANCEFS_CONCAT_INNER_(a, b)

// Returns from the calling function if `expr` (a Status) is not OK.
#define GLANCEFS_RETURN_IF_ERROR(expr)           \
  do {                                           \
    ::glancefs::Status _glancefs_st = (expr);    \
    if (!_glancefs_st.ok()) return _glancefs_st; \
  } while (0)

// `GLANCEFS_ASSIGN_OR_RETURN(auto x, F());` declares x from a Result or returns its Status.
#define GLANCEFS_ASSIGN_OR_RETURN(lhs, expr) \
  GLANCEFS_ASSIGN_OR_RETURN_IMPL_(GLANCEFS_CONCAT_(_glancefs_r, __LINE__), lhs, expr)
#define GLANCEFS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                    \
  if (!tmp.ok()) return tmp.status();                   \
  lhs = std::move(tmp).value()
