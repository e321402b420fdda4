// The mapping from Glance image names to entries of by-name/ (docs/SEMANTICS.md, "by-name").
//
// Glance names are any string up to 255 characters, are not unique, and may hold '/', control
// characters or be "." or "..". The mapping is deterministic and reversible:
//   - '%', '/', bytes 0x00-0x1F and 0x7F become %XX (upper-case hex); nothing else changes.
//   - a name that would encode to "." or ".." has its dots escaped ("%2E", "%2E%2E").
//   - a name that is empty or absent has no entry.
//   - an encoding longer than 255 bytes (NAME_MAX) is cut at a character boundary to 200 bytes
//     and ends in "%~" plus 16 hex digits of a hash of the whole name; such entries still
//     resolve, but only metadata.json gives the exact name back.
// Because every literal '%' is escaped, "%@" and "%~" can never come from a name, so the
// suffixes that by-name adds ("%@<id>" for duplicates) never collide with a real name.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace glancefs::fsns {

inline constexpr size_t kNameMax = 255;

// Returns the by-name entry for `name`, or nullopt when the name gets no entry (empty).
std::optional<std::string> EncodeName(std::string_view name);

// Reverses EncodeName. Returns nullopt for entries that are not a complete encoding
// (a shortened "%~" entry, a bad escape, a duplicate suffix).
std::optional<std::string> DecodeName(std::string_view entry);

// The entry for one image among several with the same name: "<encoded>%@<id>", with the name
// part shortened as above when the whole would exceed NAME_MAX. REQUIRES: name is not empty.
std::string DuplicateEntry(std::string_view name, std::string_view id);

}  // namespace glancefs::fsns
