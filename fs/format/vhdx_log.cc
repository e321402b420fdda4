#include "fs/format/vhdx_log.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "fs/format/crc32c.h"
#include "fs/format/format.h"

namespace glancefs::format {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kMaxFileSize = 1ULL << 56;  // what a replayed log may extend a file to
constexpr uint64_t kLogSector = 4096;
constexpr uint64_t kLogHeaderBytes = 64;
constexpr uint64_t kLogDescBytes = 32;
constexpr uint64_t kLogDataBytes = 4084;  // of a data sector: bytes 8..4091

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

  // The entry at `pos`, if valid (see vhdx_log.h).
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
    if (!ParseDescriptors(count, desc_sectors, &e)) return std::nullopt;
    if (!ChecksumOk(e)) return std::nullopt;
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
  // The `count` descriptors of entry *e, which take its first `desc_sectors` sectors, into
  // e->descriptors; false when one is invalid.
  bool ParseDescriptors(uint64_t count, uint64_t desc_sectors, LogEntry* e) const {
    const uint64_t sectors = e->length / kLogSector;
    uint64_t data_sectors = 0;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t at = kLogHeaderBytes + i * kLogDescBytes;
      const char* d = Sector(e->pos, at / kLogSector) + at % kLogSector;
      if (LoadLE64(d + 24) != e->seq) return false;
      LogDescriptor desc{};
      desc.file_offset = LoadLE64(d + 16);
      if (desc.file_offset % kLogSector != 0) return false;
      if (std::memcmp(d, "zero", 4) == 0) {
        desc.zero = true;
        desc.zero_length = LoadLE64(d + 8);
        if (desc.zero_length % kLogSector != 0) return false;
      } else if (std::memcmp(d, "desc", 4) == 0) {
        desc.raw = d;
        desc.data_sector = desc_sectors + data_sectors++;
        if (desc.data_sector >= sectors) return false;
        const char* s = Sector(e->pos, desc.data_sector);
        uint64_t seq = (uint64_t{LoadLE32(s + 4)} << 32) | LoadLE32(s + kLogSector - 4);
        if (std::memcmp(s, "data", 4) != 0 || seq != e->seq) return false;
      } else {
        return false;
      }
      e->descriptors.push_back(desc);
    }
    return true;
  }

  // The CRC-32C of the whole entry, its checksum field as zeros, against the stored one. False
  // too, and exhausted() from then on, when the budget cannot pay for it.
  bool ChecksumOk(const LogEntry& e) {
    if (budget_ < e.length) {
      exhausted_ = true;
      return false;
    }
    budget_ -= e.length;
    static const char kZeros[4] = {};
    const char* h = Sector(e.pos, 0);
    uint32_t crc = Crc32c(0, h, 4);
    crc = Crc32c(crc, kZeros, 4);
    crc = Crc32c(crc, h + 8, kLogSector - 8);
    for (uint64_t k = 1; k < e.length / kLogSector; ++k) {
      crc = Crc32c(crc, Sector(e.pos, k), kLogSector);
    }
    return crc == LoadLE32(h + 4);
  }

  const std::string& log_;
  const char* guid_;
  uint64_t budget_;  // bytes of CRC left: bounds the work a hostile log can cause
  bool exhausted_ = false;
};

// Every run of valid entries, each following the previous one with the next sequence number,
// found by scanning the log from its start (a run may wrap around its end).
std::vector<std::vector<LogEntry>> FindRuns(LogParser& parser, uint64_t log_bytes) {
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
  return runs;
}

// The entries from tail to head of the highest head whose tail is an entry of its run, at or
// before it. Empty when no head qualifies.
std::vector<LogEntry> HighestSequence(const std::vector<std::vector<LogEntry>>& runs) {
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

// The active sequence of the log (see vhdx_log.h). Empty when there is none.
Result<std::vector<LogEntry>> FindActiveSequence(LogParser& parser, uint64_t log_bytes) {
  std::vector<std::vector<LogEntry>> runs = FindRuns(parser, log_bytes);
  if (parser.exhausted()) {
    return Status::Corruption("vhdx: log has too many overlapping candidate entries");
  }
  return HighestSequence(runs);
}

// Lays the writes of entry `e` over *overlay, then extends it to the entry's LastFileOffset.
Status ApplyEntry(const LogParser& parser, const LogEntry& e, LogOverlay* overlay) {
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
                                Hex(d.file_offset) + "+" + std::to_string(len) + ", past any file");
    }
    if (d.zero) {
      overlay->Put(d.file_offset, len, nullptr, 0);
    } else {
      overlay->Put(d.file_offset, len, std::make_shared<const std::string>(parser.Page(e, d)), 0);
    }
  }
  if (e.last_file_offset > kMaxFileSize) {
    return Status::Corruption("vhdx: log entry " + std::to_string(e.seq) + " has LastFileOffset " +
                              Hex(e.last_file_offset) + ", past any file");
  }
  if (e.last_file_offset > overlay->size()) {
    overlay->Extend((e.last_file_offset + kMiB - 1) / kMiB * kMiB);
  }
  return Status::Ok();
}

}  // namespace

Result<uint32_t> ReplayVhdxLog(const std::shared_ptr<ByteSource>& file, const VhdxLogLocation& log,
                               uint64_t max_log_bytes, std::shared_ptr<ByteSource>* out) {
  const uint64_t log_offset = log.offset;
  const uint64_t log_bytes = log.length;
  if (log_bytes > max_log_bytes) {
    return Status::Refused("vhdx log of " + std::to_string(log_bytes) +
                           " bytes needs replay; glancefs replays logs of up to " +
                           std::to_string(max_log_bytes) + " bytes");
  }
  if (log_offset > file->size() || file->size() - log_offset < log_bytes) {
    return Status::Corruption("vhdx: log at " + Hex(log_offset) + "+" + std::to_string(log_bytes) +
                              " is outside the file (" + std::to_string(file->size()) + " bytes)");
  }
  std::string text(log_bytes, '\0');
  GLANCEFS_RETURN_IF_ERROR(file->ReadAt(log_offset, text.size(), text.data()));
  LogParser parser(text, log.guid.data());
  GLANCEFS_ASSIGN_OR_RETURN(std::vector<LogEntry> entries, FindActiveSequence(parser, log_bytes));
  if (entries.empty()) return 0u;

  auto overlay = std::make_shared<LogOverlay>(file);
  for (const LogEntry& e : entries) GLANCEFS_RETURN_IF_ERROR(ApplyEntry(parser, e, overlay.get()));
  *out = std::move(overlay);
  return static_cast<uint32_t>(entries.size());
}

}  // namespace glancefs::format
