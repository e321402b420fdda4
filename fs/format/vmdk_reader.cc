#include "fs/format/vmdk_reader.h"

#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace glancefs::format {
namespace {

// The hosted sparse extent header (VMware "Virtual Disk Format" 5.0, SparseExtentHeader;
// qemu's VMDK4Header after the magic), little-endian, in the first sector.
constexpr uint64_t kSector = 512;
constexpr uint64_t kHdrVersion = 4, kHdrFlags = 8, kHdrCapacity = 12, kHdrGrain = 20,
                   kHdrDescOffset = 28, kHdrDescSize = 36, kHdrGtes = 44, kHdrGdOffset = 56,
                   kHdrGrainOffset = 64, kHdrCheckBytes = 73, kHdrCompress = 77;
constexpr uint32_t kFlagNlDetect = 1 << 0;
constexpr uint32_t kFlagZeroGrain = 1 << 2;
constexpr uint32_t kFlagMarkers = 1 << 17;
constexpr uint16_t kCompressDeflate = 1;
constexpr uint64_t kGdAtEnd = ~uint64_t{0};
constexpr uint32_t kMarkerEos = 0, kMarkerFooter = 3;
constexpr uint64_t kGrainMarkerBytes = 12;  // lba (8) + size (4), then the zlib stream
constexpr uint64_t kGtEntries = 512;
constexpr uint64_t kGtBytes = kGtEntries * 4;
constexpr uint32_t kZeroedGte = 1;
constexpr uint64_t kMaxGrainSectors = 4096;              // 2 MiB
constexpr uint64_t kMaxCapacitySectors = 1ULL << 54;     // 8 EiB: capacity * 512 cannot wrap
constexpr uint64_t kMaxDescriptorSectors = 2048;         // 1 MiB, Glance's and qemu's bound
constexpr uint64_t kQemuDescriptorBytes = 20 * kSector;  // what qemu searches for a parent
constexpr uint64_t kProbeBytes = 2048;

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

char Lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = Lower(c);
  return out;
}
std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}
std::string_view Unquote(std::string_view s) {
  s = Trim(s);
  if (s.size() >= 2 && s.front() == '"' && s.back() == '"') s = s.substr(1, s.size() - 2);
  return s;
}
// A descriptor string, made safe and short for a log line or an xattr.
std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out + (s.size() > 80 ? "...\"" : "\"");
}
// A ddb value kept as a fact only when it is a plain word.
std::string PlainWord(std::string_view s) {
  if (s.empty() || s.size() > 64) return "";
  for (char c : s) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return "";
    }
  }
  return std::string(s);
}

// The descriptor, line by line, as Glance's inspector classifies it (case-insensitively).
struct ExtentLine {
  std::string line, access, sectors, type, name, trailing;
  bool quoted = false;
};
struct Descriptor {
  std::vector<std::pair<std::string, std::string>> fields;  // lowercased key, unquoted value
  std::vector<std::pair<std::string, std::string>> ddb;     // likewise
  std::vector<ExtentLine> extents;
  std::string bad_line;  // the first line that is none of the above
  bool binary = false;   // a byte that is not printable ASCII or whitespace
};

ExtentLine ParseExtent(std::string_view line) {
  ExtentLine e;
  e.line = line;
  std::string_view rest = line;
  for (std::string* word : {&e.access, &e.sectors, &e.type}) {
    rest = Trim(rest);
    size_t end = rest.find_first_of(" \t");
    *word = rest.substr(0, end);
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  }
  rest = Trim(rest);
  size_t close = rest.size() > 1 && rest[0] == '"' ? rest.find('"', 1) : std::string_view::npos;
  if (close != std::string_view::npos) {
    e.quoted = true;
    e.name = rest.substr(1, close - 1);
    e.trailing = Trim(rest.substr(close + 1));
  } else {
    e.trailing = rest;
  }
  return e;
}

