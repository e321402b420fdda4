// glancefs-catalog: builds and edits local directory catalogs (docs/SEMANTICS.md, "Local
// catalogs"), writing records exactly as Glance v2 returns them.
//
//   glancefs-catalog add CATALOG FILE [--name NAME] [--id ID] [--disk-format F]
//                        [--container-format C] [--property KEY=VALUE]... [--hidden]
//                        [--visibility V] [--link]
//   glancefs-catalog remove CATALOG ID
//
// Writes are atomic: data first, then the record, each through a dot-file and rename(2), so a
// mounted glancefs never sees a half-written image.
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "backends/common/image_record_json.h"
#include "backends/dir/file_byte_source.h"
#include "fs/base/hash.h"
#include "fs/base/time_util.h"
#include "fs/format/inspect.h"
#include "fs/format/probe.h"

namespace {

using glancefs::Result;
using glancefs::Status;

constexpr size_t kChunk = 1 << 20;

struct AddOptions {
  std::string catalog, file, name, id, disk_format, container_format = "bare";
  std::string visibility = "public";
  std::map<std::string, std::string> properties;
  bool hidden = false;
  bool link = false;
  bool has_name = false;
};

int Usage() {
  std::fprintf(stderr,
               "usage: glancefs-catalog add CATALOG FILE [--name NAME] [--id ID]\n"
               "                            [--disk-format F] [--container-format C]\n"
               "                            [--property KEY=VALUE]... [--hidden]\n"
               "                            [--visibility V] [--link]\n"
               "       glancefs-catalog remove CATALOG ID\n");
  return 2;
}

int Fail(const Status& s) {
  std::fprintf(stderr, "glancefs-catalog: %s\n", s.message().c_str());
  return 1;
}

std::string NewUuid() {
  unsigned char b[16];
  int fd = ::open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0 || ::read(fd, b, sizeof b) != static_cast<ssize_t>(sizeof b)) std::abort();
  ::close(fd);
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  char out[37];
  std::snprintf(out, sizeof out,
                "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
                b[15]);
  return out;
}

class Hasher {
 public:
  explicit Hasher(const EVP_MD* md) : ctx_(EVP_MD_CTX_new()) {
    EVP_DigestInit_ex(ctx_, md, nullptr);
  }
  ~Hasher() { EVP_MD_CTX_free(ctx_); }
  void Update(const char* p, size_t n) { EVP_DigestUpdate(ctx_, p, n); }
  std::string HexDigest() {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_DigestFinal_ex(ctx_, d, &n);
    return glancefs::HexOf(d, n);
  }

 private:
  EVP_MD_CTX* ctx_;
};

bool AllZero(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i]) return false;
  }
  return true;
}

// Copies (or hard-links) FILE to `dst`, keeping holes, and hashes it.
Status CopyAndHash(const std::string& src_path, const std::string& dst, bool link, uint64_t* size,
                   std::string* md5, std::string* sha512) {
  int in = ::open(src_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return Status::FromErrno(errno, src_path);
  int out = -1;
  if (link) {
    if (::link(src_path.c_str(), dst.c_str()) != 0) {
      int err = errno;
      ::close(in);
      return Status::FromErrno(err, "link " + src_path + " to " + dst);
    }
  } else {
    out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
      int err = errno;
      ::close(in);
      return Status::FromErrno(err, dst);
    }
  }
  Hasher h_md5(EVP_md5()), h_sha512(EVP_sha512());
  std::vector<char> buf(kChunk);
  uint64_t off = 0;
  Status st;
  for (;;) {
    ssize_t got = ::read(in, buf.data(), buf.size());
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      st = Status::FromErrno(errno, src_path);
      break;
    }
    if (got == 0) break;
    h_md5.Update(buf.data(), got);
    h_sha512.Update(buf.data(), got);
    if (out >= 0 && !AllZero(buf.data(), got)) {
      if (::pwrite(out, buf.data(), got, static_cast<off_t>(off)) != got) {
        st = Status::FromErrno(errno, dst);
        break;
      }
    }
    off += static_cast<uint64_t>(got);
  }
  if (st.ok() && out >= 0) {
    if (::ftruncate(out, static_cast<off_t>(off)) != 0 || ::fsync(out) != 0) {
      st = Status::FromErrno(errno, dst);
    }
  }
  ::close(in);
  if (out >= 0) ::close(out);
  *size = off;
  *md5 = h_md5.HexDigest();
  *sha512 = h_sha512.HexDigest();
  return st;
}

Status WriteFileAtomically(const std::string& dir, const std::string& name,
                           const std::string& text) {
  std::string tmp = dir + "/." + name + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return Status::FromErrno(errno, tmp);
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok) return Status::FromErrno(err, tmp);
  if (::rename(tmp.c_str(), (dir + "/" + name).c_str()) != 0) {
    return Status::FromErrno(errno, dir + "/" + name);
  }
  return Status::Ok();
}

