// In-memory fakes behind glancefs's interfaces, for unit tests (no disk, no FUSE, no network).
#pragma once

#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "fs/base/catalog.h"

namespace glancefs::testing {

// A ByteSource over a string; optionally fails every read (to test error paths).
class MemByteSource : public ByteSource {
 public:
  explicit MemByteSource(std::string data) : data_(std::move(data)) {}
  uint64_t size() const override { return data_.size(); }
  Status ReadAt(uint64_t off, size_t n, char* dst) override {
    if (fail_reads) return Status::IOError("injected read failure");
    if (off > data_.size() || n > data_.size() - off) return Status::OutOfRange("past end");
    std::memcpy(dst, data_.data() + off, n);
    return Status::Ok();
  }
  bool fail_reads = false;

 private:
  std::string data_;
};

// The smallest valid qcow2 image: a version 2 header, 64 KiB clusters, virtual size 0.
inline std::string TinyQcow2() {
  std::string h(72, '\0');
  h.replace(0, 4, "QFI\xfb");
  h[7] = 2;    // version
  h[23] = 16;  // cluster_bits
  return h;
}

// A catalog held in memory. Tests edit `images` and call Refresh through the FileSystem.
class FakeCatalog : public Catalog {
 public:
  std::string Describe() const override { return "fake:"; }
  Result<std::shared_ptr<const CatalogSnapshot>> Refresh() override {
    std::lock_guard<std::mutex> lock(mu);
    if (fail_refresh) return Status::Unavailable("injected refresh failure");
    auto snap = std::make_shared<CatalogSnapshot>();
    for (auto& [id, rec] : images) snap->images.push_back(std::make_shared<ImageRecord>(rec));
    return std::shared_ptr<const CatalogSnapshot>(snap);
  }
  Result<std::shared_ptr<ByteSource>> OpenData(const ImageRecord& record) override {
    std::lock_guard<std::mutex> lock(mu);
    auto it = data.find(record.id);
    if (it == data.end()) return Status::IOError("no data for " + record.id);
    return std::shared_ptr<ByteSource>(std::make_shared<MemByteSource>(it->second));
  }

  // Adds an active image with `bytes` as data.
  ImageRecord& Add(const std::string& id, const std::string& name, const std::string& format,
                   const std::string& bytes, int64_t created_at = 1000) {
    ImageRecord r;
    r.id = id;
    if (!name.empty()) r.name = name;
    r.status = "active";
    r.disk_format = format;
    r.size = bytes.size();
    r.created_at = created_at;
    r.updated_at = created_at;
    r.data_version = std::to_string(bytes.size());
    r.properties = {{"id", id}, {"disk_format", format}};
    if (!name.empty()) r.properties["name"] = name;
    r.record_json = "{\"id\": \"" + id + "\"}\n";
    data[id] = bytes;
    return images[id] = r;
  }

  std::mutex mu;
  std::map<std::string, ImageRecord> images;
  std::map<std::string, std::string> data;
  bool fail_refresh = false;
};

}  // namespace glancefs::testing