Descriptor ParseDescriptor(std::string_view text) {
  Descriptor d;
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u >= 0x7f || (u < 0x20 && c != '\n' && c != '\r' && c != '\t')) d.binary = true;
  }
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = Trim(text.substr(0, nl));
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find('=');
    std::string first_word = ToLower(line.substr(0, line.find_first_of(" \t")));
    if (ToLower(line.substr(0, 3)) == "ddb") {
      if (eq != std::string_view::npos) {
        d.ddb.emplace_back(ToLower(Trim(line.substr(0, eq))), Unquote(line.substr(eq + 1)));
      }
    } else if (eq != std::string_view::npos &&
               line.substr(0, eq).find_first_of(" \t") == std::string_view::npos) {
      d.fields.emplace_back(ToLower(line.substr(0, eq)), Unquote(line.substr(eq + 1)));
    } else if (first_word == "rw" || first_word == "rdonly" || first_word == "noaccess") {
      d.extents.push_back(ParseExtent(line));
    } else if (d.bad_line.empty()) {
      d.bad_line = line;
    }
  }
  return d;
}

const std::string* Field(const std::vector<std::pair<std::string, std::string>>& kv,
                         std::string_view key) {
  for (const auto& [k, v] : kv) {
    if (k == key) return &v;
  }
  return nullptr;
}

size_t CountOf(std::string_view lowered_text, std::string_view needle) {
  size_t n = 0;
  for (size_t p = lowered_text.find(needle); p != std::string_view::npos;
       p = lowered_text.find(needle, p + 1)) {
    ++n;
  }
  return n;
}

// A file that starts with descriptor text: its data is in the files its extents name.
Status RefuseDescriptorFile(ByteSource& file) {
  std::string text(std::min<uint64_t>(file.size(), (1 << 20) - 1), '\0');
  GLANCEFS_RETURN_IF_ERROR(file.ReadAt(0, text.size(), text.data()));
  text.resize(std::min(text.size(), text.find('\0')));
  Descriptor d = ParseDescriptor(text);
  const std::string* type = Field(d.fields, "createtype");
  std::string names;
  for (size_t i = 0; i < d.extents.size() && i < 4; ++i) {
    names += (i ? ", " : "") + Quote(d.extents[i].name);
  }
  if (d.extents.size() > 4) names += ", ...";
  return Status::Refused("vmdk: a descriptor file (createType " +
                         (type ? Quote(*type) : std::string("missing")) + ") whose data is in " +
                         (names.empty() ? "no named file" : "other files: " + names) +
                         "; only monolithicSparse and streamOptimized images with an embedded "
                         "descriptor are decoded");
}

