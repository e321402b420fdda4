// SignatureCheck against its oracles: keys, certificates and signatures made by the openssl
// command line as the Red Hat guide and ../shared/barbican/RECIPE.md sign images, and every
// verdict compared with python3-cursive's (tests/tools/cursive_verify.py), the library Nova
// verifies with.
#include "cache/signature.h"

#include "cache/certificate_check.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace glancefs::cache {
namespace {

namespace fs = std::filesystem;

std::string Shell(const std::string& cmd, int* status = nullptr) {
  std::string out;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!p) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int rc = ::pclose(p);
  if (status) *status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class SignatureTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(fs::temp_directory_path() / ("glancefs-sig-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    Must("head -c 1048577 /dev/urandom > " + *dir_ + "/image");
    Must("cp " + *dir_ + "/image " + *dir_ + "/tampered && printf x | dd of=" + *dir_ +
         "/tampered bs=1 seek=700000 conv=notrunc status=none");
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static void Must(const std::string& cmd) {
    int status;
    std::string out = Shell(cmd, &status);
    ASSERT_EQ(status, 0) << cmd << "\n" << out;
  }
  // A self-signed certificate (and its key) for `newkey` (openssl req -newkey's argument).
  static std::string MakeCert(const std::string& name, const std::string& newkey) {
    std::string base = *dir_ + "/" + name;
    if (!fs::exists(base + ".crt")) {
      Must("openssl req -x509 -newkey " + newkey + " -nodes -keyout " + base + ".key -out " +
           base + ".crt -days 30 -subj /CN=" + name + " >/dev/null");
    }
    return base;
  }
  // base64 of `openssl dgst -<hash> -sign` over `file`, with `sigopts` (-sigopt ...).
  static std::string Sign(const std::string& base, const std::string& hash,
                          const std::string& sigopts, const std::string& file) {
    Must("openssl dgst -" + hash + " -sign " + base + ".key " + sigopts + " -out " + *dir_ +
         "/sig " + *dir_ + "/" + file);
    return Shell("base64 -w0 " + *dir_ + "/sig");
  }
  // Ours, in words like the oracle's: "verified", "invalid" or "error".
  static std::string Ours(const std::string& base, const SignatureSpec& spec,
                          const std::string& file) {
    auto check = SignatureCheck::Start(spec, ReadAll(base + ".crt"));
    if (!check.ok()) {
      return "error";  // cursive raises before reading: SignatureVerificationError
    }
    std::string data = ReadAll(*dir_ + "/" + file);
    // Odd-sized pieces: the result must not depend on how the bytes arrive.
    for (size_t off = 0; off < data.size(); off += 77777) {
      (*check)->Update(data.data() + off, std::min<size_t>(77777, data.size() - off));
    }
    Status s = (*check)->Finish();
    return s.ok() ? "verified" : "invalid";
  }
  static std::string Cursive(const std::string& base, const SignatureSpec& spec,
                             const std::string& file) {
    const char* script = GLANCEFS_SOURCE_DIR "/tests/tools/cursive_verify.py";
    std::string out = Shell(std::string("/usr/bin/python3 ") + script + " " + base + ".crt '" +
                          spec.key_type + "' '" + spec.hash_method + "' '" + spec.signature +
                          "' " + *dir_ + "/" + file);
    return out.substr(0, out.find(':'));
  }
  static std::string* dir_;
};
std::string* SignatureTest::dir_ = nullptr;

TEST_F(SignatureTest, CursiveIsInstalled) {
  int status;
  std::string out = Shell("/usr/bin/python3 -c 'import cursive.signature_utils'", &status);
  ASSERT_EQ(status, 0) << "python3-cursive is missing (scripts/install-deps.sh installs it): " << out;
}

struct Case {
  std::string key_type, hash_method, newkey, sigopts;
};

TEST_F(SignatureTest, EveryKeyTypeAndHashAgreesWithCursive) {
  const std::string pss = "-sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:max -sigopt rsa_mgf1_md:";
  Must("test -e " + *dir_ + "/dsa.param || openssl genpkey -genparam -algorithm DSA -pkeyopt "
       "dsa_paramgen_bits:2048 -pkeyopt dsa_paramgen_q_bits:256 -out " + *dir_ + "/dsa.param");
  const Case cases[] = {
      {"RSA-PSS", "SHA-224", "rsa:2048", pss + "sha224"},
      {"RSA-PSS", "SHA-256", "rsa:2048", pss + "sha256"},
      {"RSA-PSS", "SHA-384", "rsa:2048", pss + "sha384"},
      {"RSA-PSS", "SHA-512", "rsa:2048", pss + "sha512"},
      {"ECC_SECP384R1", "SHA-512", "ec -pkeyopt ec_paramgen_curve:secp384r1", ""},
      {"ECC_SECP521R1", "SHA-256", "ec -pkeyopt ec_paramgen_curve:secp521r1", ""},
      {"DSA", "SHA-256", "param:" + *dir_ + "/dsa.param", ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.key_type + " " + c.hash_method);
    std::string key_name = c.key_type == "RSA-PSS" ? "rsa" : c.key_type;
    std::string base = MakeCert(key_name, c.newkey);
    std::string hash = c.hash_method.substr(0, 3) + c.hash_method.substr(4);  // SHA-256 -> SHA256
    for (char& ch : hash) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    SignatureSpec spec{Sign(base, hash, c.sigopts, "image"), c.hash_method, c.key_type, "uuid"};
    EXPECT_EQ(Ours(base, spec, "image"), "verified");
    EXPECT_EQ(Cursive(base, spec, "image"), "verified");
    EXPECT_EQ(Ours(base, spec, "tampered"), "invalid");
    EXPECT_EQ(Cursive(base, spec, "tampered"), "invalid");
  }
}

// What cursive refuses, glancefs refuses; what it accepts, glancefs accepts.
TEST_F(SignatureTest, EdgeCasesAgreeWithCursive) {
  std::string rsa = MakeCert("rsa", "rsa:2048");
  std::string p384 = MakeCert("ECC_SECP384R1", "ec -pkeyopt ec_paramgen_curve:secp384r1");
  const std::string pss = "-sigopt rsa_padding_mode:pss -sigopt rsa_mgf1_md:sha256 -sigopt rsa_pss_saltlen:";
  struct Edge {
    std::string what, base;
    SignatureSpec spec;
    std::string expected;
  } edges[] = {
      // OpenSSL >= 3.1's default salt (the digest's length): cursive wants the maximum.
      {"salt = digest length", rsa,
       {Sign(rsa, "sha256", pss + "digest", "image"), "SHA-256", "RSA-PSS", "u"}, "invalid"},
      {"salt 100", rsa, {Sign(rsa, "sha256", pss + "100", "image"), "SHA-256", "RSA-PSS", "u"},
       "invalid"},
      {"PKCS#1 v1.5, not PSS", rsa, {Sign(rsa, "sha256", "", "image"), "SHA-256", "RSA-PSS", "u"},
       "invalid"},
      {"hash method differs from the signing hash", rsa,
       {Sign(rsa, "sha256", pss + "max", "image"), "SHA-512", "RSA-PSS", "u"}, "invalid"},
      {"an EC key said to be RSA", p384,
       {Sign(p384, "sha256", "", "image"), "SHA-256", "RSA-PSS", "u"}, "error"},
      {"a P-384 key said to be P-521 (curves are not compared)", p384,
       {Sign(p384, "sha256", "", "image"), "SHA-256", "ECC_SECP521R1", "u"}, "verified"},
      {"SHA-1", rsa, {Sign(rsa, "sha1", pss + "max", "image"), "SHA-1", "RSA-PSS", "u"}, "error"},
      {"an unknown key type", rsa,
       {Sign(rsa, "sha256", pss + "max", "image"), "SHA-256", "RSA", "u"}, "error"},
  };
  for (const Edge& e : edges) {
    SCOPED_TRACE(e.what);
    EXPECT_EQ(Ours(e.base, e.spec, "image"), e.expected);
    EXPECT_EQ(Cursive(e.base, e.spec, "image"), e.expected);
  }
}

TEST_F(SignatureTest, WhyASignatureCannotBeCheckedIsSaid) {
  std::string rsa = MakeCert("rsa", "rsa:2048");
  std::string cert = ReadAll(rsa + ".crt");
  SignatureSpec good{"AAAA", "SHA-256", "RSA-PSS", "u"};
  SignatureSpec s = good;
  s.key_type = "";
  EXPECT_EQ(SignatureCheck::Start(s, cert).status().message(), "img_signature_key_type is missing");
  s = good;
  s.hash_method = "MD5";
  EXPECT_EQ(SignatureCheck::Start(s, cert).status().code(), Status::Code::kNotSupported);
  s = good;
  s.signature = "not base64!";
  EXPECT_EQ(SignatureCheck::Start(s, cert).status().message(), "img_signature is not base64");
  EXPECT_EQ(SignatureCheck::Start(good, "garbage").status().code(), Status::Code::kCorruption);
  // A DER certificate is read too.
  Must("openssl x509 -in " + rsa + ".crt -outform DER -out " + rsa + ".der");
  EXPECT_TRUE(SignatureCheck::Start(good, ReadAll(rsa + ".der")).ok());
  // Unsigned records have no spec; any of the four makes one.
  ImageRecord record;
  EXPECT_FALSE(SignatureSpecOf(record).has_value());
  record.properties["img_signature_hash_method"] = "SHA-256";
  ASSERT_TRUE(SignatureSpecOf(record).has_value());
  EXPECT_EQ(SignatureSpecOf(record)->hash_method, "SHA-256");
  EXPECT_NE(SignatureSpecOf(record)->Fingerprint(), good.Fingerprint());
}

// -o trusted_certs: every case of ../shared/barbican/RECIPE.md section 6 that cursive does not
// crash on, judged by ValidateCertificate and by cursive's verify_certificate.
TEST_F(SignatureTest, CertificateChainsAgreeWithCursive) {
  const std::string d = *dir_ + "/chain";
  fs::create_directories(d);
  const std::string ec = "ec -pkeyopt ec_paramgen_curve:prime256v1";
  auto ca = [&](const std::string& name, const std::string& pathlen) {
    Must("cd " + d + " && openssl req -x509 -newkey " + ec + " -nodes -keyout " + name +
         ".key -out " + name + ".pem -days 30 -subj /CN=" + name +
         " -addext basicConstraints=critical,CA:TRUE" + pathlen +
         " -addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1");
  };
  // `name` issued by `issuer`, valid for `days` (negative: expired), a CA with `pathlen` if set.
  auto issue = [&](const std::string& name, const std::string& issuer, int days,
                   const std::string& ca_pathlen) {
    std::string ext = ca_pathlen.empty() ? "" : " -extfile " + name + ".ext";
    if (!ca_pathlen.empty()) {
      Must("printf 'basicConstraints=critical,CA:TRUE" + ca_pathlen +
           "\\nkeyUsage=critical,keyCertSign\\n' > " + d + "/" + name + ".ext");
    }
    Must("cd " + d + " && openssl req -newkey " + ec + " -nodes -keyout " + name + ".key -out " +
         name + ".csr -subj /CN=" + name + " >/dev/null 2>&1 && openssl x509 -req -in " + name +
         ".csr -CA " + issuer + ".pem -CAkey " + issuer + ".key -CAcreateserial -days " +
         std::to_string(days) + ext + " -out " + name + ".pem >/dev/null 2>&1");
  };
  ca("ca", ",pathlen:0");
  ca("other", ",pathlen:0");
  ca("root1", ",pathlen:1");
  ca("root0", ",pathlen:0");
  issue("leaf", "ca", 30, "");
  issue("expired", "ca", -1, "");
  issue("int1", "root1", 30, ",pathlen:0");
  issue("int0", "root0", 30, ",pathlen:0");
  issue("leaf1", "int1", 30, "");
  issue("leaf0", "int0", 30, "");
  Must("cd " + d + " && openssl req -x509 -newkey " + ec + " -nodes -keyout selfsigned.key -out "
       "selfsigned.pem -days 30 -subj /CN=selfsigned >/dev/null 2>&1");  // CA:TRUE, no keyUsage
  struct Chain {
    std::string signing;
    std::vector<std::string> trusted;
    bool expected;
  } chains[] = {
      {"leaf", {"ca"}, true},
      {"leaf", {"other"}, false},
      {"leaf", {"leaf"}, false},
      {"leaf", {"other", "ca"}, true},
      {"selfsigned", {"selfsigned"}, false},
      {"ca", {"ca"}, true},
      {"expired", {"ca"}, false},
      {"leaf1", {"root1", "int1"}, true},
      {"leaf1", {"int1"}, false},
      {"leaf1", {"root1"}, false},
      {"leaf0", {"root0", "int0"}, false},
  };
  for (const Chain& c : chains) {
    std::string trusted_list, label = c.signing + " <- [";
    std::vector<std::pair<std::string, std::string>> trusted;
    for (const std::string& t : c.trusted) {
      trusted.emplace_back(t, ReadAll(d + "/" + t + ".pem"));
      trusted_list += " " + t + ".pem";
      label += " " + t;
    }
    SCOPED_TRACE(label + " ]");
    Status ours = ValidateCertificate(ReadAll(d + "/" + c.signing + ".pem"), trusted, ::time(nullptr));
    int status;
    std::string theirs = Shell("cd " + d + " && /usr/bin/python3 " GLANCEFS_SOURCE_DIR
                               "/tests/tools/cursive_chain.py " + c.signing + ".pem" + trusted_list,
                               &status);
    EXPECT_EQ(ours.ok(), c.expected) << ours.ToString();
    EXPECT_EQ(status == 0, c.expected) << theirs;
  }
}

}  // namespace
}  // namespace glancefs::cache
