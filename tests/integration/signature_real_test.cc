// Image signatures end to end, everything real (issue 14): Keystone and a Glance that verifies
// signatures at upload through castellan (tests/fixtures/glance --auth keystone --barbican), a
// Barbican holding the certificates (tests/fixtures/barbican), images signed as the Red Hat
// guide signs them, and `glancefs keystone` fetching the certificates from Barbican with the
// mount's token. One test: the three servers start once (about 30 s).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>

#include "tests/integration/harness.h"

namespace glancefs::itest {
namespace {

const std::string kFixtures = std::string(GLANCEFS_SOURCE_DIR) + "/tests/fixtures";
const std::string kCursive = std::string(GLANCEFS_SOURCE_DIR) + "/tests/tools/cursive_verify.py";

struct Signed {
  std::string id, file, cert, key_type, hash, signature;
};

class SignatureRealTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = MakeTempDir("glancefs-sig");
    glance_state_ = MakeTempDir("glancefs-sig-glance");
    barbican_state_ = MakeTempDir("glancefs-sig-barbican");
    CmdResult up = Sh(kFixtures + "/glance/glance-up.sh --auth keystone --barbican --port " +
                          std::to_string(FreePort()) + " --keystone-port " +
                          std::to_string(FreePort()) + " " + glance_state_ + " 2>" + work_ +
                          "/glance-up.log",
                      900);
    ASSERT_EQ(up.status, 0) << "Keystone and Glance did not start:\n"
                            << ReadFile(work_ + "/glance-up.log");
    env_ = ParseExports(up.out);
    for (const auto& [k, v] : env_) ::setenv(k.c_str(), v.c_str(), 1);
    CmdResult b = Sh(kFixtures + "/barbican/barbican-up.sh --port " + std::to_string(FreePort()) +
                         " " + barbican_state_ + " 2>" + work_ + "/barbican-up.log",
                     600);
    ASSERT_EQ(b.status, 0) << "Barbican did not start:\n" << ReadFile(work_ + "/barbican-up.log");
    for (const auto& [k, v] : ParseExports(b.out)) env_[k] = v;
    ASSERT_FALSE(env_["BARBICAN_URL"].empty()) << b.out;
    token_ = DemoToken();
    ASSERT_FALSE(token_.empty());
  }
  void TearDown() override {
    Sh(kFixtures + "/barbican/barbican-down.sh --purge " + barbican_state_, 120);
    Sh(kFixtures + "/glance/glance-down.sh --purge " + glance_state_, 120);
  }