// Glance's VMDKInspector rules, then glancefs's: one SPARSE extent (this file), no parent.
// `qemu_view` is the text qemu searches for parentFileNameHint (its 20 sectors, to a NUL).
Status CheckDescriptorText(std::string_view text, std::string_view qemu_view,
                           uint64_t capacity_sectors, VmdkInfo* info) {
  std::string lowered = ToLower(qemu_view);
  size_t hint = lowered.find("parentfilenamehint");
  if (hint != std::string::npos) {
    std::string_view rest = qemu_view.substr(hint);
    size_t eq = rest.find('='), nl = rest.find('\n');
    std::string name = eq < nl ? std::string(Unquote(rest.substr(eq + 1, nl - eq - 1))) : "";
    return Status::Refused("vmdk names a parent file (parentFileNameHint " + Quote(name) +
                           "); images with a parent are refused");
  }
  Descriptor d = ParseDescriptor(text);
  if (d.binary) return Status::Refused("vmdk: the embedded descriptor is not ASCII text");
  if (!d.bad_line.empty()) {
    return Status::Refused("vmdk: descriptor line " + Quote(d.bad_line) +
                           " is neither a comment, a ddb entry, a field nor an extent");
  }
  const std::string* type = Field(d.fields, "createtype");
  if (!type) return Status::Refused("vmdk: the embedded descriptor has no createType");
  if (CountOf(ToLower(text), "createtype") != 1) {
    return Status::Refused("vmdk: the descriptor names createType more than once");
  }
  std::string t = ToLower(*type);
  if (t != "monolithicsparse" && t != "streamoptimized") {
    return Status::Refused("vmdk: createType " + Quote(*type) +
                           " is refused (only monolithicSparse and streamOptimized)");
  }
  info->subformat = t == "streamoptimized" ? "streamOptimized" : "monolithicSparse";
  for (const auto& [key, value] : d.fields) {
    if (key == "parentcid" && ToLower(value) != "ffffffff") {
      return Status::Refused("vmdk names a parent disk (parentCID " + Quote(value) +
                             "); images with a parent are refused");
    }
  }
  if (d.extents.size() != 1) {
    return Status::Refused("vmdk: the descriptor lists " + std::to_string(d.extents.size()) +
                           " extents; exactly one, the image itself, is supported");
  }
  const ExtentLine& e = d.extents[0];
  std::string access = ToLower(e.access);
  if (access != "rw" && access != "rdonly") {
    return Status::Refused("vmdk: extent access " + Quote(e.access) + " is refused");
  }
  if (ToLower(e.type) != "sparse" || !e.quoted || !e.trailing.empty()) {
    return Status::Refused("vmdk: extent " + Quote(e.line) +
                           " is not a sparse extent of this file (FLAT, ZERO, VMFS and "
                           "SESPARSE extents name other files and are refused)");
  }
  if (e.name.empty() || e.name.find('/') != std::string::npos) {
    return Status::Refused("vmdk: extent file name " + Quote(e.name) +
                           " is empty or a path; extent paths are refused");
  }
  uint64_t sectors = 0;
  bool digits = !e.sectors.empty() && e.sectors.size() <= 18;  // no overflow
  for (char c : e.sectors) {
    digits = digits && c >= '0' && c <= '9';
    sectors = sectors * 10 + static_cast<uint64_t>(c - '0');
  }
  if (!digits) return Status::Refused("vmdk: extent size " + Quote(e.sectors) + " is not a number");
  if (sectors != capacity_sectors) {
    return Status::Corruption("vmdk: the extent line says " + std::to_string(sectors) +
                              " sectors, the header's capacity is " +
                              std::to_string(capacity_sectors));
  }
  if (const std::string* v = Field(d.ddb, "ddb.adaptertype")) info->adapter_type = PlainWord(*v);
  if (const std::string* v = Field(d.ddb, "ddb.virtualhwversion")) {
    info->hardware_version = PlainWord(*v);
  }
  if (const std::string* v = Field(d.fields, "cid")) info->cid = PlainWord(*v);
  return Status::Ok();
}

// Per-thread buffers for compressed grains: no allocation once a thread has read one. The
// inflated grain stays valid across reads: (reader id, marker offset) names it for good.
struct GrainBuffers {
  std::vector<char> in;
  std::vector<char> out;
  uint64_t owner = 0;  // VmdkReader id; 0: nothing
  uint64_t host_offset = 0;
};
thread_local GrainBuffers t_buffers;
std::atomic<uint64_t> g_next_id{1};

// A zlib stream (RFC 1950, as qemu's compress() and VMware write it) into `out`; returns the
// number of bytes it inflated to, or Corruption when it does not end within `out_len`.
Result<uint64_t> InflateGrain(const char* in, size_t in_len, char* out, size_t out_len) {
  z_stream z;
  std::memset(&z, 0, sizeof z);
  if (inflateInit(&z) != Z_OK) return Status::IOError("zlib: cannot initialize");
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in));
  z.avail_in = static_cast<uInt>(in_len);
  z.next_out = reinterpret_cast<Bytef*>(out);
  z.avail_out = static_cast<uInt>(out_len);
  int ret = inflate(&z, Z_FINISH);
  uint64_t produced = out_len - z.avail_out;
  inflateEnd(&z);
  if (ret != Z_STREAM_END) return Status::Corruption("deflate stream does not end in its grain");
  return produced;
}

}  // namespace

