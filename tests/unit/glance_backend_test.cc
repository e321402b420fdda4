// The Glance backend against a local HTTP server that behaves like Glance, and misbehaves on
// purpose: every fault must give a clear error in bounded time and never wrong data.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <random>
#include <thread>

#include "backends/glance/barbican.h"
#include "backends/glance/glance_catalog.h"
#include "backends/glance/keystone.h"
#include "fs/base/time_util.h"
#include "tests/fakes/fake_glance.h"

namespace glancefs::backends {
namespace {

using glancefs::testing::FakeGlance;
using glancefs::testing::HttpAnswer;
using glancefs::testing::HttpRequest;
using glancefs::testing::TestHttpServer;

class GlanceBackendTest : public ::testing::Test {
 protected:
  GlanceBackendTest() : server_([this](const HttpRequest& r) { return glance_.Handle(r); }) {}

  std::unique_ptr<GlanceCatalog> Catalog(const std::string& token = "", unsigned limit = 2,
                                         unsigned relist = 10) {
    HttpOptions http;
    http.low_speed_time_s = 2;  // stalls become errors quickly in tests
    GlanceOptions options;
    options.endpoint = server_.url();
    options.page_limit = limit;
    options.relist = relist;
    options.retries = 2;
    options.max_backoff_ms = 200;
    return std::make_unique<GlanceCatalog>(NewCurlHttpClient(http),
                                           std::make_shared<StaticToken>(token), options);
  }
  std::shared_ptr<ByteSource> Open(GlanceCatalog& c, int i = 0) {
    auto snap = c.Refresh();
    EXPECT_TRUE(snap.ok()) << snap.status().ToString();
    auto src = c.OpenData(*(*snap)->Find(FakeGlance::Id(i)));
    EXPECT_TRUE(src.ok()) << src.status().ToString();
    return *src;
  }
  Status Read(ByteSource& src, uint64_t off, size_t n, std::string* out) {
    out->assign(n, '\0');
    return src.ReadAt(off, n, out->data());
  }

