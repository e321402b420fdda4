#include "fs/format/vhdx_reader.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>

namespace glancefs::format {
namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kHeaderSectionBytes = kMiB;
constexpr uint64_t kHeader1Offset = 64 * kKiB;
constexpr uint64_t kHeader2Offset = 128 * kKiB;
constexpr uint64_t kRegionTable1Offset = 192 * kKiB;
constexpr uint64_t kRegionTable2Offset = 256 * kKiB;
constexpr uint64_t kHeaderBytes = 4 * kKiB;        // the CRC covers 4 KiB
constexpr uint64_t kHeaderCompareBytes = 80;       // the defined fields (qemu's VHDXHeader)
constexpr uint64_t kRegionTableBytes = 64 * kKiB;  // the CRC covers 64 KiB
constexpr uint64_t kMetadataTableBytes = 64 * kKiB;
constexpr uint32_t kMaxTableEntries = 2047;
constexpr uint64_t kMinBlockSize = kMiB;
constexpr uint64_t kMaxBlockSize = 256 * kMiB;
constexpr uint64_t kMaxVirtualSize = 64ULL << 40;  // 64 TiB
constexpr uint64_t kMaxFileSize = 1ULL << 56;      // what a replayed log may extend a file to

// BAT entries.
constexpr uint64_t kStateMask = 7;
constexpr uint64_t kOffsetMask = 0xFFFFFFFFFFF00000ULL;
enum : uint64_t {
  kNotPresent = 0,
  kUndefined = 1,
  kZero = 2,
  kUnmapped = 3,
  kUnmappedV095 = 5,
  kFullyPresent = 6,
  kPartiallyPresent = 7,
};

// Log.
constexpr uint64_t kLogSector = 4096;
constexpr uint64_t kLogHeaderBytes = 64;
constexpr uint64_t kLogDescBytes = 32;
constexpr uint64_t kLogDataBytes = 4084;  // of a data sector: bytes 8..4091

using Guid = std::array<unsigned char, 16>;

// The on-disk bytes of a GUID written "XXXXXXXX-XXXX-XXXX-XXXX-XXXXXXXXXXXX": the first three
// groups little-endian, the last two as written.
Guid ParseGuid(const char* text) {
  auto hex = [](char c) -> unsigned { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; };
  unsigned char be[16];
  int n = 0;
  for (const char* p = text; *p && n < 16; ++p) {
    if (*p == '-') continue;
    be[n++] = static_cast<unsigned char>(hex(p[0]) << 4 | hex(p[1]));
    ++p;
  }
  Guid g;
  const int order[16] = {3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15};
  for (int i = 0; i < 16; ++i) g[i] = be[order[i]];
  return g;
}

const Guid kBatRegion = ParseGuid("2DC27766-F623-4200-9D64-115E9BFD4A08");
const Guid kMetadataRegion = ParseGuid("8B7CA206-4790-4B9A-B8FE-575F050F886E");
const Guid kFileParameters = ParseGuid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B");
const Guid kVirtualDiskSize = ParseGuid("2FA54224-CD1B-4876-B211-5DBED83BF4B8");
const Guid kPage83Data = ParseGuid("BECA12AB-B2E6-4523-93EF-C309E000C746");
const Guid kLogicalSectorSize = ParseGuid("8141BF1D-A96F-4709-BA47-F233A8FAAB5F");
const Guid kPhysicalSectorSize = ParseGuid("CDA348C7-445D-4471-9CC9-E9885251C556");
const Guid kParentLocator = ParseGuid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C");

bool GuidAt(const char* p, const Guid& g) { return std::memcmp(p, g.data(), 16) == 0; }

std::string GuidText(const char* p) {
  auto u = reinterpret_cast<const unsigned char*>(p);
  char buf[40];
  std::snprintf(buf, sizeof buf, "%08X-%04X-%04X-%02X%02X-%02X%02X%02X%02X%02X%02X", LoadLE32(p),
                LoadLE16(p + 4), LoadLE16(p + 6), u[8], u[9], u[10], u[11], u[12], u[13], u[14],
                u[15]);
  return buf;
}

std::string Hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Slicing-by-8 tables for the reflected Castagnoli polynomial.
struct Crc32cTables {
  uint32_t t[8][256];
  Crc32cTables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78 & (0 - (c & 1)));
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
  }
};

// Checks a header-style CRC: the stored value at `crc_at` equals the CRC of `n` bytes with that
// field read as zeros.
bool CrcOk(const char* p, size_t n, size_t crc_at) {
  static const char kZeros[4] = {};
  uint32_t c = Crc32c(0, p, crc_at);
  c = Crc32c(c, kZeros, 4);
  c = Crc32c(c, p + crc_at + 4, n - crc_at - 4);
  return c == LoadLE32(p + crc_at);
}