VmdkReader::VmdkReader(std::shared_ptr<ByteSource> file, const VmdkLimits& limits)
    : file_(std::move(file)), limits_(limits), id_(g_next_id.fetch_add(1)) {}

Result<std::shared_ptr<VmdkReader>> VmdkReader::Open(std::shared_ptr<ByteSource> file,
                                                     const VmdkLimits& limits) {
  std::shared_ptr<VmdkReader> r(new VmdkReader(std::move(file), limits));
  uint64_t file_size = r->file_->size();
  if (file_size < 4) return Status::Refused("vmdk: file too short for a header");
  unsigned char h[kSector] = {};
  GLANCEFS_RETURN_IF_ERROR(
      r->file_->ReadAt(0, std::min(kSector, file_size), reinterpret_cast<char*>(h)));
  if (std::memcmp(h, "COWD", 4) == 0) {
    return Status::Refused("vmdk: COWD (VMDK3, vmfsSparse) extents are not supported");
  }
  if (std::memcmp(h, "KDMV", 4) != 0) return RefuseDescriptorFile(*r->file_);
  if (file_size < kSector) return Status::Corruption("vmdk: file too short for its header");
  GLANCEFS_RETURN_IF_ERROR(r->ParseHeader(h));
  if (LoadLE64(reinterpret_cast<const char*>(h) + kHdrGdOffset) == kGdAtEnd) {
    unsigned char footer_header[kSector];
    GLANCEFS_RETURN_IF_ERROR(r->ReadFooter(h, footer_header));
    GLANCEFS_RETURN_IF_ERROR(r->ParseHeader(footer_header));
    r->info_.gd_at_end = true;
  }
  GLANCEFS_RETURN_IF_ERROR(r->CheckDescriptor());
  GLANCEFS_RETURN_IF_ERROR(r->LoadGrainDirectory());
  return r;
}

Status VmdkReader::CheckHostRange(uint64_t off, uint64_t len, const char* what) const {
  uint64_t file_size = file_->size();
  if (off > file_size || len > file_size - off) {
    return Status::Corruption(std::string("vmdk ") + what + " at " + Hex(off) + " (+" +
                              std::to_string(len) + ") is outside the file (" +
                              std::to_string(file_size) + " bytes)");
  }
  return Status::Ok();
}

Status VmdkReader::ParseHeader(const unsigned char* h) {
  const char* p = reinterpret_cast<const char*>(h);
  info_.version = LoadLE32(p + kHdrVersion);
  if (info_.version < 1 || info_.version > 3) {
    return Status::Refused("vmdk: version " + std::to_string(info_.version) +
                           " is not supported (only 1, 2 and 3)");
  }
  info_.flags = LoadLE32(p + kHdrFlags);
  capacity_sectors_ = LoadLE64(p + kHdrCapacity);
  if (capacity_sectors_ == 0) {
    return Status::Refused("vmdk: capacity 0 (qemu would follow the descriptor's extents)");
  }
  if (capacity_sectors_ > kMaxCapacitySectors) {
    return Status::Refused("vmdk: capacity of " + std::to_string(capacity_sectors_) +
                           " sectors is too large");
  }
  grain_sectors_ = LoadLE64(p + kHdrGrain);
  if (grain_sectors_ == 0 || grain_sectors_ > kMaxGrainSectors ||
      (grain_sectors_ & (grain_sectors_ - 1)) != 0) {
    return Status::Refused("vmdk: grain of " + std::to_string(grain_sectors_) +
                           " sectors is not a power of two from 1 sector to 2 MiB");
  }
  uint32_t gtes = LoadLE32(p + kHdrGtes);
  if (gtes != kGtEntries) {
    return Status::Refused("vmdk: numGTEsPerGT " + std::to_string(gtes) +
                           " is not supported (only 512)");
  }
  uint64_t desc_offset = LoadLE64(p + kHdrDescOffset);
  desc_sectors_ = LoadLE64(p + kHdrDescSize);
  if (desc_offset != 1 || desc_sectors_ == 0 || desc_sectors_ > kMaxDescriptorSectors) {
    return Status::Refused("vmdk: embedded descriptor at sector " + std::to_string(desc_offset) +
                           " (" + std::to_string(desc_sectors_) +
                           " sectors); it must start at sector 1 and be at most 1 MiB");
  }
  uint16_t compress = LoadLE16(p + kHdrCompress);
  if (compress > kCompressDeflate) {
    return Status::Refused("vmdk: compression algorithm " + std::to_string(compress) +
                           " is not supported (only deflate)");
  }
  if ((info_.flags & kFlagNlDetect) && std::memcmp(p + kHdrCheckBytes, "\n \r\n", 4) != 0) {
    return Status::Corruption("vmdk: newline check bytes are mangled (a text-mode transfer?)");
  }
  info_.compressed = compress == kCompressDeflate;
  info_.markers = info_.flags & kFlagMarkers;
  info_.zeroed_grain = info_.flags & kFlagZeroGrain;
  info_.grain_bytes = grain_sectors_ * kSector;
  info_.virtual_size = capacity_sectors_ * kSector;
  gd_sector_ = LoadLE64(p + kHdrGdOffset);
  grain_offset_sectors_ = LoadLE64(p + kHdrGrainOffset);
  return Status::Ok();
}

