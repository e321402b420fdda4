// Views: the disk files an image directory shows, and how each is made from the stored bytes.
//
//   disk.raw     the raw contents: the stored bytes for formats served as stored (inspect.h),
//                else the format's decoder on read
//   disk.qcow2   qcow2 images: the stored bytes; every other image: a qcow2 v3 file
//                synthesized on read over its raw view (qcow2_synth.h)
// The container (container.h) is opened first. Callers open a view only for an image whose
// verdict (Inspect) was not refused; a view opened otherwise reports the decoder's refusal.
// Pure: reads only through the ByteSource it is given.
#pragma once

#include <memory>
#include <string>

#include "fs/base/byte_source.h"

namespace glancefs::format {

enum class View { kRaw, kQcow2 };

Result<std::shared_ptr<ByteSource>> OpenView(View view, std::shared_ptr<ByteSource> stored,
                                             const std::string& disk_format,
                                             const std::string& container_format);

// True iff `view` of such a record is the stored bytes (its size is the record's size).
bool ViewIsStored(View view, const std::string& disk_format, const std::string& container_format);

}  // namespace glancefs::format
