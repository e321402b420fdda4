// SequentialStream through the block cache: a sequential reader of a source that prefers one
// stream is served by one request paced by the reader; a jump, a broken stream, an idle reader
// and a closing cache each end it, and every byte read still equals the source's.
#include "cache/sequential_stream.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "cache/block_cache.h"
#include "tests/unit/cache_test_util.h"

namespace glancefs::cache {
namespace {

using test_util::Pattern;
using test_util::WaitFor;

constexpr uint32_t kBlock = 64 << 10;

// An HTTP-like source: one request places its bytes slice by slice, as they "arrive". A request
// to the image's end longer than the largest ranged one (Options: 16 blocks) is a stream.
class StreamingSource : public ByteSource {
 public:
  explicit StreamingSource(std::string data) : data_(std::move(data)) {}
  uint64_t size() const override { return data_.size(); }
  bool PrefersOneStream() const override { return true; }
  Status ReadAt(uint64_t off, size_t n, char* dst) override {
    std::memcpy(dst, data_.data() + off, n);
    return Status::Ok();
  }
  Status ReadScattered(uint64_t off, uint64_t n, const SliceFor& slice_for,
                       const SliceDone& done) override {
    const bool stream = off + n == data_.size() && n > 16 * kBlock;
    ++requests;
    if (stream) ++streams;
    for (size_t i = 0, at = 0; at < n; ++i) {
      if (stream && fail_streams_at && off + at >= fail_streams_at) {
        ++broken;
        return Status::Unavailable("injected: the stream broke");
      }
      IoSlice slice = slice_for(i);
      if (!slice.data || slice.size > n - at) {
        if (stream) ++ended_early;
        return Status::IOError("no buffer");
      }
      std::memcpy(slice.data, data_.data() + off + at, slice.size);
      at += slice.size;
      delivered += slice.size;
      if (done) done(i);
    }
    return Status::Ok();
  }
  std::atomic<int> requests{0}, streams{0}, ended_early{0}, broken{0};
  std::atomic<uint64_t> delivered{0};
  std::atomic<uint64_t> fail_streams_at{0};

