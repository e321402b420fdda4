#include "backends/rbd/rbd_catalog.h"

#include <algorithm>
#include <deque>
#include <nlohmann/json.hpp>
#include <sstream>

#include "fs/base/log.h"
#include "fs/base/prometheus.h"
#include "fs/base/thread.h"

namespace glancefs::backends::rbd {
namespace {

// Counts what the upstream serves, so that metrics show bytes by source for every source.
class CountingSource final : public ByteSource {
 public:
  CountingSource(std::shared_ptr<ByteSource> inner, std::shared_ptr<SourceStats> stats)
      : inner_(std::move(inner)), stats_(std::move(stats)) {}
  uint64_t size() const override { return inner_->size(); }
  Status ReadAt(uint64_t off, size_t n, char* dst) override {
    return Count(n, inner_->ReadAt(off, n, dst));
  }
  // Counts the bytes placed; a read its caller ended (a stream: no slice) is no error.
  Status ReadScattered(uint64_t off, uint64_t n, const SliceFor& slice_for,
                       const SliceDone& done) override {
    uint64_t placed = 0;
    bool ended = false;
    std::deque<size_t> handed;  // sizes of slices handed out and not done yet, in order
    Status s = inner_->ReadScattered(
        off, n,
        [&](size_t i) {
          IoSlice slice = slice_for(i);
          if (!slice.data) ended = true;
          handed.push_back(slice.size);
          return slice;
        },
        [&](size_t i) {
          placed += handed.front();  // done in the order handed out
          handed.pop_front();
          if (done) done(i);
        });
    stats_->reads.fetch_add(1, std::memory_order_relaxed);
    stats_->bytes.fetch_add(placed, std::memory_order_relaxed);
    if (!s.ok() && !ended && !s.IsNotSupported()) {
      stats_->errors.fetch_add(1, std::memory_order_relaxed);
    }
    return s;
  }
  bool PrefersOneStream() const override { return inner_->PrefersOneStream(); }
  Result<Extent> MapExtent(uint64_t off) override { return inner_->MapExtent(off); }
  uint64_t allocated_bytes() const override { return inner_->allocated_bytes(); }

 private:
  Status Count(uint64_t n, Status s) {
    stats_->reads.fetch_add(1, std::memory_order_relaxed);
    if (s.ok()) {
      stats_->bytes.fetch_add(n, std::memory_order_relaxed);
    } else if (!s.IsNotSupported()) {
      stats_->errors.fetch_add(1, std::memory_order_relaxed);
    }
    return s;
  }
  const std::shared_ptr<ByteSource> inner_;
  const std::shared_ptr<SourceStats> stats_;
};

constexpr const char* kUpstreamLabel = "upstream";

std::vector<std::string> SplitCommas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) {
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

std::string Property(const ImageRecord& record, const char* name) {
  auto it = record.properties.find(name);
  return it == record.properties.end() ? "" : it->second;
}

bool HasRbdLocation(const ImageRecord& record) {
  for (const ImageLocation& loc : LocationsOf(record)) {
    if (loc.url.rfind("rbd://", 0) == 0) return true;
  }
  return false;
}

std::string KeyOf(const ImageRecord& record) { return record.id + "\n" + record.data_version; }

}  // namespace

std::vector<ImageLocation> LocationsOf(const ImageRecord& record) {
  std::vector<ImageLocation> out;
  std::string text = Property(record, "locations");
  if (!text.empty()) {
    auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_array()) {
      for (const auto& item : json) {
        if (!item.is_object() || !item.contains("url") || !item["url"].is_string()) continue;
        ImageLocation loc{item["url"].get<std::string>(), ""};
        if (item.contains("metadata") && item["metadata"].is_object()) {
          const auto& meta = item["metadata"];
          if (meta.contains("store") && meta["store"].is_string()) {
            loc.store = meta["store"].get<std::string>();
          }
        }
        out.push_back(std::move(loc));
      }
    }
  }
  std::string direct = Property(record, "direct_url");
  if (!direct.empty() && std::none_of(out.begin(), out.end(),
                                      [&](const ImageLocation& l) { return l.url == direct; })) {
    out.push_back({direct, ""});
  }
  return out;
}

