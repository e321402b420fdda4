#include "cache/signature.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cctype>
#include <vector>

#include "cache/certificate_check.h"
#include "fs/base/hash.h"

namespace glancefs::cache {
namespace {

constexpr const char* kProperties[] = {"img_signature", "img_signature_hash_method",
                                       "img_signature_key_type",
                                       "img_signature_certificate_uuid"};

const EVP_MD* HashMethod(const std::string& name) {
  if (name == "SHA-224") return EVP_sha224();
  if (name == "SHA-256") return EVP_sha256();
  if (name == "SHA-384") return EVP_sha384();
  if (name == "SHA-512") return EVP_sha512();
  return nullptr;
}

// The OpenSSL key type a Glance key type needs; 0 for a key type Glance does not know.
int KeyTypeOf(const std::string& key_type) {
  if (key_type == "RSA-PSS") return EVP_PKEY_RSA;
  if (key_type == "DSA") return EVP_PKEY_DSA;
  for (const char* ecc : {"ECC_SECT571K1", "ECC_SECT409K1", "ECC_SECT571R1", "ECC_SECT409R1",
                          "ECC_SECP521R1", "ECC_SECP384R1"}) {
    if (key_type == ecc) return EVP_PKEY_EC;
  }
  return 0;
}

const char* KeyTypeName(int type) {
  switch (type) {
    case EVP_PKEY_RSA:
      return "RSA";
    case EVP_PKEY_DSA:
      return "DSA";
    case EVP_PKEY_EC:
      return "EC";
    default:
      return "another type";
  }
}

// Python's non-strict b64decode, as oslo's decode_as_bytes: characters outside the alphabet are
// dropped, then the rest must be whole quads with at most two '=' at the end.
Result<std::string> DecodeBase64(const std::string& text) {
  std::string clean;
  for (char c : text) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/' || c == '=') {
      clean.push_back(c);
    }
  }
  if (clean.empty() || clean.size() % 4 != 0) {
    return Status::InvalidArgument("img_signature is not base64");
  }
  size_t pad = 0;
  while (pad < 2 && clean[clean.size() - 1 - pad] == '=') ++pad;
  if (clean.find('=') < clean.size() - pad) {
    return Status::InvalidArgument("img_signature is not base64");
  }
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return Status::InvalidArgument("img_signature is not base64");
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}


}  // namespace

std::string SignatureSpec::Fingerprint() const {
  // SHA-256 of the length-prefixed values: no two different sets share one by accident or by
  // design (a record's author chooses the values).
  std::string all;
  for (const std::string* v : {&signature, &hash_method, &key_type, &certificate_uuid}) {
    all += std::to_string(v->size()) + ":" + *v;
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(all.data(), all.size(), md, &len, EVP_sha256(), nullptr);
  return HexOf(md, len);
}

std::optional<SignatureSpec> SignatureSpecOf(const ImageRecord& record) {
  std::string values[4];
  bool any = false;
  for (int i = 0; i < 4; ++i) {
    auto it = record.properties.find(kProperties[i]);
    if (it != record.properties.end()) {
      values[i] = it->second;
      any = true;
    }
  }
  if (!any) return std::nullopt;
  return SignatureSpec{values[0], values[1], values[2], values[3]};
}

std::string SignatureInvalid(const std::string& why) { return "invalid: " + why; }
std::string SignatureUnverifiable(const std::string& why) { return "unverifiable: " + why; }

struct SignatureCheck::State {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx{EVP_MD_CTX_new(), EVP_MD_CTX_free};
  std::string signature;  // decoded
  std::string hash_method;
  bool failed = false;  // an update OpenSSL refused
};

SignatureCheck::SignatureCheck(std::unique_ptr<State> state) : state_(std::move(state)) {}
SignatureCheck::~SignatureCheck() = default;

Result<std::unique_ptr<SignatureCheck>> SignatureCheck::Start(const SignatureSpec& spec,
                                                              const std::string& certificate) {
  const std::string* values[] = {&spec.signature, &spec.hash_method, &spec.key_type,
                                 &spec.certificate_uuid};
  for (int i = 0; i < 4; ++i) {
    if (values[i]->empty()) {
      return Status::InvalidArgument(std::string(kProperties[i]) + " is missing");
    }
  }
  const EVP_MD* md = HashMethod(spec.hash_method);
  if (!md) return Status::NotSupported("hash method '" + spec.hash_method + "' is not one Glance accepts");
  const int want = KeyTypeOf(spec.key_type);
  if (!want) return Status::NotSupported("key type '" + spec.key_type + "' is not one Glance accepts");
  auto state = std::make_unique<State>();
  GLANCEFS_ASSIGN_OR_RETURN(state->signature, DecodeBase64(spec.signature));
  state->hash_method = spec.hash_method;
  std::shared_ptr<X509> cert = ReadCertificate(certificate);
  ERR_clear_error();  // PEM's failure before DER's success
  if (!cert) {
    return Status::Corruption("certificate " + spec.certificate_uuid + " is neither PEM nor DER");
  }
  EVP_PKEY* key = X509_get0_pubkey(cert.get());  // owned by the certificate
  if (!key) return Status::Corruption("certificate " + spec.certificate_uuid + " has no usable key");
  const int have = EVP_PKEY_get_base_id(key);
  if (have != want) {
    return Status::InvalidArgument("the certificate's key is " + std::string(KeyTypeName(have)) +
                                   ", the key type says " + spec.key_type);
  }
  EVP_PKEY_CTX* pctx = nullptr;  // owned by the digest context
  if (!state->ctx || EVP_DigestVerifyInit(state->ctx.get(), &pctx, md, nullptr, key) != 1) {
    return Status::Corruption("cannot start verifying with certificate " + spec.certificate_uuid);
  }
  if (want == EVP_PKEY_RSA &&
      (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_MAX) != 1 ||
       EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) != 1)) {
    return Status::Corruption("cannot set RSA-PSS parameters");
  }
  return std::unique_ptr<SignatureCheck>(new SignatureCheck(std::move(state)));
}

void SignatureCheck::Update(const char* data, size_t n) {
  if (EVP_DigestVerifyUpdate(state_->ctx.get(), data, n) != 1) state_->failed = true;
}

Status SignatureCheck::Finish() {
  const auto* sig = reinterpret_cast<const unsigned char*>(state_->signature.data());
  const bool ok = !state_->failed &&
                  EVP_DigestVerifyFinal(state_->ctx.get(), sig, state_->signature.size()) == 1;
  ERR_clear_error();  // a failed check leaves OpenSSL's (per-thread) queue as it found it
  if (ok) return Status::Ok();
  return Status::Corruption("the " + state_->hash_method +
                            " signature does not match the image's bytes");
}

}  // namespace glancefs::cache
