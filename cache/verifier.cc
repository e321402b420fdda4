#include "cache/verifier.h"

#include <openssl/evp.h>

#include "cache/certificate_check.h"
#include "fs/base/hash.h"
#include "fs/base/log.h"

namespace glancefs::cache {

// A digest (OpenSSL) of bytes given in order, as lowercase hex.
class ImageCheck::Digest {
 public:
  // Null for an algorithm OpenSSL does not know.
  static std::unique_ptr<Digest> Make(const std::string& algo) {
    std::unique_ptr<Digest> d(new Digest(EVP_get_digestbyname(algo.c_str())));
    if (!d->md_ || !d->ctx_ || EVP_DigestInit_ex(d->ctx_.get(), d->md_, nullptr) != 1) {
      return nullptr;
    }
    return d;
  }
  void Update(const char* data, size_t n) { EVP_DigestUpdate(ctx_.get(), data, n); }
  std::string Hex() {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx_.get(), digest, &len);
    return HexOf(digest, len);
  }

 private:
  explicit Digest(const EVP_MD* md) : ctx_(EVP_MD_CTX_new(), EVP_MD_CTX_free), md_(md) {}
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx_;
  const EVP_MD* md_;
};

std::string PolicyFingerprint(const SignaturePolicy& policy) {
  std::string text = policy.certificates ? policy.certificates->Describe() : "none";
  for (const std::string& id : policy.trusted_certificates) text += "\n" + id;
  return SignatureSpec{text, "", "", ""}.Fingerprint().substr(0, 16);
}

ImageCheck::ImageCheck(const std::string& hash_algo, const std::optional<SignatureSpec>& spec,
                       std::string signature_fp, const SignaturePolicy& policy, int64_t now)
    : signature_fp_(std::move(signature_fp)) {
  if (!hash_algo.empty()) digest_ = Digest::Make(hash_algo);
  if (!spec) {
    verdict_ = kSignatureUnsigned;
    return;
  }
  StartSignature(*spec, policy, now);
}

ImageCheck::~ImageCheck() = default;

void ImageCheck::StartSignature(const SignatureSpec& spec, const SignaturePolicy& policy,
                                int64_t now) {
  if (!policy.certificates) {
    verdict_ = SignatureUnverifiable("no certificate source (-o cert_dir=)");
    return;
  }
  auto certificate = policy.certificates->Get(spec.certificate_uuid);
  if (!certificate.ok()) {
    // A uuid no store could hold is the record's fault; anything else may pass.
    verdict_ = certificate.status().code() == Status::Code::kInvalidArgument
                   ? SignatureInvalid(certificate.status().message())
                   : SignatureUnverifiable(certificate.status().message());
    return;
  }
  if (!policy.trusted_certificates.empty() && !Validate(spec, *certificate, policy, now)) return;
  auto check = SignatureCheck::Start(spec, *certificate);
  if (check.ok()) {
    signature_ = std::move(check).value();
  } else if (check.status().code() == Status::Code::kInvalidArgument) {
    verdict_ = SignatureInvalid(check.status().message());
  } else {
    verdict_ = SignatureUnverifiable(check.status().message());
  }
}

bool ImageCheck::Validate(const SignatureSpec& spec, const std::string& certificate,
                          const SignaturePolicy& policy, int64_t now) {
  std::vector<std::pair<std::string, std::string>> trusted;
  for (const std::string& id : policy.trusted_certificates) {
    auto cert = policy.certificates->Get(id);
    if (cert.ok()) {
      trusted.emplace_back(id, std::move(cert).value());
    } else if (cert.status().code() == Status::Code::kUnavailable) {
      verdict_ =
          SignatureUnverifiable("trusted certificate " + id + ": " + cert.status().message());
      return false;
    } else {
      LOG_WARNING("trusted certificate %s: %s; skipped", id.c_str(),
                  cert.status().message().c_str());
    }
  }
  Status valid = ValidateCertificate(certificate, trusted, now);
  if (!valid.ok()) {
    verdict_ = SignatureInvalid("certificate " + spec.certificate_uuid + ": " + valid.message());
  }
  return valid.ok();
}

void ImageCheck::Update(const char* data, size_t n) {
  if (digest_) digest_->Update(data, n);
  if (signature_) signature_->Update(data, n);
}

std::string ImageCheck::HashHex() { return digest_ ? digest_->Hex() : ""; }

std::string ImageCheck::SignatureVerdict() {
  if (signature_) {
    Status s = signature_->Finish();
    verdict_ = s.ok() ? kSignatureVerified : SignatureInvalid(s.message());
    signature_.reset();
  }
  return verdict_;
}

}  // namespace glancefs::cache