  // A token of the demo user (Barbican's creator role in project demo), as curl gets one.
  std::string DemoToken() {
    std::string body =
        R"({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": ")" +
        env_["OS_USERNAME"] + R"(", "domain": {"name": "Default"}, "password": ")" +
        env_["OS_PASSWORD"] + R"("}}}, "scope": {"project": {"name": ")" +
        env_["OS_PROJECT_NAME"] + R"(", "domain": {"name": "Default"}}}}})";
    return MustSh("curl -sS -D - -o /dev/null -H 'Content-Type: application/json' -d " +
                  Quote(body) + " " + env_["OS_AUTH_URL"] +
                  "/auth/tokens | sed -n 's/^[Xx]-[Ss]ubject-[Tt]oken: //p' | tr -d '\\r\\n'");
  }
  std::string Auth() const { return " -H " + Quote("X-Auth-Token: " + token_) + " "; }

  // The certificate's PEM bytes stored in Barbican as Glance needs them (octet-stream, base64).
  std::string StoreCertificate(const std::string& pem) {
    nlohmann::json body = {{"name", "glancefs-test"},
                           {"secret_type", "certificate"},
                           {"algorithm", "RSA"},
                           {"payload", MustSh("base64 -w0 " + pem)},
                           {"payload_content_type", "application/octet-stream"},
                           {"payload_content_encoding", "base64"}};
    auto answer = nlohmann::json::parse(
        MustSh("curl -sS --fail-with-body" + Auth() + "-H 'Content-Type: application/json' -d " +
               Quote(body.dump()) + " " + env_["BARBICAN_URL"] + "/v1/secrets"));
    std::string ref = answer["secret_ref"];
    return ref.substr(ref.rfind('/') + 1);
  }

  // Uploads `file` with `properties`; Glance verifies a signature on upload.
  std::string Upload(const std::string& name, const std::string& file,
                     const std::map<std::string, std::string>& properties) {
    nlohmann::json body = {{"name", name}, {"disk_format", "raw"}, {"container_format", "bare"}};
    for (const auto& [k, v] : properties) body[k] = v;
    std::string id = nlohmann::json::parse(MustSh(
        "curl -sS --fail-with-body" + Auth() + "-X POST -H 'Content-Type: application/json' -d " +
        Quote(body.dump()) + " " + env_["GLANCE_URL"] + "/v2/images"))["id"];
    MustSh("curl -sS --fail-with-body" + Auth() +
           "-X PUT -H 'Content-Type: application/octet-stream' -T " + file + " " +
           env_["GLANCE_URL"] + "/v2/images/" + id + "/file");
    return id;
  }

  // A key and certificate for `newkey` (openssl req -newkey's argument), kept in work_.
  std::string MakeCert(const std::string& name, const std::string& newkey) {
    std::string base = work_ + "/" + name;
    if (!std::filesystem::exists(base + ".pem")) {
      MustSh("openssl req -x509 -newkey " + newkey + " -nodes -keyout " + base + ".key -out " +
             base + ".pem -days 30 -subj /CN=" + name + " >/dev/null 2>&1");
    }
    return base;
  }

  Signed SignAndUpload(const std::string& name, const std::string& base, const std::string& uuid,
                       const std::string& key_type, const std::string& hash) {
    Signed s;
    s.file = work_ + "/" + name + ".raw";
    s.cert = base + ".pem";
    s.key_type = key_type;
    s.hash = hash;
    MustSh("head -c 3M /dev/urandom > " + s.file);
    std::string md = hash.substr(0, 3) + hash.substr(4);  // SHA-256 -> SHA256
    std::string opts = key_type == "RSA-PSS" ? " -sigopt rsa_padding_mode:pss -sigopt "
                                               "rsa_pss_saltlen:max -sigopt rsa_mgf1_md:" + md
                                             : "";
    MustSh("openssl dgst -" + md + " -sign " + base + ".key" + opts + " -out " + work_ + "/sig " +
           s.file);
    s.signature = MustSh("base64 -w0 " + work_ + "/sig");
    s.id = Upload(name, s.file,
                  {{"img_signature", s.signature},
                   {"img_signature_hash_method", hash},
                   {"img_signature_key_type", key_type},
                   {"img_signature_certificate_uuid", uuid}});
    return s;
  }

  std::string work_, glance_state_, barbican_state_, token_;
  std::map<std::string, std::string> env_;
};

std::string Xattr(const std::string& path, const std::string& name) {
  return Sh("getfattr --absolute-names --only-values -n " + name + " " + path).out;
}

