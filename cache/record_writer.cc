#include "cache/record_writer.h"

namespace glancefs::cache {

uint64_t RecordWriter::Stamp(const std::string& id) {
  MutexLock lock(&mu_);
  return ++slots_[id].issued;
}

Status RecordWriter::Write(const PendingRecord& record) {
  if (record.stamp == 0) return Status::Ok();
  std::shared_ptr<IoSlot> slot;
  {
    MutexLock lock(&mu_);
    slot = slots_[record.id].io;
  }
  MutexLock lock(&slot->io_mu);
  if (record.stamp <= slot->written) return Status::Ok();  // a newer state is in the store
  const std::string key = "img/" + record.id;
  Status s = record.text ? store_->PutMeta(key, *record.text) : store_->DeleteMeta(key);
  if (s.ok()) slot->written = record.stamp;
  return s;
}

}  // namespace glancefs::cache