// UTF-16LE up to the first NUL, as UTF-8 (unpaired surrogates as U+FFFD).
std::string Utf16LeToUtf8(const char* p, size_t bytes) {
  std::string out;
  for (size_t i = 0; i + 1 < bytes; i += 2) {
    uint32_t c = LoadLE16(p + i);
    if (c == 0) break;
    if (c >= 0xD800 && c < 0xDC00 && i + 3 < bytes && LoadLE16(p + i + 2) >= 0xDC00 &&
        LoadLE16(p + i + 2) < 0xE000) {
      c = 0x10000 + ((c - 0xD800) << 10) + (LoadLE16(p + i + 2) - 0xDC00);
      i += 2;
    } else if (c >= 0xD800 && c < 0xE000) {
      c = 0xFFFD;
    }
    if (c < 0x20 || c == 0x7F) c = '?';
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (c < 0x800) {
      out += static_cast<char>(0xC0 | (c >> 6));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
      out += static_cast<char>(0xE0 | (c >> 12));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (c >> 18));
      out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (c & 0x3F));
    }
  }
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

// ---- The log, replayed in memory ----

// The image file with replayed log writes laid over it: runs of bytes that come from the log
// (4 KiB pages) or are zeros, the file's own bytes elsewhere, zeros past its end. Immutable once
// built; safe for concurrent reads.
class LogOverlay final : public ByteSource {
 public:
  explicit LogOverlay(std::shared_ptr<ByteSource> base)
      : base_(std::move(base)), size_(base_->size()) {}

  uint64_t size() const override { return size_; }
  uint64_t allocated_bytes() const override { return base_->allocated_bytes(); }

  Status ReadAt(uint64_t off, size_t n, char* dst) override {
    if (off > size_ || n > size_ - off) return Status::OutOfRange("vhdx: read past the file");
    auto it = pieces_.upper_bound(off);
    if (it != pieces_.begin()) --it;
    while (n > 0) {
      while (it != pieces_.end() && it->first + it->second.length <= off) ++it;
      uint64_t take;
      if (it != pieces_.end() && it->first <= off) {
        const Piece& p = it->second;
        take = std::min<uint64_t>(n, it->first + p.length - off);
        if (p.data) {
          std::memcpy(dst, p.data->data() + p.data_offset + (off - it->first), take);
        } else {
          std::memset(dst, 0, take);
        }
      } else {
        uint64_t gap_end = it != pieces_.end() ? it->first : size_;
        take = std::min<uint64_t>(n, gap_end - off);
        uint64_t from_base = off < base_->size() ? std::min(take, base_->size() - off) : 0;
        if (from_base > 0) GLANCEFS_RETURN_IF_ERROR(base_->ReadAt(off, from_base, dst));
        std::memset(dst + from_base, 0, take - from_base);
      }
      off += take;
      dst += take;
      n -= take;
    }
    return Status::Ok();
  }

  // Lays `length` bytes at `off`: data->substr(data_offset) or (data == nullptr) zeros.
  void Put(uint64_t off, uint64_t length, std::shared_ptr<const std::string> data,
           uint64_t data_offset) {
    if (length == 0) return;
    const uint64_t end = off + length;
    auto it = pieces_.lower_bound(off);
    if (it != pieces_.begin()) {
      auto prev = std::prev(it);
      uint64_t prev_end = prev->first + prev->second.length;
      if (prev_end > off) {
        if (prev_end > end) {  // the new run sits inside prev: keep prev's tail
          Piece right = prev->second;
          right.data_offset += end - prev->first;
          right.length = prev_end - end;
          pieces_.emplace(end, right);
        }
        prev->second.length = off - prev->first;
      }
    }
    while (it != pieces_.end() && it->first < end) {
      uint64_t it_end = it->first + it->second.length;
      if (it_end > end) {
        Piece right = it->second;
        right.data_offset += end - it->first;
        right.length = it_end - end;
        pieces_.emplace(end, right);
      }
      it = pieces_.erase(it);
    }
    pieces_.emplace(off, Piece{length, std::move(data), data_offset});
    size_ = std::max(size_, end);
  }

  void Extend(uint64_t size) { size_ = std::max(size_, size); }

 private:
  struct Piece {
    uint64_t length;
    std::shared_ptr<const std::string> data;  // nullptr: zeros
    uint64_t data_offset;
  };
  const std::shared_ptr<ByteSource> base_;
  uint64_t size_;
  std::map<uint64_t, Piece> pieces_;  // by file offset; never overlapping
};

