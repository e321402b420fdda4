#include "cache/stored_catalog.h"

#include <xxhash.h>

#include <cstring>

namespace glancefs::cache {
namespace {

constexpr std::string_view kMagic = "glancefs-catalog";
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 16 + 4 + 8;  // magic, version, XXH64 of the payload

class Writer {
 public:
  void U64(uint64_t v) {
    char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>(v >> (8 * i));
    out_.append(b, 8);
  }
  void Str(std::string_view s) {
    U64(s.size());
    out_.append(s);
  }
  void Opt(const std::optional<uint64_t>& v) {
    U64(v.has_value());
    U64(v.value_or(0));
  }
  std::string& out() { return out_; }

 private:
  std::string out_;
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool U64(uint64_t* v) {
    if (in_.size() < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= static_cast<uint64_t>(static_cast<unsigned char>(in_[i])) << (8 * i);
    in_.remove_prefix(8);
    return true;
  }
  bool Str(std::string* s) {
    uint64_t n;
    if (!U64(&n) || n > in_.size()) return false;
    s->assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  bool Opt(std::optional<uint64_t>* v) {
    uint64_t has, value;
    if (!U64(&has) || !U64(&value) || has > 1) return false;
    *v = has ? std::optional<uint64_t>(value) : std::nullopt;
    return true;
  }
  bool I64(int64_t* v) {
    uint64_t u;
    if (!U64(&u)) return false;
    *v = static_cast<int64_t>(u);
    return true;
  }
  bool empty() const { return in_.empty(); }

 private:
  std::string_view in_;
};

bool ReadRecord(Reader& r, ImageRecord* rec) {
  uint64_t has_name, hidden, properties;
  std::string name;
  if (!r.Str(&rec->id) || !r.U64(&has_name) || !r.Str(&name) || has_name > 1 ||
      !r.Str(&rec->status) || !r.Str(&rec->disk_format) || !r.Str(&rec->container_format) ||
      !r.U64(&hidden) || hidden > 1 || !r.Opt(&rec->size) || !r.Opt(&rec->virtual_size) ||
      !r.I64(&rec->created_at) || !r.I64(&rec->updated_at) || !r.Opt(&rec->allocated_bytes) ||
      !r.Str(&rec->data_version) || !r.Str(&rec->record_json) || !r.U64(&properties)) {
    return false;
  }
  if (has_name) rec->name = std::move(name);
  rec->hidden = hidden != 0;
  for (uint64_t i = 0; i < properties; ++i) {
    std::string k, v;
    if (!r.Str(&k) || !r.Str(&v)) return false;
    rec->properties.emplace(std::move(k), std::move(v));
  }
  return true;
}

}  // namespace

std::string EncodeCatalog(const CatalogSnapshot& snapshot, int64_t taken_at) {
  Writer w;
  w.U64(static_cast<uint64_t>(taken_at));
  w.U64(snapshot.images.size());
  for (const auto& rec : snapshot.images) {
    w.Str(rec->id);
    w.U64(rec->name.has_value());
    w.Str(rec->name.value_or(""));
    w.Str(rec->status);
    w.Str(rec->disk_format);
    w.Str(rec->container_format);
    w.U64(rec->hidden);
    w.Opt(rec->size);
    w.Opt(rec->virtual_size);
    w.U64(static_cast<uint64_t>(rec->created_at));
    w.U64(static_cast<uint64_t>(rec->updated_at));
    w.Opt(rec->allocated_bytes);
    w.Str(rec->data_version);
    w.Str(rec->record_json);
    w.U64(rec->properties.size());
    for (const auto& [k, v] : rec->properties) {
      w.Str(k);
      w.Str(v);
    }
  }
  const std::string& payload = w.out();
  std::string out(kMagic);
  Writer header;
  header.U64(kVersion);  // the low 4 bytes are the version; the high 4 are zero
  out.append(header.out(), 0, 4);
  Writer sum;
  sum.U64(XXH64(payload.data(), payload.size(), 0));
  out += sum.out();
  out += payload;
  return out;
}

Result<StoredCatalog> DecodeCatalog(std::string_view bytes) {
  if (bytes.size() < kHeader || bytes.substr(0, kMagic.size()) != kMagic) {
    return Status::Corruption("stored catalog: not a catalog record");
  }
  uint32_t version = 0;
  std::memcpy(&version, bytes.data() + kMagic.size(), 4);  // little endian, as written
  if (version != kVersion) {
    return Status::Corruption("stored catalog: format version " + std::to_string(version) +
                              ", expected " + std::to_string(kVersion));
  }
  Reader sum_reader(bytes.substr(kMagic.size() + 4, 8));
  uint64_t sum = 0;
  sum_reader.U64(&sum);
  std::string_view payload = bytes.substr(kHeader);
  if (XXH64(payload.data(), payload.size(), 0) != sum) {
    return Status::Corruption("stored catalog: checksum mismatch");
  }
  Reader r(payload);
  StoredCatalog out;
  uint64_t count;
  if (!r.I64(&out.taken_at) || !r.U64(&count)) {
    return Status::Corruption("stored catalog: truncated");
  }
  auto snap = std::make_shared<CatalogSnapshot>();
  for (uint64_t i = 0; i < count; ++i) {
    auto rec = std::make_shared<ImageRecord>();
    if (!ReadRecord(r, rec.get())) return Status::Corruption("stored catalog: truncated record");
    if (!snap->images.empty() && !(snap->images.back()->id < rec->id)) {
      return Status::Corruption("stored catalog: records out of order");
    }
    snap->images.push_back(std::move(rec));
  }
  if (!r.empty()) return Status::Corruption("stored catalog: trailing bytes");
  out.snapshot = std::move(snap);
  return out;
}

}  // namespace glancefs::cache
