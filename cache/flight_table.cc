#include "cache/flight_table.h"

namespace glancefs::cache {

bool FlightTable::Flight::IsDone() {
  MutexLock lock(&mu);
  return done;
}

void FlightTable::Flight::Finish(const Status& s, const BlockData& d) {
  {
    MutexLock lock(&mu);
    if (done) return;
    done = true;
    status = s;
    data = d;
  }
  cv.SignalAll();
}

bool FlightTable::Claim(BlockKey key) {
  MutexLock lock(&mu_);
  return flights_.emplace(KeyOf(key), std::make_shared<Flight>()).second;
}

bool FlightTable::Has(BlockKey key) {
  MutexLock lock(&mu_);
  return flights_.count(KeyOf(key)) > 0;
}

bool FlightTable::HasPending(uint64_t no) {
  MutexLock lock(&mu_);
  for (auto it = flights_.lower_bound({no, 0}); it != flights_.end() && it->first.first == no;
       ++it) {
    if (!it->second->IsDone()) return true;
  }
  return false;
}

bool FlightTable::HasAny(uint64_t no) {
  MutexLock lock(&mu_);
  auto it = flights_.lower_bound({no, 0});
  return it != flights_.end() && it->first.first == no;
}

FlightTable::Ticket FlightTable::Find(BlockKey key) {
  Ticket ticket;
  MutexLock lock(&mu_);
  if (auto it = flights_.find(KeyOf(key)); it != flights_.end()) ticket.flight_ = it->second;
  return ticket;
}

Result<BlockData> FlightTable::Wait(const Ticket& ticket) {
  Flight& flight = *ticket.flight_;
  MutexLock lock(&flight.mu);
  while (!flight.done) flight.cv.Wait(&flight.mu);
  if (!flight.status.ok()) return flight.status;
  return flight.data;
}

std::optional<Result<BlockData>> FlightTable::Await(BlockKey key) {
  Ticket ticket = Find(key);
  if (!ticket) return std::nullopt;
  return Wait(ticket);
}

void FlightTable::Complete(BlockKey key, const BlockData& data) {
  MutexLock lock(&mu_);
  if (auto it = flights_.find(KeyOf(key)); it != flights_.end()) {
    it->second->Finish(Status::Ok(), data);
  }
}

void FlightTable::Land(BlockKey key, const BlockData& data) {
  MutexLock lock(&mu_);
  auto it = flights_.find(KeyOf(key));
  if (it == flights_.end()) return;
  it->second->Finish(Status::Ok(), data);
  flights_.erase(it);
}

void FlightTable::Fail(BlockKey key, const Status& status) {
  MutexLock lock(&mu_);
  auto it = flights_.find(KeyOf(key));
  if (it == flights_.end()) return;
  it->second->Finish(status, nullptr);
  flights_.erase(it);
}

namespace {
constexpr char kAbandoned[] = "the fetch of this block was abandoned: fetch it again";
}  // namespace

void FlightTable::Abandon(BlockKey key) { Fail(key, Status::Unavailable(kAbandoned)); }

bool FlightTable::IsAbandoned(const Status& outcome) {
  return outcome.code() == Status::Code::kUnavailable && outcome.message() == kAbandoned;
}

void FlightTable::FailPending(uint64_t no, const Status& status) {
  MutexLock lock(&mu_);
  for (auto it = flights_.lower_bound({no, 0}); it != flights_.end() && it->first.first == no;) {
    if (it->second->IsDone()) {
      ++it;
      continue;
    }
    it->second->Finish(status, nullptr);
    it = flights_.erase(it);
  }
}

void FlightTable::FailAll(const Status& status) {
  MutexLock lock(&mu_);
  for (auto& [key, flight] : flights_) flight->Finish(status, nullptr);
  flights_.clear();
}

size_t FlightTable::size() {
  MutexLock lock(&mu_);
  return flights_.size();
}

}  // namespace glancefs::cache
