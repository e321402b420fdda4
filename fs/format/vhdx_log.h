// The VHDX log, replayed in memory: a VHDX file whose current header has a non-zero log GUID
// may carry metadata updates that were never written in place, and must not be read without
// them. qemu refuses a read-only open of such a file ("contains a log that needs to be
// replayed"); glancefs replays the log instead, into an overlay over the file's bytes (the file
// itself is never written), and reads the region table, the metadata and the BAT through it.
//
// Spec: [MS-VHDX] v1.00 "Log"; behaviour matched to qemu 7.2's block/vhdx-log.c.
//   1. The log region is read whole and scanned for entries ("loge"): a valid entry has the
//      header's log GUID, a non-zero sequence number, a length in 4 KiB sectors within the log,
//      descriptors ("desc" data, "zero" zeros) with the entry's sequence number and 4 KiB
//      aligned offsets, one data sector ("data", matching sequence number) per data descriptor,
//      and a CRC-32C over the whole entry. Entries may wrap around the end of the log.
//   2. Sequences are runs of valid entries, each following the previous one, with sequence
//      numbers increasing by one. The active sequence is the one with the highest sequence
//      number whose last entry (the head) has a Tail that points at one of its entries; the
//      entries from the tail to the head are replayed in order (the spec's rule; qemu replays
//      the whole run, which differs only for a run whose head does not start at its tail).
//   3. Each entry: its FlushedFileOffset must not exceed the file's size (Corruption: the file
//      was truncated); data descriptors place 4 KiB (8 leading bytes from the descriptor, 4084
//      from the data sector, 4 trailing from the descriptor) at their file offset, zero
//      descriptors zeros; the file then extends to LastFileOffset (rounded up to 1 MiB).
//   A log with no valid sequence is nothing to replay (qemu opens such files too).
// The work is bounded: the log is at most max_log_bytes, and the CRCs checked while scanning at
// most 16 times the log plus 16 MiB (Corruption past that: "too many overlapping candidate
// entries").
//
// The overlay is immutable once built and safe for concurrent reads: the log's runs of bytes
// where the replay wrote, the file's own bytes elsewhere, zeros past the file's end.
#pragma once

#include <array>
#include <cstdint>
#include <memory>

#include "fs/base/byte_source.h"

namespace glancefs::format {

// The log as the current header locates it.
struct VhdxLogLocation {
  std::array<char, 16> guid{};  // LogGuid, as stored: entries with another GUID are stale
  uint64_t offset = 0;          // in the file
  uint64_t length = 0;          // bytes
};

// Replays the log that `log` locates in `file`. Returns the number of entries replayed: 0 when
// the log holds no valid sequence (nothing to replay; *out is left alone), else *out is `file`
// with the replayed writes laid over it. Refused when the log is longer than max_log_bytes;
// Corruption when it lies outside the file, or an entry to replay writes or extends the file
// past 2^56 bytes or says the file was truncated; an I/O error from `file` as is.
Result<uint32_t> ReplayVhdxLog(const std::shared_ptr<ByteSource>& file, const VhdxLogLocation& log,
                               uint64_t max_log_bytes, std::shared_ptr<ByteSource>* out);

}  // namespace glancefs::format
