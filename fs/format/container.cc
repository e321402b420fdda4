#include "fs/format/container.h"

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

namespace glancefs::format {
namespace {

constexpr uint64_t kBlock = 512;
constexpr int kMaxMembers = 16;
constexpr uint64_t kMaxPaxBytes = 64 << 10;
constexpr uint64_t kMaxDescriptorBytes = 1 << 20;

struct Member {
  std::string name;
  uint64_t offset = 0;  // of the first data byte
  uint64_t size = 0;
};

bool EndsWith(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// A ustar numeric field: octal text, or GNU base-256 (high bit set).
std::optional<uint64_t> Number(const char* p, size_t n) {
  if (static_cast<unsigned char>(p[0]) & 0x80) {
    uint64_t v = static_cast<unsigned char>(p[0]) & 0x7f;
    for (size_t i = 1; i < n; ++i) {
      if (v >> 55) return std::nullopt;
      v = (v << 8) | static_cast<unsigned char>(p[i]);
    }
    return v;
  }
  uint64_t v = 0;
  size_t i = 0;
  while (i < n && p[i] == ' ') ++i;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (v >> 60) return std::nullopt;
    v = v * 8 + (p[i] - '0');
  }
  return v;
}

std::string Field(const char* p, size_t n) { return std::string(p, strnlen(p, n)); }

bool ChecksumOk(const char* h) {
  auto stored = Number(h + 148, 8);
  uint64_t sum = 0;
  for (size_t i = 0; i < kBlock; ++i) {
    sum += (i >= 148 && i < 156) ? ' ' : static_cast<unsigned char>(h[i]);
  }
  return stored && *stored == sum;
}

// The "path" record of a pax extended header ("<len> path=<value>\n" records).
std::optional<std::string> PaxPath(const std::string& pax) {
  size_t pos = 0;
  std::optional<std::string> path;
  while (pos < pax.size()) {
    size_t sp = pax.find(' ', pos);
    if (sp == std::string::npos) break;
    uint64_t len = std::strtoull(pax.c_str() + pos, nullptr, 10);
    if (len <= sp - pos || len > pax.size() - pos) break;
    std::string rec = pax.substr(sp + 1, len - (sp - pos) - 2);  // without the newline
    if (rec.rfind("path=", 0) == 0) path = rec.substr(5);
    pos += len;
  }
  return path;
}

Status CheckName(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == ".." ||
      name.find('\0') != std::string::npos) {
    return Status::Refused("OVA member '" + name + "' names a path: members must be plain files");
  }
  return Status::Ok();
}

Result<std::vector<Member>> ListMembers(ByteSource& src) {
  std::vector<Member> members;
  std::optional<std::string> long_name;
  char h[kBlock];
  for (uint64_t off = 0; off + kBlock <= src.size();) {
    GLANCEFS_RETURN_IF_ERROR(src.ReadAt(off, kBlock, h));
    if (std::all_of(h, h + kBlock, [](char c) { return c == 0; })) break;  // end of archive
    if (!ChecksumOk(h)) {
      return Status::Corruption("OVA: bad tar header checksum at offset " + std::to_string(off));
    }
    auto size = Number(h + 124, 12);
    uint64_t data = off + kBlock;
    if (!size || *size > src.size() - data) {
      return Status::Corruption("OVA: member at offset " + std::to_string(off) +
                                " runs past the end of the archive");
    }
    uint64_t next = data + (*size + kBlock - 1) / kBlock * kBlock;
    char type = h[156];
    if (type == 'x' || type == 'L') {  // the next member's name
      if (*size > kMaxPaxBytes) return Status::Refused("OVA: an oversized extended header");
      std::string text(*size, '\0');
      GLANCEFS_RETURN_IF_ERROR(src.ReadAt(data, text.size(), text.data()));
      long_name = type == 'L' ? std::optional(Field(text.data(), text.size())) : PaxPath(text);
    } else if (type == 'g') {
      // A global pax header: nothing glancefs needs.
    } else if (type == '0' || type == '\0' || type == '7') {
      std::string name = Field(h, 100);
      if (std::memcmp(h + 257, "ustar", 5) == 0 && h[345]) name = Field(h + 345, 155) + "/" + name;
      if (long_name) name = *long_name;
      long_name.reset();
      GLANCEFS_RETURN_IF_ERROR(CheckName(name));
      if (members.size() == kMaxMembers) {
        return Status::Refused("OVA holds more than " + std::to_string(kMaxMembers) + " members");
      }
      members.push_back({name, data, *size});
    } else {
      return Status::Refused("OVA member '" + Field(h, 100) + "' is not a regular file (type '" +
                             std::string(1, type) + "')");
    }
    off = next;
  }
  return members;
}

Result<std::shared_ptr<ByteSource>> OpenOva(std::shared_ptr<ByteSource> stored,
                                            std::string* facts) {
  GLANCEFS_ASSIGN_OR_RETURN(auto members, ListMembers(*stored));
  const Member* descriptor = nullptr;
  std::vector<const Member*> disks;
  for (const Member& m : members) {
    if (EndsWith(m.name, ".ovf")) {
      if (descriptor) return Status::Refused("OVA holds two OVF descriptors");
      descriptor = &m;
    } else if (!EndsWith(m.name, ".mf") && !EndsWith(m.name, ".cert")) {
      disks.push_back(&m);
    }
  }
  if (!descriptor) return Status::Refused("OVA holds no OVF descriptor");
  if (disks.size() != 1) {
    std::string names;
    for (const Member* d : disks) names += (names.empty() ? "" : ", ") + d->name;
    return Status::Refused("OVA holds " + std::to_string(disks.size()) +
                           " disks (" + names + "): glancefs exposes exactly one");
  }
  if (descriptor->size > kMaxDescriptorBytes) return Status::Refused("OVA: descriptor over 1 MiB");
  std::string ovf(descriptor->size, '\0');
  GLANCEFS_RETURN_IF_ERROR(stored->ReadAt(descriptor->offset, ovf.size(), ovf.data()));
  if (ovf.find("href=\"" + disks[0]->name + "\"") == std::string::npos) {
    return Status::Refused("OVA: descriptor " + descriptor->name + " does not name the disk " +
                           disks[0]->name);
  }
  if (facts) {
    *facts = "ova: descriptor " + descriptor->name + ", disk " + disks[0]->name + " (" +
             std::to_string(disks[0]->size) + " bytes at offset " +
             std::to_string(disks[0]->offset) + ")";
  }
  return std::shared_ptr<ByteSource>(
      std::make_shared<SliceByteSource>(std::move(stored), disks[0]->offset, disks[0]->size));
}

}  // namespace

Result<Extent> SliceByteSource::MapExtent(uint64_t off) {
  GLANCEFS_ASSIGN_OR_RETURN(Extent e, base_->MapExtent(offset_ + off));
  uint64_t end = std::min(e.offset + e.length, offset_ + length_);
  return Extent{off, end - (offset_ + off), e.kind};
}

Result<std::shared_ptr<ByteSource>> OpenContainer(std::shared_ptr<ByteSource> stored,
                                                  const std::string& container_format,
                                                  std::string* facts) {
  if (container_format == "ova") return OpenOva(std::move(stored), facts);
  if (container_format.empty() || container_format == "bare" || container_format == "ovf" ||
      container_format == "aki" || container_format == "ari" || container_format == "ami") {
    return stored;
  }
  return Status::Refused("container_format '" + container_format + "' is not opened by glancefs");
}

}  // namespace glancefs::format