struct LogDescriptor {
  bool zero;
  uint64_t file_offset;
  uint64_t zero_length;  // zero
  const char* raw;       // data: the descriptor (leading and trailing bytes)
  uint64_t data_sector;  // data: the sector's index within the entry
};

struct LogEntry {
  uint64_t pos;  // byte offset in the log
  uint64_t length;
  uint64_t tail;
  uint64_t seq;
  uint64_t flushed_file_offset;
  uint64_t last_file_offset;
  std::vector<LogDescriptor> descriptors;
};

class LogParser {
 public:
  LogParser(const std::string& log, const char* log_guid)
      : log_(log), guid_(log_guid), budget_(16 * log.size() + (16 << 20)) {}

  // The 4 KiB sector `k` of an entry at `pos`, wrapping at the end of the log.
  const char* Sector(uint64_t pos, uint64_t k) const {
    return log_.data() + (pos + k * kLogSector) % log_.size();
  }

  // The entry at `pos`, if valid (see the header comment).
  std::optional<LogEntry> Parse(uint64_t pos) {
    const char* h = Sector(pos, 0);
    if (std::memcmp(h, "loge", 4) != 0) return std::nullopt;
    LogEntry e;
    e.pos = pos;
    e.length = LoadLE32(h + 8);
    e.tail = LoadLE32(h + 12);
    e.seq = LoadLE64(h + 16);
    const uint64_t count = LoadLE32(h + 24);
    e.flushed_file_offset = LoadLE64(h + 48);
    e.last_file_offset = LoadLE64(h + 56);
    if (e.length == 0 || e.length % kLogSector != 0 || e.length > log_.size() || e.seq == 0 ||
        std::memcmp(h + 32, guid_, 16) != 0) {
      return std::nullopt;
    }
    const uint64_t sectors = e.length / kLogSector;
    const uint64_t desc_sectors = (count + 2 + 127) / 128;  // the header takes two slots
    if (desc_sectors > sectors) return std::nullopt;
    uint64_t data_sectors = 0;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t at = kLogHeaderBytes + i * kLogDescBytes;
      const char* d = Sector(pos, at / kLogSector) + at % kLogSector;
      if (LoadLE64(d + 24) != e.seq) return std::nullopt;
      LogDescriptor desc{};
      desc.file_offset = LoadLE64(d + 16);
      if (desc.file_offset % kLogSector != 0) return std::nullopt;
      if (std::memcmp(d, "zero", 4) == 0) {
        desc.zero = true;
        desc.zero_length = LoadLE64(d + 8);
        if (desc.zero_length % kLogSector != 0) return std::nullopt;
      } else if (std::memcmp(d, "desc", 4) == 0) {
        desc.raw = d;
        desc.data_sector = desc_sectors + data_sectors++;
        if (desc.data_sector >= sectors) return std::nullopt;
        const char* s = Sector(pos, desc.data_sector);
        uint64_t seq = (uint64_t{LoadLE32(s + 4)} << 32) | LoadLE32(s + kLogSector - 4);
        if (std::memcmp(s, "data", 4) != 0 || seq != e.seq) return std::nullopt;
      } else {
        return std::nullopt;
      }
      e.descriptors.push_back(desc);
    }
    // The CRC-32C of the whole entry, its checksum field as zeros.
    if (budget_ < e.length) {
      exhausted_ = true;
      return std::nullopt;
    }
    budget_ -= e.length;
    static const char kZeros[4] = {};
    uint32_t crc = Crc32c(0, h, 4);
    crc = Crc32c(crc, kZeros, 4);
    crc = Crc32c(crc, h + 8, kLogSector - 8);
    for (uint64_t k = 1; k < sectors; ++k) crc = Crc32c(crc, Sector(pos, k), kLogSector);
    if (crc != LoadLE32(h + 4)) return std::nullopt;
    return e;
  }

  // The data a data descriptor writes: 8 bytes from the descriptor, 4084 from its sector, 4
  // more from the descriptor.
  std::string Page(const LogEntry& e, const LogDescriptor& d) const {
    std::string page(kLogSector, '\0');
    std::memcpy(page.data(), d.raw + 8, 8);
    std::memcpy(page.data() + 8, Sector(e.pos, d.data_sector) + 8, kLogDataBytes);
    std::memcpy(page.data() + 8 + kLogDataBytes, d.raw + 4, 4);
    return page;
  }

  bool exhausted() const { return exhausted_; }

 private:
  const std::string& log_;
  const char* guid_;
  uint64_t budget_;  // bytes of CRC left: bounds the work a hostile log can cause
  bool exhausted_ = false;
};