std::vector<std::pair<RbdLocation, std::string>> RbdCandidates(const ImageRecord& record,
                                                               const std::string& store) {
  const auto importing = SplitCommas(Property(record, "os_glance_importing_to_stores"));
  std::vector<std::pair<RbdLocation, std::string>> preferred, others;
  for (const ImageLocation& loc : LocationsOf(record)) {
    if (loc.url.rfind("rbd://", 0) != 0) continue;  // no other scheme is ever followed
    auto parsed = ParseRbdUrl(loc.url);
    if (!parsed.ok()) {
      LOG_WARNING("image %s: location ignored: %s", record.id.c_str(),
                  parsed.status().message().c_str());
      continue;
    }
    if (!loc.store.empty() &&
        std::find(importing.begin(), importing.end(), loc.store) != importing.end()) {
      LOG_INFO("image %s: store %s is still importing it: not read from there", record.id.c_str(),
               loc.store.c_str());
      continue;
    }
    auto& list = !store.empty() && loc.store == store ? preferred : others;
    list.emplace_back(std::move(parsed).value(), loc.store);
  }
  preferred.insert(preferred.end(), others.begin(), others.end());
  return preferred;
}

RbdCatalog::RbdCatalog(std::unique_ptr<Catalog> upstream, RbdCatalogOptions options)
    : upstream_(std::move(upstream)), options_(std::move(options)), clusters_(options_.ceph) {}

std::string RbdCatalog::LabelOf(const RbdLocation& location, const std::string& store) {
  return "rbd:" + (store.empty() ? location.fsid + "/" + location.pool : store);
}

std::shared_ptr<SourceStats> RbdCatalog::StatsFor(const std::string& label) {
  MutexLock lock(&mu_);
  auto& stats = stats_[label];
  if (!stats) stats = std::make_shared<SourceStats>();
  return stats;
}

RbdCatalog::~RbdCatalog() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  probe_cv_.SignalAll();
  if (prober_.joinable()) prober_.join();
}

Result<std::shared_ptr<const CatalogSnapshot>> RbdCatalog::Refresh() {
  GLANCEFS_ASSIGN_OR_RETURN(auto snap, upstream_->Refresh());
  MutexLock lock(&mu_);
  if (snap == last_upstream_ && learned_ == last_learned_ && last_out_) return last_out_;
  auto out = std::make_shared<CatalogSnapshot>();
  out->images.reserve(snap->images.size());
  bool queued = false;
  for (const auto& record : snap->images) {
    if (!record->size || *record->size == 0 || !HasRbdLocation(*record)) {
      out->images.push_back(record);
      continue;
    }
    const std::string key = KeyOf(*record);
    auto known = allocated_.find(key);
    if (known != allocated_.end()) {
      auto copy = std::make_shared<ImageRecord>(*record);
      copy->allocated_bytes = known->second;
      out->images.push_back(std::move(copy));
      continue;
    }
    out->images.push_back(record);
    if (probed_.insert(key).second) {
      probe_queue_.push_back(record);
      queued = true;
    }
  }
  if (queued) {
    if (!prober_.joinable()) prober_ = NamedThread("gfs-rbd-probe", [this] { ProbeLoop(); });
    probe_cv_.Signal();
  }
  last_upstream_ = std::move(snap);
  last_learned_ = learned_;
  last_out_ = out;
  return last_out_;
}

void RbdCatalog::ProbeLoop() {
  MutexLock lock(&mu_);
  for (;;) {
    while (!stopping_ && probe_queue_.empty()) probe_cv_.Wait(&mu_);
    if (stopping_) return;
    auto record = std::move(probe_queue_.front());
    probe_queue_.pop_front();
    lock.Unlock();
    std::string label;
    auto source = OpenFromCeph(*record, &label);
    lock.Lock();
    if (source.ok()) {
      allocated_[KeyOf(*record)] = (*source)->allocated_bytes();
      ++learned_;
    }
  }
}

