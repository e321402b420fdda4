// FirstRefreshAhead: a Catalog decorator that starts the first Refresh at once.
//
// Contract:
//  - Constructing it starts inner->Refresh() on a thread of its own, so that listing the
//    catalog (the network: Glance, Keystone) overlaps opening the cache (the disk: a fresh
//    RocksDB costs several fsyncs). The first Refresh() returns that result, waiting for it;
//    later ones refresh anew.
//  - Everything else is the inner catalog's. The destructor waits for the first refresh.
// Thread-safe.
#pragma once

#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fs/base/catalog.h"
#include "fs/base/mutex.h"

namespace glancefs::tools {

class FirstRefreshAhead final : public Catalog {
 public:
  explicit FirstRefreshAhead(std::unique_ptr<Catalog> inner)
      : inner_(std::move(inner)),
        first_(
            std::async(std::launch::async, [inner = inner_.get()] { return inner->Refresh(); })) {}
  ~FirstRefreshAhead() override {
    if (first_.valid()) first_.wait();
  }

  std::string Describe() const override { return inner_->Describe(); }
  Result<std::shared_ptr<const CatalogSnapshot>> Refresh() override {
    {
      MutexLock lock(&mu_);
      if (first_.valid()) return first_.get();
    }
    return inner_->Refresh();
  }
  Result<std::shared_ptr<ByteSource>> OpenData(const ImageRecord& record) override {
    return inner_->OpenData(record);
  }
  std::vector<std::pair<std::string, std::string>> ImageInfo(const ImageRecord& record) override {
    return inner_->ImageInfo(record);
  }
  std::vector<std::pair<std::string, std::string>> Info() override { return inner_->Info(); }
  std::string Metrics() override { return inner_->Metrics(); }

 private:
  const std::unique_ptr<Catalog> inner_;
  Mutex mu_;
  std::future<Result<std::shared_ptr<const CatalogSnapshot>>> first_ GUARDED_BY(mu_);
};

}  // namespace glancefs::tools