// Finds the active sequence of the log (see the header comment). Empty when there is none.
Result<std::vector<LogEntry>> FindActiveSequence(LogParser& parser, uint64_t log_bytes) {
  std::vector<std::vector<LogEntry>> runs;
  for (uint64_t pos = 0; pos < log_bytes;) {
    std::optional<LogEntry> first = parser.Parse(pos);
    if (!first) {
      if (parser.exhausted()) break;
      pos += kLogSector;
      continue;
    }
    std::vector<LogEntry> run{*first};
    uint64_t used = first->length;
    while (used < log_bytes) {
      std::optional<LogEntry> next = parser.Parse((pos + used) % log_bytes);
      if (!next || next->seq != run.back().seq + 1 || used + next->length > log_bytes) break;
      used += next->length;
      run.push_back(std::move(*next));
    }
    runs.push_back(std::move(run));
    if (pos + used >= log_bytes) break;  // the run wrapped: everything after pos is seen
    pos += used;
  }
  if (parser.exhausted()) {
    return Status::Corruption("vhdx: log has too many overlapping candidate entries");
  }
  // The highest head whose tail is an entry of its run, at or before it.
  std::vector<LogEntry> best;
  for (const auto& run : runs) {
    for (size_t k = run.size(); k-- > 0;) {
      if (!best.empty() && run[k].seq <= best.back().seq) break;
      size_t j = k + 1;
      for (size_t i = 0; i <= k; ++i) {
        if (run[i].pos == run[k].tail) j = i;
      }
      if (j <= k) {
        best.assign(run.begin() + j, run.begin() + k + 1);
        break;
      }
    }
  }
  return best;
}

// Replays the log over `file`. Returns the entries replayed (0: nothing to replay) and the
// overlay in *out.
Result<uint32_t> ReplayLog(const std::shared_ptr<ByteSource>& file, uint64_t log_offset,
                           uint64_t log_bytes, const char* log_guid, const VhdxLimits& limits,
                           std::shared_ptr<ByteSource>* out) {
  if (log_bytes > limits.max_log_bytes) {
    return Status::Refused("vhdx log of " + std::to_string(log_bytes) +
                           " bytes needs replay; glancefs replays logs of up to " +
                           std::to_string(limits.max_log_bytes) + " bytes");
  }
  if (log_offset > file->size() || file->size() - log_offset < log_bytes) {
    return Status::Corruption("vhdx: log at " + Hex(log_offset) + "+" + std::to_string(log_bytes) +
                              " is outside the file (" + std::to_string(file->size()) + " bytes)");
  }
  std::string log(log_bytes, '\0');
  GLANCEFS_RETURN_IF_ERROR(file->ReadAt(log_offset, log.size(), log.data()));
  LogParser parser(log, log_guid);
  GLANCEFS_ASSIGN_OR_RETURN(std::vector<LogEntry> entries, FindActiveSequence(parser, log_bytes));
  if (entries.empty()) return 0u;

  auto overlay = std::make_shared<LogOverlay>(file);
  for (const LogEntry& e : entries) {
    if (e.flushed_file_offset > overlay->size()) {
      return Status::Corruption("vhdx: log entry " + std::to_string(e.seq) +
                                " has FlushedFileOffset " + Hex(e.flushed_file_offset) +
                                " past the end of the file (" + std::to_string(overlay->size()) +
                                " bytes): truncated");
    }
    for (const LogDescriptor& d : e.descriptors) {
      uint64_t len = d.zero ? d.zero_length : kLogSector;
      if (d.file_offset > kMaxFileSize || len > kMaxFileSize - d.file_offset) {
        return Status::Corruption("vhdx: log entry " + std::to_string(e.seq) + " writes at " +
                                  Hex(d.file_offset) + "+" + std::to_string(len) +
                                  ", past any file");
      }
      if (d.zero) {
        overlay->Put(d.file_offset, len, nullptr, 0);
      } else {
        overlay->Put(d.file_offset, len, std::make_shared<const std::string>(parser.Page(e, d)), 0);
      }
    }
    if (e.last_file_offset > kMaxFileSize) {
      return Status::Corruption("vhdx: log entry " + std::to_string(e.seq) +
                                " has LastFileOffset " + Hex(e.last_file_offset) +
                                ", past any file");
    }
    if (e.last_file_offset > overlay->size()) {
      overlay->Extend((e.last_file_offset + kMiB - 1) / kMiB * kMiB);
    }
  }
  *out = std::move(overlay);
  return static_cast<uint32_t>(entries.size());
}

struct Region {
  const char* what;
  uint64_t offset, length;
};

