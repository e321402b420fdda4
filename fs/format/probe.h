// Format probing: what the first bytes of an image say it is.
//
// Pure: reads only through the ByteSource it is given. This is the identification step only;
// the safety checks of each format (backing files, data files, feature bits) belong to that
// format's decoder. Matches Glance's format inspector names: "raw", "qcow2", "vmdk", "vhd",
// "vhdx", "vdi", "qed", "luks", "iso".
#pragma once

#include <optional>
#include <string>

#include "fs/base/byte_source.h"

namespace glancefs::format {

// Returns the disk_format name the bytes match, "raw" when none does.
Result<std::string> ProbeFormat(ByteSource& src);

}  // namespace glancefs::format
