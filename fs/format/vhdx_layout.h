// The layout of a VHDX file: what its header section says (the file identifier, the current
// header, the region table) and what its metadata region says (the file parameters, the
// virtual disk size, the sector sizes). VhdxReader::Open reads them in this order, the log
// (vhdx_log.h) replayed between the header and the region table.
//
// Spec: [MS-VHDX] v1.00; checks matched to qemu 7.2's block/vhdx.c (see vhdx_reader.h for the
// layout). Each function reads only the ByteSource it is given and returns Corruption for bytes
// that contradict themselves or the spec (a bad magic or CRC-32C, no valid header, regions
// outside the file or overlapping each other, the log or the header section, metadata items
// outside their region, sizes out of the spec's ranges), Refused for what glancefs will not
// decode (unknown required regions or metadata items, a differencing disk), an I/O error from
// below as is. Pure functions: safe from any thread.
#pragma once

#include <cstdint>
#include <string>

#include "fs/base/byte_source.h"
#include "fs/format/vhdx_log.h"

namespace glancefs::format {

struct VhdxInfo;

// The header section: the file identifier, two headers, two region tables, in the first MiB.
inline constexpr uint64_t kVhdxHeaderSectionBytes = 1 << 20;

// What the header section says, before any log is replayed.
struct VhdxHeader {
  std::string creator;      // the file identifier's creator, UTF-16 as UTF-8
  VhdxLogLocation log;      // as the current header says
  bool log_in_use = false;  // a non-zero log GUID and length: the log must be replayed
};

// A range of the file, named for messages ("the BAT").
struct VhdxRegion {
  const char* what;
  uint64_t offset;
  uint64_t length;
};

struct VhdxRegions {
  VhdxRegion bat;
  VhdxRegion metadata;
};

// Reads the file identifier and the current header (of the two, the valid one with the higher
// sequence number; two valid ones with the same number must be identical), and checks its log
// fields as qemu does (offset a non-zero multiple of 1 MiB, version 0, and for a log in use a
// length that is a multiple of 1 MiB).
Result<VhdxHeader> ReadVhdxHeader(ByteSource& file);

// Reads the region table (the first copy with a valid signature and CRC-32C) of `file`, the log
// replayed: where the BAT and the metadata region are. Both must be listed once and lie in the
// file; no two regions the table lists, the header section and `log` may share a byte.
Result<VhdxRegions> ReadVhdxRegionTable(ByteSource& file, const VhdxLogLocation& log);

// Reads the metadata table in region `metadata` and its five required items; sets info's
// block_size, logical_sector_size, physical_sector_size, leave_blocks_allocated and
// virtual_size (the disk size in whole logical sectors).
Status ReadVhdxMetadata(ByteSource& file, const VhdxRegion& metadata, VhdxInfo* info);

}  // namespace glancefs::format