// Corruption when two of the regions share a byte.
Status CheckOverlaps(const std::vector<Region>& regions) {
  for (size_t i = 0; i < regions.size(); ++i) {
    for (size_t j = i + 1; j < regions.size(); ++j) {
      const Region& a = regions[i];
      const Region& b = regions[j];
      if (a.length == 0 || b.length == 0) continue;
      if (a.offset < b.offset + b.length && b.offset < a.offset + a.length) {
        return Status::Corruption(std::string("vhdx: ") + a.what + " at " + Hex(a.offset) + "+" +
                                  std::to_string(a.length) + " overlaps " + b.what + " at " +
                                  Hex(b.offset) + "+" + std::to_string(b.length));
      }
    }
  }
  return Status::Ok();
}

}  // namespace

uint32_t Crc32c(uint32_t crc, const void* data, size_t n) {
  static const Crc32cTables tables;
  const auto& t = tables.t;
  auto p = static_cast<const unsigned char*>(data);
  uint32_t c = ~crc;
  while (n >= 8) {
    uint32_t lo =
        c ^ (uint32_t{p[0]} | uint32_t{p[1]} << 8 | uint32_t{p[2]} << 16 | uint32_t{p[3]} << 24);
    uint32_t hi =
        uint32_t{p[4]} | uint32_t{p[5]} << 8 | uint32_t{p[6]} << 16 | uint32_t{p[7]} << 24;
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n-- > 0) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFF];
  return ~c;
}

