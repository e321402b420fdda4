#include "cache/readahead_window.h"

#include <algorithm>
#include <bit>

namespace glancefs::cache {

ReadaheadWindow::Plan ReadaheadWindow::OnRead(uint64_t off, uint64_t n) {
  Plan plan;
  plan.sequential = Continues(off);
  if (!plan.sequential) {
    window_ = 0;  // the next read that continues this one opens the window anew
    ahead_ = 0;
    next_ = off + n;
    return plan;
  }
  if (c_.max == 0) {
    next_ = std::max<uint64_t>(next_, off + n);
    return plan;
  }
  window_ = window_ == 0 ? FirstWindow(n) : std::min(window_ * 2, c_.max);
  next_ = std::max<uint64_t>(next_, off + n);
  // Top up only when less than half the window is still ahead, and in whole requests.
  if (ahead_ > next_ && ahead_ - next_ >= window_ / 2) return plan;
  const uint64_t bs = c_.block_size;
  const uint64_t start = std::max(ahead_, next_) / bs * bs;
  if (start >= c_.image_size) return plan;
  const uint64_t request = std::clamp<uint64_t>(window_ / bs * bs, bs, c_.request_bytes);
  const uint64_t want = next_ + window_ - start;
  const uint64_t target = std::min(c_.image_size, start + (want + request - 1) / request * request);
  plan.fetch = true;
  plan.first_block = start / bs;
  plan.last_block = (target - 1) / bs;
  plan.blocks_per_request = request / bs;
  return plan;
}

uint64_t ReadaheadWindow::FirstWindow(uint64_t n) const {
  return std::min<uint64_t>(c_.initial, 4 * std::bit_ceil(std::max<uint64_t>(n, 1)));
}

void ReadaheadWindow::Scheduled(uint64_t end_block) {
  ahead_ = std::max(ahead_, std::min(c_.image_size, end_block * c_.block_size));
}

}  // namespace glancefs::cache
