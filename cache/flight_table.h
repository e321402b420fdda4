// FlightTable: single flight for blocks. A block being fetched has one flight; whoever wants
// the block meanwhile waits for that flight instead of fetching it again (cvmfs's "concurrent
// download requests for the same id are collapsed").
//
// Life of a flight: Claim makes it (the claimer must then Land or Fail it); Complete hands the
// block to its waiters as soon as its bytes are in, leaving the flight in the table so that a
// reader arriving before the block is stored takes the bytes instead of fetching them; Land
// removes it once the block is stored (completing it first if it was not); Fail completes it
// with an error and removes it; Abandon removes it, and its waiters fetch the block themselves.
// Await waits for a flight's outcome; each flight has its own lock and condition variable, so a
// block's arrival wakes only its own readers.
//
// Keys are BlockKeys: an image number is never reused, so flights of an evicted (renumbered)
// image never meet those of its next number.
//
// Thread-safe. Locks: mu_ guards the table and is held for map operations only, never while
// waiting or doing I/O; it is ACQUIRED_AFTER Image::mu (image_table.h) and before each
// Flight::mu. Pure of the rest of the cache: tested alone (flight_table_test.cc).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <utility>

#include "cache/block.h"
#include "cache/block_store.h"
#include "fs/base/mutex.h"
#include "fs/base/status.h"

namespace glancefs::cache {

class FlightTable {
  struct Flight;

 public:
  // A hold on one flight, to wait for after letting go of the lock under which it was found.
  class Ticket {
   public:
    explicit operator bool() const { return flight_ != nullptr; }

   private:
    friend class FlightTable;
    std::shared_ptr<Flight> flight_;
  };

  FlightTable() = default;
  FlightTable(const FlightTable&) = delete;
  FlightTable& operator=(const FlightTable&) = delete;

  // Makes a flight for `key` and returns true, or returns false if it has one.
  bool Claim(BlockKey key) EXCLUDES(mu_);
  // Whether `key` has a flight (done or not).
  bool Has(BlockKey key) EXCLUDES(mu_);
  // Whether image number `no` has a flight not done: a reader waits for one of its blocks.
  bool HasPending(uint64_t no) EXCLUDES(mu_);
  // Whether image number `no` has any flight, done or not.
  bool HasAny(uint64_t no) EXCLUDES(mu_);
  // `key`'s flight (empty if none). Found under the image's lock, waited for (Wait) without
  // it: a flight that ends in between still gives its outcome.
  Ticket Find(BlockKey key) EXCLUDES(mu_);
  // Waits until the flight is done. Its outcome. REQUIRES: ticket not empty.
  static Result<BlockData> Wait(const Ticket& ticket);
  // Waits until `key`'s flight (if any) is done. Its outcome; nullopt if it had none.
  std::optional<Result<BlockData>> Await(BlockKey key) EXCLUDES(mu_);
  // Gives `key`'s flight (if any, not done) its block; the flight stays until Land.
  void Complete(BlockKey key, const BlockData& data) EXCLUDES(mu_);
  // Removes `key`'s flight (if any), completing it with `data` first if it was not done.
  void Land(BlockKey key, const BlockData& data) EXCLUDES(mu_);
  // Removes `key`'s flight (if any), completing it with `status` if it was not done.
  void Fail(BlockKey key, const Status& status) EXCLUDES(mu_);
  // Removes `key`'s flight (if any), telling its waiters (not done) to fetch the block
  // themselves: their outcome is one that IsAbandoned. For a stream that ended before it.
  void Abandon(BlockKey key) EXCLUDES(mu_);
  static bool IsAbandoned(const Status& outcome);
  // Fails and removes every flight of image number `no` not done yet.
  void FailPending(uint64_t no, const Status& status) EXCLUDES(mu_);
  // Fails and removes every flight (the cache is closing).
  void FailAll(const Status& status) EXCLUDES(mu_);
  size_t size() EXCLUDES(mu_);

 private:
  friend struct Image;  // names mu_ in its lock order
  struct Flight {
    Mutex mu;
    CondVar cv;
    bool done GUARDED_BY(mu) = false;
    Status status GUARDED_BY(mu);
    BlockData data GUARDED_BY(mu);

    bool IsDone() EXCLUDES(mu);
    // Done with `s` and `d` unless done already; wakes its waiters.
    void Finish(const Status& s, const BlockData& d) EXCLUDES(mu);
  };
  using Key = std::pair<uint64_t, uint64_t>;
  static Key KeyOf(BlockKey key) { return {key.image_no, key.index}; }

  Mutex mu_ ACQUIRED_BEFORE(Flight::mu);
  std::map<Key, std::shared_ptr<Flight>> flights_ GUARDED_BY(mu_);
};

}  // namespace glancefs::cache