  FakeGlance glance_;
  TestHttpServer server_;
};

TEST_F(GlanceBackendTest, ListsEveryPageAndHiddenImages) {
  for (int count : {0, 1, 4, 5}) {  // 4 = two exactly full pages, then an empty one
    glance_.count = count;
    auto snap = Catalog()->Refresh();
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
    ASSERT_EQ((*snap)->images.size(), static_cast<size_t>(count + 1)) << count;
    EXPECT_TRUE((*snap)->Find(FakeGlance::Id(count))->hidden);
    EXPECT_EQ((*snap)->Find(FakeGlance::Id(count))->data_version, "c" + std::to_string(count));
  }
  auto c = Catalog();
  auto a = c->Refresh();
  EXPECT_EQ(*a, *c->Refresh());  // unchanged catalog, same snapshot
}

TEST_F(GlanceBackendTest, RefreshesBetweenFullListingsAskOnlyForChanges) {
  glance_.count = 5;
  std::vector<std::string> firsts;  // the first page of each listing
  glance_.fault = [&](const HttpRequest& r, HttpAnswer*) {
    if (r.target.rfind("/v2/images?", 0) == 0 && r.target.find("marker=") == std::string::npos) {
      firsts.push_back(r.target);
    }
    return false;
  };
  auto c = Catalog("", 1000, /*relist=*/3);
  auto delta = [](const std::string& t) {
    return t.find("updated_at=gte:2024-01-01T00:00:00Z") != std::string::npos;
  };
  std::vector<bool> kinds;  // per refresh: delta?
  std::vector<size_t> sizes;
  for (int refresh = 0; refresh < 4; ++refresh) {
    if (refresh == 1) glance_.count = 4;  // image 4 is deleted
    firsts.clear();
    auto snap = c->Refresh();
    ASSERT_TRUE(snap.ok()) << snap.status().ToString();
    ASSERT_EQ(firsts.size(), 2u);  // the list, then the hidden images
    EXPECT_EQ(delta(firsts[0]), delta(firsts[1]));
    kinds.push_back(delta(firsts[0]));
    sizes.push_back((*snap)->images.size());
  }
  EXPECT_EQ(kinds, (std::vector<bool>{false, true, true, false}));
  // A filtered listing cannot see a deletion: it shows at the next full one.
  const size_t n = sizes[0];  // 5 images and the fake's hidden one
  EXPECT_EQ(sizes, (std::vector<size_t>{n, n, n, n - 1}));
}

TEST_F(GlanceBackendTest, RangeReadsAreExact) {
  auto c = Catalog();
  auto src = Open(*c);
  std::string got;
  ASSERT_TRUE(Read(*src, 0, glance_.data.size(), &got).ok());
  EXPECT_TRUE(got == glance_.data);
  ASSERT_TRUE(Read(*src, 12345, 1 << 20, &got).ok());
  EXPECT_TRUE(got == glance_.data.substr(12345, 1 << 20));
  EXPECT_EQ(Read(*src, glance_.data.size() - 1, 2, &got).code(), Status::Code::kOutOfRange);
}

TEST_F(GlanceBackendTest, StoresThatRefuseRangeAreStreamed) {
  for (auto mode : {FakeGlance::RangeMode::kRefuse400, FakeGlance::RangeMode::kIgnore200,
                    FakeGlance::RangeMode::kIgnore206}) {
    glance_.range_mode = mode;
    auto c = Catalog();
    auto src = Open(*c);
    std::string got;
    ASSERT_TRUE(Read(*src, 2 << 20, 4096, &got).ok());
    EXPECT_TRUE(got == glance_.data.substr(2 << 20, 4096));
    ASSERT_TRUE(Read(*src, 7, 1000, &got).ok());
    EXPECT_TRUE(got == glance_.data.substr(7, 1000));
    int before = server_.requests();
    ASSERT_TRUE(Read(*src, 100, 5000, &got).ok());  // from the spool: no new request
    EXPECT_EQ(server_.requests(), before);
    // A scattered read (the block cache's) of a part, from a fresh source: NotSupported, no
    // slice reported, whatever the first answer was; then the whole image in one request, each
    // slice reported in order once it holds the right bytes.
    auto fresh = Open(*Catalog());
    std::string a(70000, '\0'), b(5000, '\0');
    std::vector<size_t> reported;
    Status st = fresh->ReadSlices(1 << 20, {IoSlice{a.data(), a.size()}, {b.data(), b.size()}},
                                     [&](size_t i) { reported.push_back(i); });
    EXPECT_EQ(st.code(), Status::Code::kNotSupported) << st.ToString();
    EXPECT_TRUE(reported.empty());
    std::string whole(glance_.data.size(), '\0');
    const size_t chunk = 1 << 20;
    before = server_.requests();
    st = fresh->ReadScattered(
        0, whole.size(), [&](size_t i) { return IoSlice{&whole[i * chunk], chunk}; },
        [&](size_t i) {
          reported.push_back(i);
          EXPECT_TRUE(whole.compare(i * chunk, chunk, glance_.data, i * chunk, chunk) == 0);
        });
    ASSERT_TRUE(st.ok()) << st.ToString();
    EXPECT_EQ(reported, (std::vector<size_t>{0, 1, 2}));
    EXPECT_EQ(server_.requests(), before + 1);
    EXPECT_TRUE(whole == glance_.data);
  }
}

TEST_F(GlanceBackendTest, ScatteredReadsTakeBuffersAsTheBytesArrive) {
  auto c = Catalog();
  auto src = Open(*c);
  // Slice i is asked for only after slice i - 1 is reported: a caller allocates as it goes.
  std::vector<std::string> bufs(8, std::string(64 << 10, '\0'));
  std::vector<std::string> events;
  Status st = src->ReadScattered(
      3 << 10, bufs.size() * bufs[0].size(),
      [&](size_t i) {
        events.push_back("get " + std::to_string(i));
        return IoSlice{bufs[i].data(), bufs[i].size()};
      },
      [&](size_t i) { events.push_back("done " + std::to_string(i)); });
  ASSERT_TRUE(st.ok()) << st.ToString();
  std::vector<std::string> want;
  for (size_t i = 0; i < bufs.size(); ++i) {
    want.push_back("get " + std::to_string(i));
    want.push_back("done " + std::to_string(i));
    EXPECT_TRUE(bufs[i] == glance_.data.substr((3 << 10) + i * bufs[i].size(), bufs[i].size()));
  }
  EXPECT_EQ(events, want);
  // No buffer (the caller is out of memory): an error, and nothing more is asked for.
  int asked = 0;
  std::string one(4096, '\0');
  st = src->ReadScattered(0, 3 * 4096, [&](size_t i) {
    ++asked;
    return i == 0 ? IoSlice{one.data(), one.size()} : IoSlice{nullptr, 0};
  });
  EXPECT_EQ(st.code(), Status::Code::kIOError) << st.ToString();
  EXPECT_EQ(asked, 2);
}

TEST_F(GlanceBackendTest, LyingOrBrokenAnswersAreErrorsNeverData) {
  struct Fault {
    const char* name;
    std::function<void(const HttpRequest&, HttpAnswer*)> make;
    Status::Code code;
  };
  std::vector<Fault> faults = {
      {"wrong Content-Range",
       [](const HttpRequest&, HttpAnswer* a) {
         a->status = 206;
         a->body = std::string(100, 'x');
         a->headers.push_back({"Content-Range", "bytes 1-100/3145728"});
       },
       Status::Code::kCorruption},
      {"short body with a matching Content-Range",
       [](const HttpRequest&, HttpAnswer* a) {
         a->status = 206;
         a->body = std::string(50, 'x');
         a->headers.push_back({"Content-Range", "bytes 0-99/3145728"});
       },
       Status::Code::kCorruption},
      {"over-long body",
       [](const HttpRequest&, HttpAnswer* a) {
         a->status = 206;
         a->body = std::string(200, 'x');
         a->headers.push_back({"Content-Range", "bytes 0-99/3145728"});
       },
       Status::Code::kCorruption},
      {"truncated transfer",
       [](const HttpRequest&, HttpAnswer* a) {
         a->status = 206;
         a->body = std::string(100, 'x');
         a->send_bytes = 40;
         a->headers.push_back({"Content-Range", "bytes 0-99/3145728"});
       },
       Status::Code::kUnavailable},
      {"connection reset", [](const HttpRequest&, HttpAnswer* a) { a->reset = true; },
       Status::Code::kUnavailable},
      {"500", [](const HttpRequest&, HttpAnswer* a) { a->status = 500; },
       Status::Code::kUnavailable},
      {"404", [](const HttpRequest&, HttpAnswer* a) { a->status = 404; }, Status::Code::kIOError},
      {"204", [](const HttpRequest&, HttpAnswer* a) { a->status = 204; },
       Status::Code::kCorruption},
  };
  for (const auto& f : faults) {
    SCOPED_TRACE(f.name);
    auto c = Catalog();
    auto src = Open(*c);
    glance_.fault = [&](const HttpRequest& r, HttpAnswer* a) {
      if (r.target.find("/file") == std::string::npos) return false;
      f.make(r, a);
      return true;
    };
    std::string got;
    auto t0 = std::chrono::steady_clock::now();
    Status s = Read(*src, 0, 100, &got);
    EXPECT_EQ(s.code(), f.code) << s.ToString();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
    glance_.fault = nullptr;
  }
}

TEST_F(GlanceBackendTest, RetriesTransientFailures) {
  auto c = Catalog();
  auto src = Open(*c);
  int failures = 2;
  glance_.fault = [&](const HttpRequest& r, HttpAnswer* a) {
    if (r.target.find("/file") == std::string::npos || failures == 0) return false;
    --failures;
    a->status = 503;
    a->headers.push_back({"Retry-After", "0"});
    return true;
  };
  std::string got;
  ASSERT_TRUE(Read(*src, 10, 100, &got).ok());
  EXPECT_TRUE(got == glance_.data.substr(10, 100));
}

TEST_F(GlanceBackendTest, StalledServerTimesOut) {
  auto c = Catalog();
  auto src = Open(*c);
  glance_.fault = [&](const HttpRequest& r, HttpAnswer* a) {
    if (r.target.find("/file") == std::string::npos) return false;
    a->status = 206;
    a->body = std::string(100, 'x');
    a->delay_ms = 4000;  // longer than the 2 s stall limit
    a->headers.push_back({"Content-Range", "bytes 0-99/3145728"});
    return true;
  };
  std::string got;
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(Read(*src, 0, 100, &got).code(), Status::Code::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
}

TEST_F(GlanceBackendTest, TokensAreSentAndRefusalsAreClear) {
  glance_.required_token = "secret-token";
  auto bad = Catalog("wrong")->Refresh();
  EXPECT_EQ(bad.status().code(), Status::Code::kPermissionDenied);
  EXPECT_EQ(bad.status().message().find("secret"), std::string::npos);
  auto good = Catalog("secret-token")->Refresh();
  EXPECT_TRUE(good.ok()) << good.status().ToString();
}

TEST_F(GlanceBackendTest, MalformedListingsAreErrors) {
  for (std::string body :
       {"", "[]", "{\"images\": 5}", "{\"images\": [], \"next\": \"http://evil/\"}"}) {
    glance_.fault = [&](const HttpRequest& r, HttpAnswer* a) {
      if (r.target.rfind("/v2/images?", 0) != 0) return false;
      a->body = body;
      return true;
    };
    EXPECT_FALSE(Catalog()->Refresh().ok()) << body;
  }
}

// A Keystone that issues t1, t2, ... and a Glance that accepts only the newest token.
TEST(KeystoneTokenSourceTest, RenewsBeforeExpiryAndAfterA401) {
  int issued = 0;
  int64_t lifetime_s = 3600;
  std::string last_body;
  FakeGlance glance;
  TestHttpServer server([&](const HttpRequest& r) {
    HttpAnswer a;
    if (r.method == "POST" && r.target == "/v3/auth/tokens") {
      last_body = r.body;
      a.status = 201;
      a.headers.push_back({"X-Subject-Token", "t" + std::to_string(++issued)});
      a.body = R"({"token": {"expires_at": ")" + FormatIso8601(::time(nullptr) + lifetime_s) +
               R"(", "catalog": [{"type": "image", "endpoints": [{"interface": "internal", )"
               R"("region": "R1", "url": "http://glance.internal:9292/"}, {"interface": )"
               R"("public", "region": "R1", "url": "http://glance.public:9292"}]}]}})";
      return a;
    }
    glance.required_token = "t" + std::to_string(issued);
    return glance.Handle(r);
  });
  KeystoneCredentials creds;
  creds.auth_url = server.url() + "/v3";
  creds.username = "demo";
  creds.password = "demopass";
  creds.project_name = "demo";
  creds.interface = "internal";
  creds.region = "R1";
  auto http = std::shared_ptr<HttpClient>(NewCurlHttpClient(HttpOptions()));
  auto keystone = std::make_shared<KeystoneTokenSource>(http, creds);
  ASSERT_TRUE(keystone->Authenticate().ok());
  EXPECT_EQ(*keystone->ImageEndpoint(), "http://glance.internal:9292");
  EXPECT_NE(last_body.find(R"("password":"demopass")"), std::string::npos) << last_body;
  EXPECT_EQ(*keystone->Token(), "t1");
  EXPECT_EQ(*keystone->Token(), "t1");  // valid for an hour: kept

  GlanceOptions options;
  options.endpoint = server.url();
  GlanceCatalog catalog(http, keystone, options);
  auto snap = catalog.Refresh();
  ASSERT_TRUE(snap.ok()) << snap.status().ToString();
  auto src = catalog.OpenData(*(*snap)->Find(FakeGlance::Id(0)));
  // Keystone rotates (the token is revoked): the next read gets a 401, renews, and goes on.
  ++issued;
  std::string got(4096, '\0');
  ASSERT_TRUE((*src)->ReadAt(0, got.size(), got.data()).ok());
  EXPECT_TRUE(got == glance.data.substr(0, 4096));
  EXPECT_EQ(*keystone->Token(), "t3");  // renewed once, by the 401

  // A short-lived token is kept for three quarters of its life, not renewed per request...
  lifetime_s = 60;
  keystone->Invalidate("t3");
  EXPECT_EQ(*keystone->Token(), "t4");
  EXPECT_EQ(*keystone->Token(), "t4");
  // ...and renewed before it expires.
  lifetime_s = 2;
  keystone->Invalidate("t4");
  EXPECT_EQ(*keystone->Token(), "t5");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  EXPECT_EQ(*keystone->Token(), "t6");  // within its last quarter (1 s): renewed

  // A reload's rotated password is used from the next authentication on; the token in hand
  // stays. Another endpoint needs a remount.
  lifetime_s = 3600;
  KeystoneCredentials rotated = creds;
  rotated.password = "rotated-pass";
  ASSERT_TRUE(keystone->UpdateCredentials(rotated).ok());
  EXPECT_EQ(last_body.find("rotated-pass"), std::string::npos);
  keystone->Invalidate("t6");
  EXPECT_EQ(*keystone->Token(), "t7");
  EXPECT_NE(last_body.find(R"("password":"rotated-pass")"), std::string::npos) << last_body;
  KeystoneCredentials moved = rotated;
  moved.auth_url = "http://elsewhere:5000/v3";
  EXPECT_EQ(keystone->UpdateCredentials(moved).code(), Status::Code::kInvalidArgument);
}

// Barbican as castellan keeps Glance's certificates: the payload with the mount's token, once.
TEST(BarbicanTest, CertificatesAreFetchedOnceWithTheTokenAndErrorsAreNamed) {
  std::atomic<int> requests{0};
  std::string accepted_token = "t1";
  TestHttpServer server([&](const HttpRequest& r) {
    ++requests;
    HttpAnswer a;
    auto token = r.headers.find("x-auth-token");
    auto accept = r.headers.find("accept");
    if (token == r.headers.end() || token->second != accepted_token) {
      a.status = 401;
      return a;
    }
    if (accept == r.headers.end() || accept->second != "application/octet-stream") {
      a.status = 406;
      return a;
    }
    if (r.target == "/v1/secrets/c0ffee-1/payload") {
      a.body = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    } else if (r.target == "/v1/secrets/forbidden/payload") {
      a.status = 403;
    } else {
      a.status = 404;
    }
    return a;
  });
  struct Tokens : TokenSource {
    std::string current = "t0";
    int invalidated = 0;
    Result<std::string> Token() override { return current; }
    void Invalidate(const std::string&) override {
      ++invalidated;
      current = "t1";
    }
  };
  auto tokens = std::make_shared<Tokens>();
  auto http = std::shared_ptr<HttpClient>(NewCurlHttpClient(HttpOptions()));
  const std::string url = server.url();
  BarbicanCertificateStore store(http, tokens, [&]() -> Result<std::string> { return url; });
  auto cert = store.Get("c0ffee-1");  // t0 is refused (401): renewed once, then served
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  EXPECT_EQ(cert->rfind("-----BEGIN CERTIFICATE-----", 0), 0u);
  EXPECT_EQ(tokens->invalidated, 1);
  int before = requests;
  EXPECT_TRUE(store.Get("c0ffee-1").ok());
  EXPECT_EQ(requests, before);  // kept
  EXPECT_TRUE(store.Get("missing").status().IsNotFound());
  EXPECT_EQ(store.Get("forbidden").status().code(), Status::Code::kPermissionDenied);
  EXPECT_EQ(store.Get("../v2/images").status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(requests, before + 2);  // the bad uuid never made a request
  // Barbican gone: what was fetched is still there; the rest is Unavailable, quickly.
  BarbicanCertificateStore down(http, tokens, [] { return Result<std::string>("http://127.0.0.1:1"); });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(down.Get("c0ffee-1").status().code(), Status::Code::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
}

}  // namespace
}  // namespace glancefs::backends