Result<std::shared_ptr<RbdByteSource>> RbdCatalog::OpenFromCeph(const ImageRecord& record,
                                                                std::string* label) {
  for (const auto& [location, store] : RbdCandidates(record, options_.store)) {
    const std::string url = FormatRbdUrl(location);
    {
      MutexLock lock(&mu_);
      auto failed = failed_until_.find(url);
      if (failed != failed_until_.end() && Clock::now() < failed->second) continue;
    }
    *label = LabelOf(location, store);
    auto pool = clusters_.Pool(location.fsid, location.pool);
    auto opened = pool.ok() ? RbdByteSource::Open(*pool, location, *record.size, StatsFor(*label))
                            : Result<std::shared_ptr<RbdByteSource>>(pool.status());
    if (opened.ok()) return opened;
    LOG_WARNING("image %s: location %s (store %s) skipped for %u s: %s", record.id.c_str(),
                url.c_str(), store.empty() ? "-" : store.c_str(), options_.ceph.retry_s,
                opened.status().message().c_str());
    MutexLock lock(&mu_);
    failed_until_[url] = Clock::now() + std::chrono::seconds(options_.ceph.retry_s);
    ++location_failures_;
  }
  return Status::NotFound("no rbd location of image " + record.id + " to read from");
}

Result<std::shared_ptr<ByteSource>> RbdCatalog::OpenData(const ImageRecord& record) {
  if (!record.size) return upstream_->OpenData(record);
  const std::string key = KeyOf(record);
  {
    MutexLock lock(&mu_);
    auto it = open_.find(key);
    if (it != open_.end()) {
      if (auto source = it->second.lock()) return source;
    }
  }
  std::string label;
  std::shared_ptr<ByteSource> source;
  if (auto ceph = OpenFromCeph(record, &label); ceph.ok()) {
    source = std::move(ceph).value();
  } else {
    // The upstream keeps its own sources (and may refuse an open, e.g. a vanished file).
    GLANCEFS_ASSIGN_OR_RETURN(auto upstream, upstream_->OpenData(record));
    auto stats = StatsFor(kUpstreamLabel);
    MutexLock lock(&mu_);
    source_of_[record.id] = kUpstreamLabel;
    return std::shared_ptr<ByteSource>(
        std::make_shared<CountingSource>(std::move(upstream), std::move(stats)));
  }
  MutexLock lock(&mu_);
  auto& slot = open_[key];
  if (auto existing = slot.lock()) return existing;  // another open won the race
  slot = source;
  source_of_[record.id] = label;
  const auto now = Clock::now();
  kept_.emplace_back(now, source);
  while (kept_.size() > kKeepOpen ||
         (!kept_.empty() && now - kept_.front().first > std::chrono::seconds(kKeepSeconds))) {
    kept_.pop_front();
  }
  for (auto it = open_.begin(); it != open_.end();) {
    it = it->second.expired() ? open_.erase(it) : std::next(it);
  }
  return source;
}

std::vector<std::pair<std::string, std::string>> RbdCatalog::ImageInfo(const ImageRecord& record) {
  auto info = upstream_->ImageInfo(record);
  MutexLock lock(&mu_);
  auto it = source_of_.find(record.id);
  if (it != source_of_.end()) info.emplace_back("source", it->second);
  return info;
}

std::string RbdCatalog::Metrics() {
  std::string out = upstream_->Metrics();
  MutexLock lock(&mu_);
  const std::pair<const char*, std::atomic<uint64_t> SourceStats::*> series[] = {
      {"glancefs_source_bytes_total", &SourceStats::bytes},
      {"glancefs_source_reads_total", &SourceStats::reads},
      {"glancefs_source_errors_total", &SourceStats::errors},
  };
  for (const auto& [name, member] : series) {
    out += std::string("# TYPE ") + name + " counter\n";
    for (const auto& [label, stats] : stats_) {
      out += std::string(name) + "{source=\"" + PrometheusLabel(label) + "\"} " +
             std::to_string(((*stats).*member).load()) + "\n";
    }
  }
  out += "# TYPE glancefs_location_failures_total counter\n";
  out += "glancefs_location_failures_total " + std::to_string(location_failures_) + "\n";
  return out;
}

}  // namespace glancefs::backends::rbd
