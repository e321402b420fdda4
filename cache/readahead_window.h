// ReadaheadWindow: one reader's read-ahead, as a pure state machine: reads go in, what to
// fetch ahead comes out. No threads, no clock, no I/O; the cached byte source (cached_source.h)
// holds one per open source under its lock and schedules what it asks.
//
// The algorithm is mountpoint-s3's prefetcher's (prefetch.rs, seek_window.rs): a read that
// continues the stream (within reorder_bytes either side of where the last one ended) is
// sequential and doubles the window up to `max`; any other read resets it and asks for nothing.
// The first window of a stream is four times its first read (as Linux's initial read-ahead),
// at most `initial`: a format probe reading a header at offset 0 asks for nothing past its own
// block (a stream there would only take bandwidth from the reads that follow: the tables, the
// block wanted), while a copy's 1 MiB reads get the whole initial window at once. The window is topped up only when less than half of it is still ahead,
// and in whole requests that grow with it (small while a reader may stop soon, a header read;
// up to request_bytes once it streams, where the per-request cost of Glance vanishes).
//
// Why reorder_bytes: the kernel's own read-ahead and several FUSE threads deliver a sequential
// reader's requests out of order, a request or two either way. Tolerating only a block or two
// ahead reset a streaming reader's window about 20 times per GiB, each reset splitting the
// stream into small requests. max == 0 turns read-ahead off (reads are still classified).
//
// Not thread-safe: one owner, under its own lock. Tested alone (readahead_window_test.cc).
#pragma once

#include <cstdint>

namespace glancefs::cache {

struct ReadaheadConfig {
  uint64_t initial = 4 << 20;         // the largest first window of a sequential reader
  uint64_t max = 64 << 20;            // the window doubles up to this; 0: no read-ahead
  uint64_t request_bytes = 64 << 20;  // the largest request
  uint64_t block_size = 64 << 10;
  uint64_t image_size = 0;
  uint64_t reorder_bytes = 8 << 20;  // how far out of order a sequential read may arrive
};

class ReadaheadWindow {
 public:
  explicit ReadaheadWindow(const ReadaheadConfig& config) : c_(config) {}

  // What one read asks of read-ahead.
  struct Plan {
    bool sequential = false;  // the read continues a stream
    bool fetch = false;       // read ahead blocks [first_block, last_block]
    uint64_t first_block = 0;
    uint64_t last_block = 0;
    uint64_t blocks_per_request = 0;
  };
  // A read of [off, off + n). After a plan with fetch, call Scheduled.
  Plan OnRead(uint64_t off, uint64_t n);
  // Whether a read at `off` would continue the stream (OnRead would call it sequential).
  bool Continues(uint64_t off) const {
    return off + c_.reorder_bytes >= next_ && off <= next_ + c_.reorder_bytes;
  }
  // Forgets what was scheduled ahead (it was not fetched): the next sequential read asks again.
  void ForgetAhead() { ahead_ = 0; }
  // Read-ahead was scheduled (or is known not to be needed) up to block end_block, exclusive.
  void Scheduled(uint64_t end_block);

  uint64_t window() const { return window_; }
  uint64_t next() const { return next_; }    // where a sequential reader reads next
  uint64_t ahead() const { return ahead_; }  // read-ahead is scheduled up to here

 private:
  uint64_t FirstWindow(uint64_t n) const;

  ReadaheadConfig c_;
  uint64_t next_ = 0;
  uint64_t window_ = 0;
  uint64_t ahead_ = 0;
};

}  // namespace glancefs::cache