// The footer (stream-optimized): a footer marker sector, a copy of the header, an
// end-of-stream marker sector, at the very end of the file. qemu's checks, and Glance's.
Status VmdkReader::ReadFooter(const unsigned char* h, unsigned char* footer_header) {
  uint64_t file_size = file_->size();
  if (file_size < 4 * kSector) return Status::Corruption("vmdk: file too short for a footer");
  uint64_t at = file_size - 3 * kSector;
  std::vector<char> f(3 * kSector);
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(at, f.size(), f.data()));
  auto marker_ok = [&](const char* m, uint32_t type, bool zero_val) {
    if ((zero_val && LoadLE64(m) != 0) || LoadLE32(m + 8) != 0 || LoadLE32(m + 12) != type) {
      return false;
    }
    return std::all_of(m + 16, m + kSector, [](char c) { return c == 0; });
  };
  const char* fh = f.data() + kSector;
  const char* hp = reinterpret_cast<const char*>(h);
  std::string why;
  if (!marker_ok(f.data(), kMarkerFooter, false)) why = "no footer marker";
  if (why.empty() && !marker_ok(fh + kSector, kMarkerEos, true)) why = "no end-of-stream marker";
  if (why.empty() && std::memcmp(fh, "KDMV", 4) != 0) why = "bad magic";
  if (why.empty() && LoadLE32(fh + kHdrVersion) != LoadLE32(hp + kHdrVersion)) {
    why = "a version other than the header's";
  }
  if (why.empty() && (LoadLE64(fh + kHdrDescOffset) != LoadLE64(hp + kHdrDescOffset) ||
                      LoadLE64(fh + kHdrDescSize) != LoadLE64(hp + kHdrDescSize))) {
    why = "a descriptor other than the header's";
  }
  if (why.empty() && LoadLE64(fh + kHdrGdOffset) == kGdAtEnd) why = "another footer";
  if (!why.empty()) {
    return Status::Corruption(
        "vmdk: the header says the footer holds the grain directory, "
        "but the footer at " +
        Hex(at) + " has " + why);
  }
  std::memcpy(footer_header, fh, kSector);
  return Status::Ok();
}

Status VmdkReader::CheckDescriptor() {
  uint64_t file_size = file_->size();
  uint64_t desc_bytes = desc_sectors_ * kSector;
  GLANCEFS_RETURN_IF_ERROR(CheckHostRange(kSector, desc_bytes, "descriptor"));
  uint64_t view_bytes = std::min(std::max(desc_bytes, kQemuDescriptorBytes), file_size - kSector);
  std::string buf(view_bytes, '\0');
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(kSector, buf.size(), buf.data()));
  std::string_view qemu_view(buf.data(), std::min(buf.size(), buf.find('\0')));
  std::string_view text = qemu_view.substr(0, std::min<uint64_t>(qemu_view.size(), desc_bytes));
  return CheckDescriptorText(text, qemu_view, capacity_sectors_, &info_);
}