// The oracle's verdict: python3-cursive on the same certificate and bytes.
std::string Cursive(const std::string& cert, const std::string& key_type, const std::string& hash,
                    const std::string& signature, const std::string& file) {
  std::string out = Sh("/usr/bin/python3 " + kCursive + " " + cert + " " + key_type + " " + hash +
                       " " + signature + " " + file).out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST_F(SignatureRealTest, ImagesSignedInGlanceAreVerifiedWithBarbicanCertificates) {
  MustSh("openssl genpkey -genparam -algorithm DSA -pkeyopt dsa_paramgen_bits:2048 -pkeyopt "
         "dsa_paramgen_q_bits:256 -out " + work_ + "/dsa.param");
  struct Case {
    std::string key_type, hash, cert_name, newkey;
  } cases[] = {
      {"RSA-PSS", "SHA-224", "rsa", "rsa:2048"},
      {"RSA-PSS", "SHA-256", "rsa", "rsa:2048"},
      {"RSA-PSS", "SHA-384", "rsa", "rsa:2048"},
      {"RSA-PSS", "SHA-512", "rsa", "rsa:2048"},
      {"ECC_SECP384R1", "SHA-512", "p384", "ec -pkeyopt ec_paramgen_curve:secp384r1"},
      {"ECC_SECP521R1", "SHA-256", "p521", "ec -pkeyopt ec_paramgen_curve:secp521r1"},
      {"DSA", "SHA-256", "dsa", "param:" + work_ + "/dsa.param"},
  };
  std::map<std::string, std::string> uuids;  // by certificate name
  std::vector<Signed> good;
  for (const Case& c : cases) {
    std::string base = MakeCert(c.cert_name, c.newkey);
    if (!uuids.count(c.cert_name)) uuids[c.cert_name] = StoreCertificate(base + ".pem");
    good.push_back(SignAndUpload(c.key_type + "-" + c.hash, base, uuids[c.cert_name], c.key_type,
                                 c.hash));
  }
  // Changed in Glance's store after upload; unsigned; signed with a certificate the mount has
  // not fetched when Barbican stops; signed with one it has.
  Signed tampered = SignAndUpload("tampered", MakeCert("rsa", ""), uuids["rsa"], "RSA-PSS", "SHA-256");
  MustSh("printf EVIL | dd of=" + glance_state_ + "/images/" + tampered.id +
         " bs=1 seek=4096 conv=notrunc status=none");
  MustSh("head -c 1M /dev/urandom > " + work_ + "/plain.raw");
  std::string unsigned_id = Upload("unsigned", work_ + "/plain.raw", {});
  std::string late_base = MakeCert("late", "ec -pkeyopt ec_paramgen_curve:secp384r1");
  Signed late = SignAndUpload("late", late_base, StoreCertificate(late_base + ".pem"),
                              "ECC_SECP384R1", "SHA-384");
  Signed cached_cert = SignAndUpload("cached-cert", MakeCert("rsa", ""), uuids["rsa"], "RSA-PSS",
                                     "SHA-384");

  Mount m("keystone", "-o refresh=1,require_signature,cache_dir=" + work_ + "/cache");
  ASSERT_TRUE(m.mounted()) << m.Log();
  const std::string images = m.path() + "/images/";
  for (const Signed& s : good) {
    SCOPED_TRACE(s.key_type + " " + s.hash);
    // The open waits while the image is fetched whole and checked; then it reads as Glance's.
    EXPECT_EQ(Sh("cmp " + images + s.id + "/disk.raw " + s.file, 120).status, 0) << m.Log();
    std::string ours = Xattr(images + s.id, "user.glancefs.signature");
    std::string theirs = Cursive(s.cert, s.key_type, s.hash, s.signature, s.file);
    EXPECT_EQ(ours, "verified");
    EXPECT_EQ(theirs, ours) << "cursive and glancefs disagree";
    // One pass: the bytes fetched are the image's size.
    EXPECT_EQ(Xattr(m.path() + "/cache/" + s.id, "user.glancefs.bytes_fetched"),
              std::to_string(3 << 20));
  }
  // Tampered in the store: invalid, and no byte of it is served.
  CmdResult t = Sh("cat " + images + tampered.id + "/disk.raw > " + work_ + "/out", 120);
  EXPECT_NE(t.out.find("Permission denied"), std::string::npos) << t.out;
  EXPECT_EQ(std::filesystem::file_size(work_ + "/out"), 0u);
  EXPECT_EQ(Xattr(images + tampered.id, "user.glancefs.signature"),
            "invalid: the SHA-256 signature does not match the image's bytes");
  EXPECT_EQ(Cursive(tampered.cert, "RSA-PSS", "SHA-256", tampered.signature,
                    glance_state_ + "/images/" + tampered.id),
            "invalid: InvalidSignature");
  CmdResult u = Sh("cat " + images + unsigned_id + "/disk.raw > /dev/null", 60);
  EXPECT_NE(u.out.find("Permission denied"), std::string::npos) << u.out;
  EXPECT_NE(m.Log().find("image " + unsigned_id + " is unsigned"), std::string::npos);

  // Barbican stops: a certificate the mount holds still serves; one it never fetched makes the
  // image unverifiable, refused in bounded time.
  MustSh(kFixtures + "/barbican/barbican-down.sh " + barbican_state_, 120);
  EXPECT_EQ(Sh("cmp " + images + cached_cert.id + "/disk.raw " + cached_cert.file, 120).status, 0)
      << m.Log();
  EXPECT_EQ(Xattr(images + cached_cert.id, "user.glancefs.signature"), "verified");
  auto t0 = std::chrono::steady_clock::now();
  CmdResult l = Sh("cat " + images + late.id + "/disk.raw > /dev/null", 120);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(l.out.find("Permission denied"), std::string::npos) << l.out << m.Log();
  EXPECT_LT(secs, 30.0);
  EXPECT_EQ(Xattr(images + late.id, "user.glancefs.signature").rfind("unverifiable: ", 0), 0u)
      << Xattr(images + late.id, "user.glancefs.signature") << m.Log();
  std::string metrics = MustSh("cat " + m.path() + "/metrics.prom");
  EXPECT_NE(metrics.find("glancefs_signature_checks_total{verdict=\"verified\"} 8\n"),
            std::string::npos) << metrics;
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
}

}  // namespace
}  // namespace glancefs::itest
