// The VMDK descriptor: the text that says what a VMDK is (createType) and where its data lies
// (extent lines), parsed as Glance's format inspector (format_inspector.py VMDKInspector) parses
// it, and held to a whitelist: glancefs decodes only a descriptor that names no file but the
// image itself.
//
// A descriptor's lines are comments ('#'), ddb entries (ddb.key = "value"), fields
// (key=value), or extent lines (`RW|RDONLY|NOACCESS <sectors> <type> "<name>"`), keys and
// types case-insensitive. Accepted, and nothing else: ASCII text whose every line is one of
// those; exactly one createType, monolithicSparse or streamOptimized; no parentCID but
// ffffffff; no "parentFileNameHint" anywhere in the text qemu would read; exactly one extent
// line, `RW|RDONLY <sectors> SPARSE "<name>"` with nothing after the name, no '/' in it, and
// the header's capacity as its size. Each refusal is Status::Refused with its own message,
// quoting (shortened, made printable) the offending text; a size other than the capacity is
// Corruption.
//
// Pure functions over text (RefuseVmdkDescriptorFile reads its ByteSource, nothing else); safe
// to call from any thread.
#pragma once

#include <cstdint>
#include <string_view>

#include "fs/base/byte_source.h"

namespace glancefs::format {

struct VmdkInfo;

// For a file that starts with descriptor text (a descriptor-only VMDK: its data is in the files
// its extents name): always Refused, naming the createType and up to four extent files. Reads
// up to 1 MiB of `file`, to its first NUL; an I/O error is returned as is.
Status RefuseVmdkDescriptorFile(ByteSource& file);

// Checks the embedded descriptor `text` against the whitelist above. `qemu_view` is the text
// qemu searches for parentFileNameHint: from the descriptor's first byte, the larger of the
// descriptor and 20 sectors (as far as the file goes), to the first NUL; `text` is its first
// descriptor-size bytes. On success sets
// info->subformat, and info->adapter_type, hardware_version and cid from ddb.adapterType,
// ddb.virtualHWVersion and CID when they are plain words (letters, digits, '.', '_', '-').
Status CheckVmdkDescriptor(std::string_view text, std::string_view qemu_view,
                           uint64_t capacity_sectors, VmdkInfo* info);

}  // namespace glancefs::format
