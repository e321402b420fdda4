// The last good catalog, kept beside the cache so that a node can mount while its catalog's
// source (Glance, Keystone) is out of reach.
//
// Contract:
//  - EncodeCatalog turns a snapshot and the time it was taken into one self-checking record:
//    a magic, a format version, an XXH64 of the payload, then every field of every record.
//    DecodeCatalog gives back an equal snapshot, or Corruption for anything damaged, truncated,
//    of another version or with trailing bytes: a damaged record is never half-used.
//  - The record is written as one meta put (atomic and durable: block_store.h) under
//    kStoredCatalogKey.
// Pure functions; no I/O.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "fs/base/catalog.h"
#include "fs/base/status.h"

namespace glancefs::cache {

inline constexpr std::string_view kStoredCatalogKey = "catalog";

struct StoredCatalog {
  std::shared_ptr<const CatalogSnapshot> snapshot;
  int64_t taken_at = 0;  // seconds since the epoch: when the source last answered
};

std::string EncodeCatalog(const CatalogSnapshot& snapshot, int64_t taken_at);
Result<StoredCatalog> DecodeCatalog(std::string_view bytes);

}  // namespace glancefs::cache
