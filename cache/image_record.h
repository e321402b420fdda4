// ImageRecordCodec: the per-image record the cache keeps in its store's meta family
// ("img/<id>"), as text: one `name=value` line per field. Pure: no I/O, no locks.
//
// What a record says is what survives a restart: the version and size it was cached under, its
// image number (whose blocks are its blocks), its state and hash, pin and last access, and its
// signature verdict with the fingerprint of the properties and policy it was reached under.
// Decode tolerates what an older or damaged record lacks (a missing field reads as empty or 0)
// and refuses only a record that names no image number, which owns no blocks: the cache then
// ignores the record and the blocks it would have owned are deleted as orphans.
// Values never span lines: Encode turns a newline in free text (version, reason, verdict) into
// a space.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace glancefs::cache {

struct ImageRecordFields {
  std::string version;
  uint64_t size = 0;
  uint64_t no = 0;    // the image number; 0 never names an image
  std::string state;  // CacheStateName()'s words; anything else reads as "partial"
  std::string hash_algo;
  std::string hash_value;
  int64_t last_access = 0;
  bool pinned = false;
  std::string reason;        // why corrupt
  std::string signature_fp;  // what the verdict was reached under
  std::string signature;     // the verdict
};

std::string EncodeImageRecord(const ImageRecordFields& fields);
// The fields of `text`; nullopt for a damaged record (no image number).
std::optional<ImageRecordFields> DecodeImageRecord(std::string_view text);

}  // namespace glancefs::cache