Status VmdkReader::LoadGrainDirectory() {
  uint64_t file_size = file_->size();
  if (grain_offset_sectors_ > file_size / kSector) {
    return Status::Corruption("vmdk: grainOffset sector " + std::to_string(grain_offset_sectors_) +
                              " is past the end of the file: truncated?");
  }
  uint64_t span = grain_sectors_ * kGtEntries;  // sectors one grain table maps
  uint64_t entries = (capacity_sectors_ + span - 1) / span;
  if (entries * 4 > limits_.max_gd_bytes) {
    return Status::Refused("vmdk: grain directory of " + std::to_string(entries * 4) +
                           " bytes is larger than the limit");
  }
  if (gd_sector_ == 0) return Status::Corruption("vmdk: the grain directory is over the header");
  if (gd_sector_ > file_size / kSector) {
    return Status::Corruption("vmdk: grain directory at sector " + std::to_string(gd_sector_) +
                              " is outside the file (" + std::to_string(file_size) + " bytes)");
  }
  GLANCEFS_RETURN_IF_ERROR(CheckHostRange(gd_sector_ * kSector, entries * 4, "grain directory"));
  std::vector<char> raw(entries * 4);
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(gd_sector_ * kSector, raw.size(), raw.data()));
  gd_.resize(entries);
  for (uint64_t i = 0; i < entries; ++i) gd_[i] = LoadLE32(&raw[i * 4]);
  return Status::Ok();
}

Result<std::shared_ptr<const VmdkReader::GrainTable>> VmdkReader::GetGrainTable(
    uint64_t gt_sector) {
  {
    std::lock_guard<std::mutex> lock(gt_mu_);
    auto it = gt_cache_.find(gt_sector);
    if (it != gt_cache_.end()) {
      gt_lru_.splice(gt_lru_.begin(), gt_lru_, it->second.lru);
      return it->second.table;
    }
  }
  GLANCEFS_RETURN_IF_ERROR(CheckHostRange(gt_sector * kSector, kGtBytes, "grain table"));
  // Loaded outside the lock: two threads may load one table at once, which is harmless.
  char raw[kGtBytes];
  GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(gt_sector * kSector, kGtBytes, raw));
  auto table = std::make_shared<GrainTable>(kGtEntries);
  for (size_t i = 0; i < kGtEntries; ++i) (*table)[i] = LoadLE32(raw + i * 4);
  std::lock_guard<std::mutex> lock(gt_mu_);
  auto it = gt_cache_.find(gt_sector);
  if (it != gt_cache_.end()) return it->second.table;
  gt_lru_.push_front(gt_sector);
  gt_cache_.emplace(gt_sector, CachedGt{table, gt_lru_.begin()});
  uint64_t max_tables = std::max<uint64_t>(1, limits_.gt_cache_bytes / kGtBytes);
  while (gt_cache_.size() > max_tables) {
    gt_cache_.erase(gt_lru_.back());
    gt_lru_.pop_back();
  }
  return std::shared_ptr<const GrainTable>(table);
}