int Add(const AddOptions& o) {
  // Glance's own fields cannot be set as properties.
  static const std::set<std::string> kReserved = {"id",
                                                  "name",
                                                  "status",
                                                  "visibility",
                                                  "protected",
                                                  "os_hidden",
                                                  "checksum",
                                                  "os_hash_algo",
                                                  "os_hash_value",
                                                  "owner",
                                                  "size",
                                                  "virtual_size",
                                                  "min_ram",
                                                  "min_disk",
                                                  "disk_format",
                                                  "container_format",
                                                  "created_at",
                                                  "updated_at",
                                                  "tags",
                                                  "self",
                                                  "file",
                                                  "schema",
                                                  "locations",
                                                  "direct_url",
                                                  "stores"};
  for (const auto& [k, v] : o.properties) {
    if (kReserved.count(k)) return Fail(Status::InvalidArgument("'" + k + "' is not a property"));
  }
  std::string id = o.id.empty() ? NewUuid() : o.id;
  if (!glancefs::backends::IsSafeImageId(id)) {
    return Fail(Status::InvalidArgument("bad image id '" + id + "'"));
  }
  struct stat st;
  if (::stat((o.catalog + "/" + id + ".json").c_str(), &st) == 0) {
    return Fail(Status::InvalidArgument("image " + id + " is already in " + o.catalog));
  }
  std::string tmp_data = o.catalog + "/." + id + ".data.tmp";
  // A leftover from an interrupted run is ours to replace; never write through it (it may be a
  // hard link to somebody's file).
  ::unlink(tmp_data.c_str());
  auto fail = [&](const Status& st) {
    ::unlink(tmp_data.c_str());
    return Fail(st);
  };
  uint64_t size = 0;
  std::string md5, sha512;
  Status s = CopyAndHash(o.file, tmp_data, o.link, &size, &md5, &sha512);
  if (!s.ok()) return fail(s);
  std::string format = o.disk_format;
  std::optional<uint64_t> virtual_size;
  {
    auto src = glancefs::backends::FileByteSource::Open(tmp_data, size, "image " + id);
    if (!src.ok()) return fail(src.status());
    if (format.empty()) {
      auto probed = glancefs::format::ProbeFormat(**src);
      if (!probed.ok()) return fail(probed.status());
      format = *probed;
    }
    // As Glance does: the virtual size of what the decoder accepts, none otherwise.
    auto verdict = glancefs::format::Inspect(**src, format, o.container_format);
    if (verdict.ok()) virtual_size = verdict->virtual_size;
  }
  std::string now = glancefs::FormatIso8601(::time(nullptr));
  nlohmann::ordered_json r;
  r["id"] = id;
  r["name"] = o.has_name ? nlohmann::ordered_json(o.name) : nlohmann::ordered_json(nullptr);
  r["status"] = "active";
  r["visibility"] = o.visibility;
  r["protected"] = false;
  r["os_hidden"] = o.hidden;
  r["checksum"] = md5;
  r["os_hash_algo"] = "sha512";
  r["os_hash_value"] = sha512;
  r["owner"] = nullptr;
  r["size"] = size;
  r["virtual_size"] =
      virtual_size ? nlohmann::ordered_json(*virtual_size) : nlohmann::ordered_json(nullptr);
  r["min_ram"] = 0;
  r["min_disk"] = 0;
  r["disk_format"] = format;
  r["container_format"] = o.container_format;
  r["created_at"] = now;
  r["updated_at"] = now;
  r["tags"] = nlohmann::ordered_json::array();
  r["self"] = "/v2/images/" + id;
  r["file"] = "/v2/images/" + id + "/file";
  r["schema"] = "/v2/schemas/image";
  for (const auto& [k, v] : o.properties) r[k] = v;
  std::string text;
  try {
    text = r.dump(2) + "\n";
  } catch (const nlohmann::json::exception&) {
    return fail(Status::InvalidArgument("names and properties must be UTF-8 text"));
  }
  // Data first, then the record: a catalog never lists an image without its data.
  if (::rename(tmp_data.c_str(), (o.catalog + "/" + id).c_str()) != 0) {
    return fail(Status::FromErrno(errno, o.catalog + "/" + id));
  }
  s = WriteFileAtomically(o.catalog, id + ".json", text);
  if (!s.ok()) {
    ::unlink((o.catalog + "/" + id).c_str());
    return Fail(s);
  }
  std::printf("%s\n", id.c_str());
  return 0;
}

int Remove(const std::string& catalog, const std::string& id) {
  if (!glancefs::backends::IsSafeImageId(id)) {
    return Fail(Status::InvalidArgument("bad image id '" + id + "'"));
  }
  // The record first, so the catalog never lists an image without data.
  if (::unlink((catalog + "/" + id + ".json").c_str()) != 0) {
    return Fail(Status::FromErrno(errno, catalog + "/" + id + ".json"));
  }
  ::unlink((catalog + "/" + id).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") return Usage();
  if (args[0] == "remove") {
    if (args.size() != 3) return Usage();
    return Remove(args[1], args[2]);
  }
  if (args[0] != "add") return Usage();
  AddOptions o;
  std::vector<std::string> positional;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) return false;
      *out = args[++i];
      return true;
    };
    std::string v;
    if (a == "--name" && value(&o.name)) {
      o.has_name = true;
    } else if (a == "--id" && value(&o.id)) {
    } else if (a == "--disk-format" && value(&o.disk_format)) {
    } else if (a == "--container-format" && value(&o.container_format)) {
    } else if (a == "--visibility" && value(&o.visibility)) {
    } else if (a == "--property" && value(&v)) {
      size_t eq = v.find('=');
      if (eq == std::string::npos || eq == 0) return Usage();
      o.properties[v.substr(0, eq)] = v.substr(eq + 1);
    } else if (a == "--hidden") {
      o.hidden = true;
    } else if (a == "--link") {
      o.link = true;
    } else if (!a.empty() && a[0] == '-') {
      return Usage();
    } else {
      positional.push_back(a);
    }
  }
  if (positional.size() != 2) return Usage();
  o.catalog = positional[0];
  o.file = positional[1];
  return Add(o);
}