Result<std::shared_ptr<VhdxReader>> VhdxReader::Open(std::shared_ptr<ByteSource> file,
                                                     const VhdxLimits& limits) {
  const uint64_t file_size = file->size();
  if (file_size < kRegionTable1Offset + kRegionTableBytes) {
    return Status::Corruption("vhdx: the file (" + std::to_string(file_size) +
                              " bytes) is too small for its header section");
  }
  std::shared_ptr<VhdxReader> r(new VhdxReader(file));
  VhdxInfo& info = r->info_;

  // File identifier.
  char ident[8 + 512];
  GLANCEFS_RETURN_IF_ERROR(file->ReadAt(0, sizeof ident, ident));
  if (std::memcmp(ident, "vhdxfile", 8) != 0) {
    return Status::Corruption("vhdx: no file identifier (\"vhdxfile\") at offset 0");
  }
  info.creator = Utf16LeToUtf8(ident + 8, 512);

  // Headers: the valid one with the higher sequence number.
  std::string headers[2];
  bool valid[2];
  for (int i = 0; i < 2; ++i) {
    headers[i].resize(kHeaderBytes);
    GLANCEFS_RETURN_IF_ERROR(
        file->ReadAt(i == 0 ? kHeader1Offset : kHeader2Offset, kHeaderBytes, headers[i].data()));
    const char* h = headers[i].data();
    valid[i] = std::memcmp(h, "head", 4) == 0 && CrcOk(h, kHeaderBytes, 4) && LoadLE16(h + 66) == 1;
  }
  int current;
  if (valid[0] && valid[1]) {
    uint64_t s0 = LoadLE64(headers[0].data() + 8), s1 = LoadLE64(headers[1].data() + 8);
    if (s0 == s1 && std::memcmp(headers[0].data(), headers[1].data(), kHeaderCompareBytes) != 0) {
      return Status::Corruption("vhdx: both headers have sequence number " + std::to_string(s0) +
                                " but differ");
    }
    current = s1 > s0 ? 1 : 0;
  } else if (valid[0] || valid[1]) {
    current = valid[0] ? 0 : 1;
  } else {
    return Status::Corruption("vhdx: no valid header (signature, version 1 and CRC-32C)");
  }
  const char* h = headers[current].data();
  const char* log_guid = h + 48;
  const uint16_t log_version = LoadLE16(h + 64);
  const uint64_t log_length = LoadLE32(h + 68);
  const uint64_t log_offset = LoadLE64(h + 72);

  // The log (qemu's checks, then the replay).
  if (log_offset < kMiB || log_offset % kMiB != 0) {
    return Status::Corruption("vhdx: log offset " + Hex(log_offset) +
                              " is not a multiple of 1 MiB past the header section");
  }
  if (log_version != 0) {
    return Status::Corruption("vhdx: log version " + std::to_string(log_version) +
                              " (only 0 exists)");
  }
  static const char kZeroGuid[16] = {};
  if (std::memcmp(log_guid, kZeroGuid, 16) != 0 && log_length != 0) {
    if (log_length % kMiB != 0) {
      return Status::Corruption("vhdx: log length " + std::to_string(log_length) +
                                " is not a multiple of 1 MiB");
    }
    std::shared_ptr<ByteSource> replayed;
    GLANCEFS_ASSIGN_OR_RETURN(info.log_entries_replayed,
                              ReplayLog(file, log_offset, log_length, log_guid, limits, &replayed));
    if (info.log_entries_replayed > 0) {
      info.log_replayed = true;
      r->file_ = std::move(replayed);
    }
  }
  ByteSource& f = *r->file_;
  const uint64_t size = f.size();

  // Region table: the first copy with a valid signature and CRC-32C.
  std::string table(kRegionTableBytes, '\0');
  bool table_ok = false;
  for (uint64_t at : {kRegionTable1Offset, kRegionTable2Offset}) {
    if (at + kRegionTableBytes > size) break;
    GLANCEFS_RETURN_IF_ERROR(f.ReadAt(at, table.size(), table.data()));
    if (std::memcmp(table.data(), "regi", 4) == 0 && CrcOk(table.data(), kRegionTableBytes, 4)) {
      table_ok = true;
      break;
    }
  }
  if (!table_ok) {
    return Status::Corruption("vhdx: no valid region table (signature and CRC-32C)");
  }
  const uint32_t region_count = LoadLE32(table.data() + 8);
  if (region_count > kMaxTableEntries) {
    return Status::Corruption("vhdx: region table has " + std::to_string(region_count) +
                              " entries (at most 2047)");
  }
  std::vector<Region> regions = {{"the header section", 0, kHeaderSectionBytes},
                                 {"the log", log_offset, log_length}};
  std::optional<Region> bat, metadata;
  for (uint32_t i = 0; i < region_count; ++i) {
    const char* e = table.data() + 16 + 32 * i;
    Region region{"a region", LoadLE64(e + 16), LoadLE32(e + 24)};
    if (GuidAt(e, kBatRegion) || GuidAt(e, kMetadataRegion)) {
      bool is_bat = GuidAt(e, kBatRegion);
      std::optional<Region>& slot = is_bat ? bat : metadata;
      region.what = is_bat ? "the BAT" : "the metadata region";
      if (slot) return Status::Corruption(std::string("vhdx: two entries for ") + region.what);
      if (region.offset > size || size - region.offset < region.length) {
        return Status::Corruption(std::string("vhdx: region table points outside the file: ") +
                                  region.what + " at " + Hex(region.offset) + "+" +
                                  std::to_string(region.length) + ", file of " +
                                  std::to_string(size) + " bytes");
      }
      slot = region;
    } else if (LoadLE32(e + 28) & 1) {
      return Status::Refused("vhdx: required region " + GuidText(e) + " is unknown");
    }
    regions.push_back(region);
  }
  if (!bat || !metadata) {
    return Status::Corruption(std::string("vhdx: region table lacks ") +
                              (bat ? "the metadata region" : "the BAT"));
  }
  GLANCEFS_RETURN_IF_ERROR(CheckOverlaps(regions));

  // Metadata.
  if (metadata->length < kMetadataTableBytes) {
    return Status::Corruption("vhdx: metadata region of " + std::to_string(metadata->length) +
                              " bytes is smaller than its table");
  }
  std::string md(kMetadataTableBytes, '\0');
  GLANCEFS_RETURN_IF_ERROR(f.ReadAt(metadata->offset, md.size(), md.data()));
  if (std::memcmp(md.data(), "metadata", 8) != 0) {
    return Status::Corruption("vhdx: no metadata table (\"metadata\") at " + Hex(metadata->offset));
  }
  const uint16_t item_count = LoadLE16(md.data() + 10);
  if (item_count > kMaxTableEntries) {
    return Status::Corruption("vhdx: metadata table has " + std::to_string(item_count) +
                              " entries (at most 2047)");
  }
  struct Item {
    const Guid* id;
    const char* name;
    uint64_t need;  // bytes read
    std::string value;
  };
  Item items[] = {{&kFileParameters, "file parameters", 8, {}},
                  {&kVirtualDiskSize, "virtual disk size", 8, {}},
                  {&kPage83Data, "page 83 data", 16, {}},
                  {&kLogicalSectorSize, "logical sector size", 4, {}},
                  {&kPhysicalSectorSize, "physical sector size", 4, {}},
                  {&kParentLocator, "parent locator", 0, {}}};
  bool found[std::size(items)] = {};
  for (uint16_t i = 0; i < item_count; ++i) {
    const char* e = md.data() + 32 + 32 * i;
    const uint64_t offset = LoadLE32(e + 16), length = LoadLE32(e + 20);
    size_t k = 0;
    while (k < std::size(items) && !GuidAt(e, *items[k].id)) ++k;
    if (k == std::size(items)) {
      if (LoadLE32(e + 24) & 4) {
        return Status::Refused("vhdx: required metadata item " + GuidText(e) + " is unknown");
      }
      continue;
    }
    Item& item = items[k];
    if (found[k]) return Status::Corruption(std::string("vhdx: two ") + item.name + " items");
    found[k] = true;
    if (length < item.need || offset > metadata->length || metadata->length - offset < length) {
      return Status::Corruption(std::string("vhdx: metadata item ") + item.name + " at +" +
                                Hex(offset) + " (" + std::to_string(length) +
                                " bytes) does not fit its region of " +
                                std::to_string(metadata->length) + " bytes");
    }
    item.value.resize(item.need);
    if (item.need > 0) {
      GLANCEFS_RETURN_IF_ERROR(f.ReadAt(metadata->offset + offset, item.need, item.value.data()));
    }
  }
  for (size_t k = 0; k + 1 < std::size(items); ++k) {  // all but the parent locator
    if (!found[k]) {
      return Status::Corruption(std::string("vhdx: metadata lacks the ") + items[k].name);
    }
  }
  const uint64_t block_size = LoadLE32(items[0].value.data());
  const uint32_t params = LoadLE32(items[0].value.data() + 4);
  if (params & 2) return Status::Refused("vhdx differencing disk (has_parent) names a parent");
  info.leave_blocks_allocated = params & 1;
  const uint64_t disk_size = LoadLE64(items[1].value.data());
  const uint64_t sector = LoadLE32(items[3].value.data());
  info.physical_sector_size = LoadLE32(items[4].value.data());
  if (block_size < kMinBlockSize || block_size > kMaxBlockSize ||
      (block_size & (block_size - 1)) != 0) {
    return Status::Corruption("vhdx: block size " + std::to_string(block_size) +
                              " is not a power of two from 1 MiB to 256 MiB");
  }
  if (sector != 512 && sector != 4096) {
    return Status::Corruption("vhdx: logical sector size " + std::to_string(sector) +
                              " is neither 512 nor 4096");
  }
  if (disk_size > kMaxVirtualSize) {
    return Status::Corruption("vhdx: virtual disk size " + std::to_string(disk_size) +
                              " is over the 64 TiB maximum");
  }
  info.block_size = static_cast<uint32_t>(block_size);
  info.logical_sector_size = static_cast<uint32_t>(sector);
  info.virtual_size = disk_size / sector * sector;  // whole sectors, as qemu counts them

  // BAT.
  r->chunk_ratio_ = (uint64_t{1} << 23) * sector / block_size;
  const uint64_t blocks = (info.virtual_size + block_size - 1) / block_size;
  const uint64_t entries = blocks == 0 ? 0 : blocks + (blocks - 1) / r->chunk_ratio_;
  if (entries * 8 > bat->length) {
    return Status::Corruption("vhdx: BAT region of " + std::to_string(bat->length) +
                              " bytes is too small for " + std::to_string(entries) + " entries");
  }
  if (entries * 8 > limits.max_bat_bytes) {
    return Status::Refused("vhdx: BAT of " + std::to_string(entries * 8) +
                           " bytes is over the limit of " + std::to_string(limits.max_bat_bytes));
  }
  std::vector<char> raw(entries * 8);
  if (!raw.empty()) GLANCEFS_RETURN_IF_ERROR(f.ReadAt(bat->offset, raw.size(), raw.data()));
  r->bat_.resize(entries);
  for (uint64_t i = 0; i < entries; ++i) r->bat_[i] = LoadLE64(raw.data() + 8 * i);
  return r;
}

