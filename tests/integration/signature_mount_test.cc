// Image signatures through a mount of a local catalog: certificates from -o cert_dir, the
// verdict xattr, -o require_signature and -o trusted_certs (the real Glance and Barbican:
// signature_real_test.cc).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <map>
#include <nlohmann/json.hpp>

#include "tests/integration/mount_fixture.h"

namespace glancefs::itest {
namespace {

// Signed images (the four img_signature* properties, signed as the Red Hat guide signs them)
// are checked in the pass that verifies them, with certificates from -o cert_dir: verified,
// invalid (a signature of other bytes), unverifiable (no such certificate) and unsigned; the
// verdict survives a remount, an edited property is checked again without a second download,
// and a pre-fetch reads each image once.
TEST_F(MountTest, SignaturesAreCheckedWithCertDirCertificates) {
  const std::string certs = work_ + "/certs", keys = work_ + "/keys";
  fs::create_directory(certs);
  fs::create_directory(keys);
  MustSh("openssl req -x509 -newkey rsa:2048 -nodes -keyout " + keys + "/rsa.key -out " + certs +
         "/cert-rsa.pem -days 30 -subj /CN=signer >/dev/null 2>&1");
  auto sign = [&](const std::string& file) {
    MustSh("openssl dgst -sha256 -sign " + keys + "/rsa.key -sigopt rsa_padding_mode:pss "
           "-sigopt rsa_pss_saltlen:max -sigopt rsa_mgf1_md:sha256 -out " + work_ + "/sig " + file);
    std::string b64 = MustSh("base64 -w0 " + work_ + "/sig");
    return b64;
  };
  auto props = [](const std::string& signature, const std::string& uuid) {
    return "--property img_signature=" + signature +
           " --property img_signature_hash_method=SHA-256 --property "
           "img_signature_key_type=RSA-PSS --property img_signature_certificate_uuid=" + uuid;
  };
  std::string good_file = MakeRaw("good.raw"), other = MakeRaw("other.raw");
  std::map<std::string, std::string> ids = {
      {"good", AddImage(catalog_, good_file, "--name good " + props(sign(good_file), "cert-rsa"))},
      {"wrong", AddImage(catalog_, MakeRaw("wrong.raw"), "--name wrong " + props(sign(other), "cert-rsa"))},
      {"nocert", AddImage(catalog_, MakeRaw("nocert.raw"),
                          "--name nocert " + props(sign(other), "cert-missing"))},
      {"plain", AddImage(catalog_, MakeRaw("plain.raw"), "--name plain")},
  };
  const std::string cache = work_ + "/cache";
  auto signature = [&](const Mount& m, const std::string& name) {
    return MustSh("getfattr --absolute-names --only-values -n user.glancefs.signature " + m.path() +
                  "/images/" + ids[name]);
  };
  {
    Mount m("dir:" + catalog_, "-o refresh=1,cert_dir=" + certs + ",cache_dir=" + cache);
    ASSERT_TRUE(m.mounted());
    EXPECT_EQ(signature(m, "plain"), "unsigned");
    EXPECT_EQ(signature(m, "good").rfind("not checked yet", 0), 0u) << signature(m, "good");
    for (const auto& [name, id] : ids) MustSh("touch " + m.path() + "/queue/" + id);
    ASSERT_TRUE(Eventually("test -z \"$(ls " + m.path() + "/queue)\"", 30)) << m.Log();
    EXPECT_EQ(signature(m, "good"), "verified");
    EXPECT_EQ(signature(m, "wrong"),
              "invalid: the SHA-256 signature does not match the image's bytes");
    EXPECT_EQ(signature(m, "nocert"),
              "unverifiable: certificate cert-missing is not in cert_dir " + certs);
    EXPECT_EQ(signature(m, "plain"), "unsigned");
    // One pass: the pre-fetch read each image once, and the cache verified its hash too.
    for (const auto& [name, id] : ids) {
      EXPECT_EQ(MustSh("getfattr --absolute-names --only-values -n user.glancefs.bytes_fetched " +
                       m.path() + "/cache/" + id),
                std::to_string(24 << 20)) << name;
      EXPECT_EQ(MustSh("getfattr --absolute-names --only-values -n user.glancefs.cache_state " +
                       m.path() + "/images/" + id),
                "verified") << name;
    }
    std::string metrics = MustSh("cat " + m.path() + "/metrics.prom");
    EXPECT_NE(metrics.find("glancefs_signature_checks_total{verdict=\"verified\"} 1\n"),
              std::string::npos) << metrics;
    EXPECT_NE(metrics.find("glancefs_signature_checks_total{verdict=\"invalid\"} 1\n"),
              std::string::npos);
    EXPECT_NE(metrics.find("glancefs_signature_checks_total{verdict=\"unverifiable\"} 1\n"),
              std::string::npos);
    EXPECT_NE(m.Log().find("image " + ids["wrong"] + ": signature invalid"), std::string::npos)
        << m.Log();
    EXPECT_EQ(m.Unmount(), 0) << m.Log();
  }
  // The verdicts are kept with the cache. Then the good image's signature property is edited
  // (Glance allows it after upload): checked again from the cached bytes, no download.
  Mount m("dir:" + catalog_, "-o refresh=1,cert_dir=" + certs + ",cache_dir=" + cache);
  ASSERT_TRUE(m.mounted());
  EXPECT_EQ(signature(m, "good"), "verified");
  EXPECT_EQ(signature(m, "wrong").rfind("invalid: ", 0), 0u);
  MustSh("/usr/bin/python3 -c \"import json,sys; p=sys.argv[1]; r=json.load(open(p)); "
         "r['img_signature']=sys.argv[2]; json.dump(r, open(p+'.tmp','w'))\" " + catalog_ + "/" +
         ids["good"] + ".json " + sign(other) + " && mv " + catalog_ + "/" + ids["good"] +
         ".json.tmp " + catalog_ + "/" + ids["good"] + ".json");
  EXPECT_TRUE(Eventually("getfattr --absolute-names --only-values -n user.glancefs.signature " +
                             m.path() + "/images/" + ids["good"] + " | grep -q '^invalid: '",
                         30))
      << signature(m, "good") << m.Log();
  EXPECT_EQ(MustSh("getfattr --absolute-names --only-values -n user.glancefs.bytes_fetched " +
                   m.path() + "/cache/" + ids["good"]),
            "0");  // this mount fetched nothing: the check read the cache
  MustSh("cmp " + m.path() + "/images/" + ids["good"] + "/disk.raw " + good_file);
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
  // A verdict belongs to the policy it was reached under: the same cache mounted with
  // trusted_certs checks the stored verdicts again (this self-signed certificate is no CA).
  WriteFile(work_ + "/trusted", "cert-rsa\n");
  Mount strict("dir:" + catalog_, "-o refresh=1,cert_dir=" + certs + ",cache_dir=" + cache +
                                      ",trusted_certs=" + work_ + "/trusted");
  ASSERT_TRUE(strict.mounted());
  EXPECT_TRUE(Eventually("getfattr --absolute-names --only-values -n user.glancefs.signature " +
                             strict.path() + "/images/" + ids["wrong"] +
                             " | grep -q '^invalid: certificate cert-rsa: no trusted'",
                         30))
      << signature(strict, "wrong") << strict.Log();
  EXPECT_EQ(strict.Unmount(), 0) << strict.Log();
}

// -o require_signature: an image's data is served only once its signature is verified; the
// open fetches and checks it first. Unsigned, invalid (other bytes signed; bytes changed in the
// store) and unverifiable images answer EACCES and serve no byte; a certificate that arrives
// later is asked for again.
TEST_F(MountTest, RequireSignatureServesOnlyVerifiedImages) {
  const std::string certs = work_ + "/certs", keys = work_ + "/keys";
  fs::create_directory(certs);
  fs::create_directory(keys);
  MustSh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes -keyout " +
         keys + "/ec.key -out " + keys + "/ec.pem -days 30 -subj /CN=signer >/dev/null 2>&1");
  MustSh("cp " + keys + "/ec.pem " + certs + "/cert-ec.pem");
  auto props = [&](const std::string& file, const std::string& uuid) {
    MustSh("openssl dgst -sha512 -sign " + keys + "/ec.key -out " + work_ + "/sig " + file);
    return "--property img_signature=" + MustSh("base64 -w0 " + work_ + "/sig") +
           " --property img_signature_hash_method=SHA-512 --property "
           "img_signature_key_type=ECC_SECP384R1 --property img_signature_certificate_uuid=" + uuid;
  };
  std::string good = MakeRaw("good.raw"), other = MakeRaw("other.raw"), store = MakeRaw("s.raw");
  std::map<std::string, std::string> ids = {
      {"good", AddImage(catalog_, good, "--name good " + props(good, "cert-ec"))},
      {"wrong", AddImage(catalog_, MakeRaw("wrong.raw"), "--name wrong " + props(other, "cert-ec"))},
      {"store", AddImage(catalog_, store, "--name store " + props(store, "cert-ec"))},
      {"later", AddImage(catalog_, MakeRaw("later.raw"), "--name later " + props(other, "cert-later"))},
      {"plain", AddImage(catalog_, MakeRaw("plain.raw"), "--name plain")},
  };
  // The "store" image's bytes change after upload, where the catalog keeps them.
  MustSh("printf 'EVIL' | dd of=" + catalog_ + "/" + ids["store"] +
         " bs=1 seek=1000 conv=notrunc status=none");
  Mount m("dir:" + catalog_, "-o refresh=1,require_signature,cert_dir=" + certs);
  ASSERT_TRUE(m.mounted());
  auto read = [&](const std::string& name) {
    const std::string out = work_ + "/out-" + name;
    CmdResult r = Sh("cat " + m.path() + "/images/" + ids[name] + "/disk.raw > " + out, 120);
    return std::make_pair(r, fs::file_size(out));
  };
  auto [ok, ok_bytes] = read("good");
  EXPECT_EQ(ok.status, 0) << ok.out << m.Log();
  MustSh("cmp " + work_ + "/out-good " + good);
  for (const char* name : {"wrong", "store", "later", "plain"}) {
    auto [r, bytes] = read(name);
    EXPECT_NE(r.status, 0) << name;
    EXPECT_NE(r.out.find("Permission denied"), std::string::npos) << name << r.out << m.Log();
    EXPECT_EQ(bytes, 0u) << name << ": bytes of a refused image were served";
  }
  auto signature = [&](const std::string& name) {
    return MustSh("getfattr --absolute-names --only-values -n user.glancefs.signature " + m.path() +
                  "/images/" + ids[name]);
  };
  EXPECT_EQ(signature("good"), "verified");
  EXPECT_EQ(signature("wrong").rfind("invalid: ", 0), 0u) << signature("wrong");
  EXPECT_EQ(signature("store").rfind("invalid: ", 0), 0u) << signature("store");
  EXPECT_EQ(signature("later").rfind("unverifiable: ", 0), 0u) << signature("later");
  EXPECT_EQ(signature("plain"), "unsigned");
  EXPECT_NE(m.Log().find("image " + ids["plain"] + " is unsigned: not served (require_signature)"),
            std::string::npos) << m.Log();
  EXPECT_NE(m.Log().find("image " + ids["wrong"] + ": signature invalid"), std::string::npos);
  // Bytes evicted after the check are never fetched again behind an open file: its reads fail;
  // a new open checks the image again.
  {
    const std::string path = m.path() + "/images/" + ids["good"] + "/disk.raw";
    int fd = ::open(path.c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    MustSh("rm " + m.path() + "/cache/" + ids["good"]);
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);  // what the kernel kept was checked; drop it
    char buf[65536];
    EXPECT_LT(::pread(fd, buf, sizeof buf, 8 << 20), 0);
    EXPECT_EQ(errno, EACCES);
    ::close(fd);
    EXPECT_EQ(Sh("cmp " + path + " " + good).status, 0) << m.Log();
    EXPECT_EQ(signature("good"), "verified");
  }
  // metadata.json stays readable; the certificate arrives and the image is asked for again.
  MustSh("cat " + m.path() + "/images/" + ids["wrong"] + "/metadata.json > /dev/null");
  MustSh("cp " + keys + "/ec.pem " + certs + "/cert-later.pem");
  auto [again, again_bytes] = read("later");
  EXPECT_NE(again.out.find("Permission denied"), std::string::npos);  // other bytes were signed
  EXPECT_EQ(signature("later").rfind("invalid: ", 0), 0u) << signature("later");
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
  // Without the cache there is nothing to check with: refused at once.
  CmdResult r = Sh(std::string(GLANCEFS_BIN) + " dir:" + catalog_ + " " + work_ +
                   " -f -o require_signature,nocache");
  EXPECT_NE(r.out.find("require_signature needs the cache"), std::string::npos) << r.out;
}

// -o trusted_certs: a signing certificate must chain to a listed CA, as Nova checks it.
TEST_F(MountTest, TrustedCertsValidateTheSigningCertificate) {
  const std::string certs = work_ + "/certs", k = work_ + "/keys";
  fs::create_directory(certs);
  fs::create_directory(k);
  const std::string ec = "ec -pkeyopt ec_paramgen_curve:prime256v1";
  MustSh("cd " + k + " && openssl req -x509 -newkey " + ec + " -nodes -keyout ca.key -out ca.pem "
         "-days 30 -subj /CN=ca -addext basicConstraints=critical,CA:TRUE,pathlen:0 -addext "
         "keyUsage=critical,keyCertSign >/dev/null 2>&1 && openssl req -newkey " + ec +
         " -nodes -keyout leaf.key -out leaf.csr -subj /CN=leaf >/dev/null 2>&1 && openssl x509 "
         "-req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 -out leaf.pem "
         ">/dev/null 2>&1 && openssl req -x509 -newkey " + ec + " -nodes -keyout rogue.key -out "
         "rogue.pem -days 30 -subj /CN=rogue >/dev/null 2>&1");
  for (const char* c : {"ca", "leaf", "rogue"}) {
    MustSh("cp " + k + "/" + c + ".pem " + certs + "/cert-" + c + ".pem");
  }
  WriteFile(work_ + "/trusted", "# the CA of our image builders\ncert-ca\n");
  auto add = [&](const std::string& name, const std::string& key) {
    std::string file = MakeRaw(name + ".raw");
    MustSh("openssl dgst -sha256 -sign " + k + "/" + key + ".key -out " + work_ + "/sig " + file);
    return AddImage(catalog_, file,
                    "--name " + name + " --property img_signature=" +
                        MustSh("base64 -w0 " + work_ + "/sig") +
                        " --property img_signature_hash_method=SHA-256 --property "
                        "img_signature_key_type=ECC_SECP384R1 --property "
                        "img_signature_certificate_uuid=cert-" + key);
  };
  std::string good = add("good", "leaf"), rogue = add("rogue", "rogue");
  Mount m("dir:" + catalog_, "-o refresh=1,require_signature,cert_dir=" + certs +
                                 ",trusted_certs=" + work_ + "/trusted");
  ASSERT_TRUE(m.mounted());
  EXPECT_EQ(Sh("cat " + m.path() + "/images/" + good + "/disk.raw > /dev/null").status, 0) << m.Log();
  CmdResult r = Sh("cat " + m.path() + "/images/" + rogue + "/disk.raw > /dev/null");
  EXPECT_NE(r.out.find("Permission denied"), std::string::npos) << r.out;
  EXPECT_EQ(MustSh("getfattr --absolute-names --only-values -n user.glancefs.signature " +
                   m.path() + "/images/" + rogue),
            "invalid: certificate cert-rogue: no trusted certificate issued the signing "
            "certificate (the chain must end in a trusted self-signed CA)");
  EXPECT_EQ(m.Unmount(), 0) << m.Log();
  CmdResult bad = Sh(std::string(GLANCEFS_BIN) + " dir:" + catalog_ + " " + work_ +
                     " -f -o trusted_certs=" + work_ + "/trusted");
  EXPECT_NE(bad.out.find("trusted_certs needs a certificate source"), std::string::npos) << bad.out;
}

}  // namespace
}  // namespace glancefs::itest
