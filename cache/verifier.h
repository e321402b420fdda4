// ImageCheck: one pass's checks over an image's bytes, given in order: the record's hash
// (os_hash_value with os_hash_algo, or the MD5 checksum) and its signature (signature.h), whose
// certificate it fetches (and, with trusted certificates, validates: certificate_check.h) when
// made. Of the block cache's parts, verifier.cc is the one that includes OpenSSL.
//
// A check has no lock and no thread: one pass owns it. It is made with what the image says
// (hash algorithm, signature properties) and the policy (certificate source, trusted ids); it
// is fed bytes; then HashHex and SignatureVerdict tell the outcome, in signature.h's words.
// The image judge (image_judge.h) decides what the outcome does to the image.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cache/signature.h"
#include "fs/base/certificates.h"

namespace glancefs::cache {

// Where signatures' certificates come from and which are trusted (CacheOptions' fields).
struct SignaturePolicy {
  std::shared_ptr<CertificateStore> certificates;  // null: signed images are unverifiable
  std::vector<std::string> trusted_certificates;   // empty: certificates are not validated
};

// What a signature verdict depends on besides the image: where certificates come from and
// which are trusted. A verdict reached under another policy is not reused.
std::string PolicyFingerprint(const SignaturePolicy& policy);

class ImageCheck {
 public:
  // `signature_fp`: the image's fingerprint of `spec` and the policy when the pass began.
  // `hash_algo`: an OpenSSL digest name ("sha512", "md5"); empty: no hash to check.
  ImageCheck(const std::string& hash_algo, const std::optional<SignatureSpec>& spec,
             std::string signature_fp, const SignaturePolicy& policy, int64_t now);
  ~ImageCheck();
  ImageCheck(const ImageCheck&) = delete;
  ImageCheck& operator=(const ImageCheck&) = delete;

  // Whether the hash is checked (false for none, or an algorithm OpenSSL does not know).
  bool hashing() const { return digest_ != nullptr; }
  const std::string& signature_fp() const { return signature_fp_; }
  // Whether the bytes are needed at all.
  bool any() const { return hashing() || signature_ != nullptr; }
  void Update(const char* data, size_t n);
  // After every byte: the digest in lowercase hex ("" when not hashing).
  std::string HashHex();
  // After every byte: the signature's verdict.
  std::string SignatureVerdict();

 private:
  class Digest;
  void StartSignature(const SignatureSpec& spec, const SignaturePolicy& policy, int64_t now);
  // The signing certificate against the trusted ones; false with the verdict set when it fails.
  bool Validate(const SignatureSpec& spec, const std::string& certificate,
                const SignaturePolicy& policy, int64_t now);

  std::unique_ptr<Digest> digest_;  // null when not hashing
  const std::string signature_fp_;
  std::unique_ptr<SignatureCheck> signature_;
  std::string verdict_;
};

}  // namespace glancefs::cache