Result<VhdxReader::Mapping> VhdxReader::Map(uint64_t off, uint64_t max_len) const {
  const uint64_t bs = info_.block_size;
  const uint64_t block = off / bs;
  const uint64_t in_block = off % bs;
  const uint64_t len = std::min(max_len, bs - in_block);
  const uint64_t entry = bat_[block + block / chunk_ratio_];
  switch (entry & kStateMask) {
    case kNotPresent:
    case kUndefined:
    case kUnmapped:
    case kUnmappedV095:
      return Mapping{Kind::kHole, 0, len};
    case kZero:
      return Mapping{Kind::kZero, 0, len};
    case kFullyPresent: {
      const uint64_t block_offset = entry & kOffsetMask;
      const uint64_t host = block_offset + in_block;
      const uint64_t file_size = file_->size();
      if (block_offset < kHeaderSectionBytes) {
        return Status::Corruption("vhdx: block " + std::to_string(block) + " (BAT entry " +
                                  Hex(entry) + ") lies in the header section");
      }
      // Compared from block_offset: block_offset + in_block could wrap around 2^64.
      if (block_offset > file_size || file_size - block_offset < in_block + len) {
        return Status::Corruption("vhdx: block " + std::to_string(block) + " (BAT entry " +
                                  Hex(entry) + ") has data at " + Hex(host) + "+" +
                                  std::to_string(len) + ", outside the file (" +
                                  std::to_string(file_size) + " bytes)");
      }
      return Mapping{Kind::kData, host, len};
    }
    case kPartiallyPresent:
      return Status::Corruption("vhdx: block " + std::to_string(block) +
                                " is partially present, which only a differencing disk may be");
    default:
      return Status::Corruption("vhdx: block " + std::to_string(block) + " has invalid state " +
                                std::to_string(entry & kStateMask));
  }
}

