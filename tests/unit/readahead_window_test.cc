// ReadaheadWindow, alone: a table of readers (sequential, reverse, strided, out of order,
// interleaved on one source, read-ahead off) and what the window asks for after each read.
#include "cache/readahead_window.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace glancefs::cache {
namespace {

constexpr uint64_t K = 4096;  // one block

// Blocks of 4 KiB; windows of 16 to 64 KiB; requests up to 32 KiB; reads within 8 KiB either
// side of where the last one ended are sequential; a 1 MiB image.
ReadaheadConfig Config() {
  ReadaheadConfig c;
  c.block_size = K;
  c.initial = 4 * K;
  c.max = 16 * K;
  c.request_bytes = 8 * K;
  c.image_size = 256 * K;
  c.reorder_bytes = 2 * K;
  return c;
}

struct Read {
  uint64_t off, n;
  bool sequential;
  bool fetch;
  uint64_t first = 0, last = 0, per_request = 0;  // when fetch
};

struct Case {
  std::string name;
  std::vector<Read> reads;
  uint64_t max = 16 * K;
};

// Each fetch the window asks for is taken as scheduled in full.
void RunCase(const Case& c) {
  ReadaheadConfig config = Config();
  config.max = c.max;
  ReadaheadWindow w(config);
  for (size_t i = 0; i < c.reads.size(); ++i) {
    const Read& r = c.reads[i];
    SCOPED_TRACE(c.name + ", read " + std::to_string(i) + " at " + std::to_string(r.off));
    ReadaheadWindow::Plan p = w.OnRead(r.off, r.n);
    EXPECT_EQ(p.sequential, r.sequential);
    ASSERT_EQ(p.fetch, r.fetch);
    if (!p.fetch) continue;
    EXPECT_EQ(p.first_block, r.first);
    EXPECT_EQ(p.last_block, r.last);
    EXPECT_EQ(p.blocks_per_request, r.per_request);
    w.Scheduled(p.last_block + 1);
  }
}

TEST(ReadaheadWindowTest, TableOfReaders) {
  const std::vector<Case> cases = {
      // Window 4, 8, 16, 16 blocks: topped up only when less than half is ahead, in whole
      // requests that grow with it (4 blocks, then 8, the request cap).
      {"sequential",
       {{0, K, true, true, 1, 4, 4},
        {K, K, true, true, 5, 12, 8},
        {2 * K, K, true, false},
        {3 * K, K, true, false},
        {4 * K, K, true, false},
        {5 * K, K, true, true, 13, 28, 8}}},
      // Backwards in steps larger than the reorder tolerance: every read is random.
      {"reverse",
       {{252 * K, 4 * K, false, false},
        {248 * K, 4 * K, false, false},
        {244 * K, 4 * K, false, false}}},
      // Forwards with gaps larger than the tolerance: only the first read (at 0) streams.
      {"strided",
       {{0, K, true, true, 1, 4, 4},
        {16 * K, K, false, false},
        {32 * K, K, false, false},
        {48 * K, K, false, false}}},
      // Gaps within the tolerance still stream (the kernel's read-ahead skips a little).
      {"strided within tolerance",
       {{0, K, true, true, 1, 4, 4}, {2 * K, K, true, true, 5, 12, 8}, {4 * K, K, true, false}}},
      // FUSE threads deliver a stream's requests out of order: a read a block behind keeps it.
      {"out of order",
       {{0, K, true, true, 1, 4, 4},
        {2 * K, K, true, true, 5, 12, 8},
        {K, K, true, false},
        {3 * K, K, true, false}}},
      // Two readers sharing one source reset each other's window: one window per open source.
      {"interleaved on one source",
       {{0, K, true, true, 1, 4, 4},
        {128 * K, K, false, false},
        {K, K, false, false},
        {129 * K, K, false, false}}},
      // Near the end: requests stop at the image's last block. The window opens anew (4
      // blocks: four times the read) at the first read that continues a random one.
      {"tail",
       {{250 * K, K, false, false},
        {251 * K, K, true, true, 252, 255, 4},
        {252 * K, K, true, false}}},
      // A format probe: a header read at 0 asks for nothing past its own block (four times
      // 512 bytes), and the window grows from there; a copy's first read of a whole window
      // gets the initial window at once.
      {"header probe",
       {{0, 512, true, true, 0, 0, 1}, {512, 512, true, false}, {K, K, true, true, 2, 3, 2}}},
      {"large first read", {{0, 4 * K, true, true, 4, 7, 4}}},
      // max 0: reads are classified, nothing is fetched ahead.
      {"off", {{0, K, true, false}, {K, K, true, false}, {9 * K, K, false, false}}, 0},
  };
  for (const Case& c : cases) RunCase(c);
}

// Two sources, two windows: each reader of an interleaved pair keeps its own stream.
TEST(ReadaheadWindowTest, InterleavedReadersOfTwoSourcesEachStream) {
  ReadaheadWindow a(Config()), b(Config());
  int fetches = 0;
  for (uint64_t i = 0; i < 8; ++i) {
    auto pa = a.OnRead(i * K, K);
    auto pb = b.OnRead(128 * K + i * K, K);
    EXPECT_TRUE(pa.sequential);
    EXPECT_TRUE(pb.sequential || i == 0);  // b's first read is at 128 K: random
    if (pa.fetch) a.Scheduled(pa.last_block + 1), ++fetches;
    if (pb.fetch) b.Scheduled(pb.last_block + 1), ++fetches;
  }
  EXPECT_GE(fetches, 4);
  EXPECT_EQ(a.window(), 16 * K);
  EXPECT_EQ(b.window(), 16 * K);
}

// A random read resets the window; the stream that follows starts small again.
TEST(ReadaheadWindowTest, RandomReadResetsTheWindow) {
  ReadaheadWindow w(Config());
  for (uint64_t i = 0; i < 4; ++i) {
    auto p = w.OnRead(i * K, K);
    if (p.fetch) w.Scheduled(p.last_block + 1);
  }
  EXPECT_EQ(w.window(), 16 * K);
  EXPECT_FALSE(w.OnRead(100 * K, K).sequential);
  EXPECT_EQ(w.window(), 0u);
  EXPECT_EQ(w.ahead(), 0u);
  auto p = w.OnRead(101 * K, K);
  EXPECT_TRUE(p.sequential);
  EXPECT_EQ(w.window(), 4 * K);
  EXPECT_TRUE(p.fetch);
  EXPECT_EQ(p.first_block, 102u);
}

}  // namespace
}  // namespace glancefs::cache