 private:
  std::string data_;
};

ImageRecord Record(const std::string& id, const std::string& data) {
  ImageRecord r;
  r.id = id;
  r.status = "active";
  r.size = data.size();
  r.data_version = "v1";
  return r;
}

CacheOptions Options() {
  CacheOptions o;
  o.block_size = kBlock;
  o.request_bytes = 16 * kBlock;
  o.readahead_initial = 4 * kBlock;
  o.readahead_max = 32 * kBlock;  // 2 MiB
  o.memory_bytes = 64 * kBlock;
  o.fetch_threads = 4;
  return o;
}

Status ReadRange(ByteSource& s, const std::string& data, uint64_t off, uint64_t n, size_t chunk) {
  std::string got(chunk, '\0');
  for (uint64_t at = off; at < off + n; at += chunk) {
    size_t len = static_cast<size_t>(std::min<uint64_t>(chunk, off + n - at));
    GLANCEFS_RETURN_IF_ERROR(s.ReadAt(at, len, got.data()));
    if (std::memcmp(got.data(), data.data() + at, len) != 0) {
      return Status::Corruption("wrong bytes at " + std::to_string(at));
    }
  }
  return Status::Ok();
}

TEST(SequentialStreamTest, ASequentialReaderIsServedByOneStreamItPaces) {
  std::string data = Pattern(256 * kBlock + 777, 1);  // 16 MiB and a piece
  auto cache = BlockCache::Open(NewMemBlockStore(), Options()).value();
  auto upstream = std::make_shared<StreamingSource>(data);
  auto source = cache->Wrap(Record("a", data), upstream);
  // Half the image, then a pause: the stream waits for the reader, about the window (2 MiB)
  // ahead of it.
  ASSERT_TRUE(ReadRange(*source, data, 0, data.size() / 2, 128 << 10).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_LE(upstream->delivered.load(), data.size() / 2 + 2 * 32 * kBlock);
  ASSERT_TRUE(
      ReadRange(*source, data, data.size() / 2, data.size() - data.size() / 2, 128 << 10).ok());
  // The first read's own blocks, then one stream to the end (it claims its first window when
  // it starts, so a reader there first waits for it).
  EXPECT_EQ(upstream->streams, 1);
  EXPECT_LE(upstream->requests, 3);
  EXPECT_TRUE(WaitFor([&] { return cache->Find("a")->cached_bytes == data.size(); }));
}

TEST(SequentialStreamTest, ReadsElsewhereBetweenSequentialReadsLeaveTheStreamBe) {
  // A decoder reads a table far away now and then between its data reads: one stream still
  // serves the data.
  std::string data = Pattern(256 * kBlock, 7);
  auto cache = BlockCache::Open(NewMemBlockStore(), Options()).value();
  auto upstream = std::make_shared<StreamingSource>(data);
  auto source = cache->Wrap(Record("a", data), upstream);
  const uint64_t chunk = 128 << 10;
  for (uint64_t off = 0; off < (10 << 20); off += chunk) {
    ASSERT_TRUE(ReadRange(*source, data, off, chunk, chunk).ok());
    if (off % (4 * chunk) == 0) {
      ASSERT_TRUE(ReadRange(*source, data, (15 << 20) + off % (1 << 20), 4096, 4096).ok());
    }
  }
  EXPECT_EQ(upstream->streams, 1);
  EXPECT_EQ(upstream->ended_early, 0);
}

TEST(SequentialStreamTest, AReaderThatMovesOnTakesTheStreamAlong) {
  std::string data = Pattern(512 * kBlock, 2);  // 32 MiB
  auto cache = BlockCache::Open(NewMemBlockStore(), Options()).value();
  auto upstream = std::make_shared<StreamingSource>(data);
  auto source = cache->Wrap(Record("a", data), upstream);
  ASSERT_TRUE(ReadRange(*source, data, 0, 2 << 20, 128 << 10).ok());
  ASSERT_EQ(upstream->streams, 1);
  // Far away (more than the 8 MiB a read may arrive out of order), then on from there: ranged
  // reads at first, then the stream ends and a new one serves the new place.
  ASSERT_TRUE(ReadRange(*source, data, 12 << 20, 20 << 20, 128 << 10).ok());
  EXPECT_TRUE(WaitFor([&] { return upstream->ended_early == 1; }, std::chrono::milliseconds(1000)));
  EXPECT_EQ(upstream->streams, 2);
}

TEST(SequentialStreamTest, ABrokenStreamIsTakenOverByRangedReads) {
  std::string data = Pattern(256 * kBlock, 3);
  auto cache = BlockCache::Open(NewMemBlockStore(), Options()).value();
  auto upstream = std::make_shared<StreamingSource>(data);
  upstream->fail_streams_at = (5 << 20) + 1000;  // mid-block: that block's flight is abandoned
  auto source = cache->Wrap(Record("a", data), upstream);
  // Readers waiting for the block the stream broke in fetch it themselves: no error.
  std::vector<std::thread> readers;
  std::atomic<int> good{0};
  for (int i = 0; i < 3; ++i) {
    readers.emplace_back([&] {
      if (ReadRange(*source, data, 0, data.size(), 128 << 10).ok()) ++good;
    });
  }
  for (auto& t : readers) t.join();
  EXPECT_EQ(good, 3);
  EXPECT_GE(upstream->broken, 1);
}

TEST(SequentialStreamTest, AnIdleReaderEndsItsStream) {
  std::string data = Pattern(256 * kBlock, 4);
  auto cache = BlockCache::Open(NewMemBlockStore(), Options()).value();
  auto upstream = std::make_shared<StreamingSource>(data);
  auto source = cache->Wrap(Record("a", data), upstream);
  ASSERT_TRUE(ReadRange(*source, data, 0, 1 << 20, 128 << 10).ok());
  ASSERT_EQ(upstream->streams, 1);
  // The source stays open, the reader reads no more: the stream lets go after kIdle.
  const int idle_ms = static_cast<int>(SequentialStream::kIdle.count());
  EXPECT_TRUE(WaitFor([&] { return upstream->ended_early == 1; },
                      std::chrono::milliseconds(idle_ms + 2000)));
}

TEST(SequentialStreamTest, ClosingTheSourceOrTheCacheEndsAWaitingStreamAtOnce) {
  std::string data = Pattern(256 * kBlock, 5);
  auto cache = BlockCache::Open(NewMemBlockStore(), Options()).value();
  auto upstream = std::make_shared<StreamingSource>(data);
  {
    auto source = cache->Wrap(Record("a", data), upstream);
    ASSERT_TRUE(ReadRange(*source, data, 0, 1 << 20, 128 << 10).ok());
  }
  EXPECT_TRUE(WaitFor([&] { return upstream->ended_early == 1; }, std::chrono::milliseconds(1000)));
  // A stream waiting for its reader when the cache closes.
  auto source = cache->Wrap(Record("a", data), upstream);
  ASSERT_TRUE(ReadRange(*source, data, 2 << 20, 1 << 20, 128 << 10).ok());
  auto t0 = std::chrono::steady_clock::now();
  cache.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
}

TEST(SequentialStreamTest, ASourceThatPrefersRangesGetsRangedReadahead) {
  class Ranged : public StreamingSource {
   public:
    using StreamingSource::StreamingSource;
    bool PrefersOneStream() const override { return false; }
  };
  std::string data = Pattern(256 * kBlock, 6);
  auto cache = BlockCache::Open(NewMemBlockStore(), Options()).value();
  auto upstream = std::make_shared<Ranged>(data);
  auto source = cache->Wrap(Record("a", data), upstream);
  ASSERT_TRUE(ReadRange(*source, data, 0, data.size(), 128 << 10).ok());
  EXPECT_EQ(upstream->streams, 0);
  EXPECT_GE(upstream->requests, 16);  // 1 MiB requests
}

}  // namespace
}  // namespace glancefs::cache