Result<VmdkReader::Mapping> VmdkReader::Map(uint64_t off, uint64_t max_len) {
  const uint64_t grain = info_.grain_bytes;
  const uint64_t span = grain * kGtEntries;
  uint64_t limit = std::min({max_len, span - off % span, info_.virtual_size - off});
  uint64_t gt_sector = gd_[off / span];
  if (gt_sector == 0) return Mapping{Kind::kUnallocated, 0, limit};
  GLANCEFS_ASSIGN_OR_RETURN(auto gt, GetGrainTable(gt_sector));
  // Classifies the grain holding guest offset `g`; *host is where byte `g` (or its marker) is.
  auto classify = [&](uint64_t g, uint64_t* host) {
    uint32_t entry = (*gt)[(g / grain) % kGtEntries];
    *host = 0;
    if (entry == 0) return Kind::kUnallocated;
    if (entry == kZeroedGte && info_.zeroed_grain) return Kind::kZero;
    *host = uint64_t{entry} * kSector;
    if (info_.compressed) return Kind::kCompressed;
    *host += g % grain;
    return Kind::kData;
  };
  uint64_t host = 0;
  Kind kind = classify(off, &host);
  uint64_t len = std::min(limit, grain - off % grain);
  if (kind == Kind::kCompressed) return Mapping{kind, host, len};
  uint64_t expected_host = host + len;
  while (len < limit) {
    uint64_t next_host = 0;
    Kind next = classify(off + len, &next_host);
    if (next != kind || (kind == Kind::kData && next_host != expected_host)) break;
    uint64_t step = std::min(grain, limit - len);
    len += step;
    expected_host += step;
  }
  return Mapping{kind, host, len};
}

Status VmdkReader::ReadCompressed(const Mapping& m, uint64_t off, char* dst, uint64_t n) {
  GrainBuffers& b = t_buffers;
  const uint64_t grain = info_.grain_bytes;
  const uint64_t grain_start = off - off % grain;
  if (b.owner != id_ || b.host_offset != m.host_offset) {
    b.owner = 0;
    uint64_t data_off = m.host_offset, data_len = 0;
    if (info_.markers) {
      char marker[kGrainMarkerBytes];
      GLANCEFS_RETURN_IF_ERROR(CheckHostRange(m.host_offset, sizeof marker, "grain marker"));
      GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(m.host_offset, sizeof marker, marker));
      uint64_t lba = LoadLE64(marker);
      data_len = LoadLE32(marker + 8);
      if (lba != grain_start / kSector) {
        return Status::Corruption("vmdk: grain marker at " + Hex(m.host_offset) + " is for lba " +
                                  std::to_string(lba) + ", the grain table says " +
                                  std::to_string(grain_start / kSector));
      }
      if (data_len == 0 || data_len > 2 * grain) {
        return Status::Corruption("vmdk: compressed grain at " + Hex(m.host_offset) + " of " +
                                  std::to_string(data_len) + " bytes");
      }
      data_off += kGrainMarkerBytes;
      GLANCEFS_RETURN_IF_ERROR(CheckHostRange(data_off, data_len, "compressed grain"));
    } else {
      // No marker: the stream starts at the entry and ends within one grain, as qemu reads it.
      GLANCEFS_RETURN_IF_ERROR(CheckHostRange(data_off, 1, "compressed grain"));
      data_len = std::min(grain, file_->size() - data_off);
    }
    if (b.in.size() < data_len) b.in.resize(data_len);
    if (b.out.size() < grain) b.out.resize(grain);
    GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(data_off, data_len, b.in.data()));
    auto produced = InflateGrain(b.in.data(), data_len, b.out.data(), grain);
    if (!produced.ok()) {
      return produced.status().WithContext("vmdk: compressed grain at " + Hex(m.host_offset));
    }
    // The last grain of a disk whose size is not a multiple of grains may be shorter.
    if (*produced < std::min(grain, info_.virtual_size - grain_start)) {
      return Status::Corruption("vmdk: compressed grain at " + Hex(m.host_offset) +
                                " inflates to " + std::to_string(*produced) + " bytes only");
    }
    std::memset(b.out.data() + *produced, 0, grain - *produced);
    b.owner = id_;
    b.host_offset = m.host_offset;
  }
  std::memcpy(dst, b.out.data() + (off - grain_start), n);
  return Status::Ok();
}

Status VmdkReader::ReadAt(uint64_t off, size_t n, char* dst) {
  if (off > info_.virtual_size || n > info_.virtual_size - off) {
    return Status::OutOfRange("vmdk: read past the virtual size");
  }
  while (n > 0) {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(off, n));
    switch (m.kind) {
      case Kind::kUnallocated:
      case Kind::kZero:
        std::memset(dst, 0, m.length);
        break;
      case Kind::kData:
        GLANCEFS_RETURN_IF_ERROR(CheckHostRange(m.host_offset, m.length, "grain"));
        GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(m.host_offset, m.length, dst));
        break;
      case Kind::kCompressed:
        GLANCEFS_RETURN_IF_ERROR(ReadCompressed(m, off, dst, m.length));
        break;
    }
    off += m.length;
    dst += m.length;
    n -= m.length;
  }
  return Status::Ok();
}