Status VhdxReader::ReadAt(uint64_t off, size_t n, char* dst) {
  if (off > info_.virtual_size || n > info_.virtual_size - off) {
    return Status::OutOfRange("vhdx: read past the virtual size");
  }
  while (n > 0) {
    GLANCEFS_ASSIGN_OR_RETURN(Mapping m, Map(off, n));
    if (m.kind == Kind::kData) {
      GLANCEFS_RETURN_IF_ERROR(file_->ReadAt(m.host_offset, m.length, dst));
    } else {
      std::memset(dst, 0, m.length);
    }
    off += m.length;
    dst += m.length;
    n -= m.length;
  }
  return Status::Ok();
}

Status VhdxReader::ReadPinned(uint64_t off, size_t n, std::vector<PinnedSlice>* out) {
  if (off > info_.virtual_size || n > info_.virtual_size - off) {
    return Status::OutOfRange("vhdx: read past the virtual size");
  }
  if (info_.log_replayed) return Status::NotSupported("vhdx: replayed log, read with ReadAt");
  static const char kZeros[64 << 10] = {};
  constexpr size_t kMaxPieces = 512;  // a reply is one writev: well under IOV_MAX
  const size_t had = out->size();
  auto give_up = [&](Status s) {
    out->resize(had);
    return s;
  };
  while (n > 0) {
    auto m = Map(off, n);
    if (!m.ok()) return give_up(m.status());
    if (m->kind == Kind::kData) {
      if (Status s = file_->ReadPinned(m->host_offset, m->length, out); !s.ok()) {
        return give_up(s);
      }
    } else {
      for (uint64_t left = m->length; left > 0;) {
        size_t take = static_cast<size_t>(std::min<uint64_t>(left, sizeof kZeros));
        out->push_back({kZeros, take, nullptr});
        left -= take;
      }
    }
    if (out->size() - had > kMaxPieces) {
      return give_up(Status::NotSupported("vhdx: read in too many pieces"));
    }
    off += m->length;
    n -= m->length;
  }
  return Status::Ok();
}

Result<Extent> VhdxReader::MapExtent(uint64_t off) {
  const uint64_t vsize = info_.virtual_size;
  if (off >= vsize) return Status::OutOfRange("vhdx: extent past the end");
  auto kind_of = [](Kind k) {
    switch (k) {
      case Kind::kHole:
        return Extent::Kind::kHole;
      case Kind::kZero:
        return Extent::Kind::kZero;
      case Kind::kData:
        return Extent::Kind::kData;
    }
    return Extent::Kind::kData;
  };
  GLANCEFS_ASSIGN_OR_RETURN(Mapping first, Map(off, vsize - off));
  Extent extent{off, first.length, kind_of(first.kind)};
  // Merge the following blocks of the same kind; bounded so one call stays cheap.
  for (int i = 0; i < 4096 && extent.offset + extent.length < vsize; ++i) {
    uint64_t next_off = extent.offset + extent.length;
    GLANCEFS_ASSIGN_OR_RETURN(Mapping next, Map(next_off, vsize - next_off));
    if (kind_of(next.kind) != extent.kind) break;
    extent.length += next.length;
  }
  return extent;
}

std::vector<std::pair<std::string, std::string>> VhdxReader::Facts() const {
  return {{"subformat", info_.leave_blocks_allocated ? "fixed" : "dynamic"},
          {"block_size", std::to_string(info_.block_size)},
          {"logical_sector_size", std::to_string(info_.logical_sector_size)},
          {"physical_sector_size", std::to_string(info_.physical_sector_size)},
          {"creator_application", info_.creator},
          {"log", info_.log_replayed ? "replayed" : "clean"}};
}

namespace {

Result<bool> ProbeVhdx(ByteSource& src) { return HasMagic(src, 0, "vhdxfile"); }

Result<Decoded> OpenVhdx(std::shared_ptr<ByteSource> file) {
  GLANCEFS_ASSIGN_OR_RETURN(auto reader, VhdxReader::Open(std::move(file)));
  Decoded d;
  d.info.format = "vhdx";
  d.info.virtual_size = reader->size();
  d.info.facts = reader->Facts();
  d.raw = std::move(reader);
  return d;
}

}  // namespace

const FormatSpec kVhdxFormat{"vhdx", ProbeVhdx, OpenVhdx};

}  // namespace glancefs::format
