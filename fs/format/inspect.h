// Inspect: what an image's bytes are, and whether glancefs will expose them -- the verdict
// Glance's format inspector gives at upload, given again on the node.
//
// Detection is by content (every registered probe, probe.h). The record's disk_format is a
// claim checked against it:
//   - bytes matching several formats are refused;
//   - a decodable disk_format (qcow2, vmdk, vhd, vhdx, vdi, ploop) must match the bytes, and
//     its decoder must accept them (its Refused or Corruption message is the reason);
//   - "raw", "aki", "ari" and "ami" records are served as their bytes; so are "iso" records
//     whose bytes are an ISO 9660 image (or carry no signature at all). But bytes another
//     format's decoder would refuse -- a qcow2 naming a backing or data file, a vmdk naming an
//     extent file -- are refused under any name, as is qed (which can name a backing file);
//   - any other disk_format (luks, qed, unknown names) is shown without disk views.
// Formats Glance has no name for (bochs, cloop, dmg, ...) are not probed: they are raw bytes,
// served as stored when the record says raw.
// `container_format` "ova" is opened first (container.h): everything above applies to its disk.
// Pure: reads only through the ByteSource it is given, opens nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "fs/base/byte_source.h"
#include "fs/format/format.h"

namespace glancefs::format {

struct Verdict {
  std::string format;   // what the bytes are: "raw", "qcow2", ...
  std::string refused;  // empty: usable; else why glancefs will not expose the disk views
  std::optional<uint64_t> virtual_size;  // of the raw view, when usable
  FormatInfo info;  // what the decoder learned (facts empty for bytes served as stored)
  std::string container;  // facts about the container ("ova: disk.vmdk at 1536"), if any
};

// `disk_format` and `container_format` are the record's claims. Only I/O failures are errors;
// refusals are verdicts.
Result<Verdict> Inspect(std::shared_ptr<ByteSource> stored, const std::string& disk_format,
                        const std::string& container_format = "bare");
// For callers holding a reference only (the source must outlive the call).
Result<Verdict> Inspect(ByteSource& stored, const std::string& disk_format,
                        const std::string& container_format = "bare");

// True iff a record with this disk_format is served as its bytes (raw, iso, aki, ari, ami).
bool ServedAsStored(const std::string& disk_format);

}  // namespace glancefs::format