Result<Extent> VmdkReader::MapExtent(uint64_t off) {
  if (off >= info_.virtual_size) return Status::OutOfRange("vmdk: extent past the end");
  auto kind_of = [](Kind k) {
    switch (k) {
      case Kind::kUnallocated:
        return Extent::Kind::kHole;
      case Kind::kZero:
        return Extent::Kind::kZero;
      case Kind::kData:
      case Kind::kCompressed:
        return Extent::Kind::kData;
    }
    return Extent::Kind::kData;
  };
  GLANCEFS_ASSIGN_OR_RETURN(Mapping first, Map(off, info_.virtual_size - off));
  Extent extent{off, first.length, kind_of(first.kind)};
  // Merge following runs of the same kind; bounded so one call stays cheap on huge images.
  for (int i = 0; i < 4096 && extent.offset + extent.length < info_.virtual_size; ++i) {
    uint64_t next_off = extent.offset + extent.length;
    GLANCEFS_ASSIGN_OR_RETURN(Mapping next, Map(next_off, info_.virtual_size - next_off));
    if (kind_of(next.kind) != extent.kind) break;
    extent.length += next.length;
  }
  return extent;
}

namespace {

// KDMV and COWD sparse extents; descriptor text as Glance ("# Disk DescriptorFile") and qemu
// (blank and comment lines, then "version=1|2|3") recognize it.
Result<bool> ProbeVmdk(ByteSource& src) {
  std::string buf(std::min<uint64_t>(src.size(), kProbeBytes), '\0');
  GLANCEFS_RETURN_IF_ERROR(src.ReadAt(0, buf.size(), buf.data()));
  std::string_view p(buf);
  if (p.starts_with("KDMV") || p.starts_with("COWD") || p.starts_with("# Disk DescriptorFile")) {
    return true;
  }
  while (!p.empty()) {
    size_t nl = p.find('\n');
    std::string_view line = p.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (nl != std::string_view::npos &&
        (line == "version=1" || line == "version=2" || line == "version=3")) {
      return true;
    }
    bool blank = line.find_first_not_of(' ') == std::string_view::npos;
    if (nl == std::string_view::npos || (!blank && line[0] != '#')) return false;
    p.remove_prefix(nl + 1);
  }
  return false;
}

Result<Decoded> OpenVmdk(std::shared_ptr<ByteSource> file) {
  GLANCEFS_ASSIGN_OR_RETURN(auto reader, VmdkReader::Open(std::move(file)));
  const VmdkInfo& v = reader->info();
  Decoded d;
  d.info.format = "vmdk";
  d.info.virtual_size = v.virtual_size;
  d.info.facts = {{"subformat", v.subformat},
                  {"version", std::to_string(v.version)},
                  {"grain_size", std::to_string(v.grain_bytes)},
                  {"compression", v.compressed ? "deflate" : "none"}};
  if (!v.adapter_type.empty()) d.info.facts.emplace_back("adapter_type", v.adapter_type);
  if (!v.hardware_version.empty()) {
    d.info.facts.emplace_back("hardware_version", v.hardware_version);
  }
  d.info.facts.emplace_back("zeroed_grain", v.zeroed_grain ? "true" : "false");
  d.info.facts.emplace_back("footer", v.gd_at_end ? "true" : "false");
  if (!v.cid.empty()) d.info.facts.emplace_back("cid", v.cid);
  d.raw = std::move(reader);
  return d;
}

}  // namespace

const FormatSpec kVmdkFormat{"vmdk", ProbeVmdk, OpenVmdk};

}  // namespace glancefs::format
