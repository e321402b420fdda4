// Image signatures, checked as Glance (at upload) and Nova's cursive (before boot) check them.
//
// An image carries img_signature (base64), img_signature_hash_method (SHA-224/256/384/512),
// img_signature_key_type (RSA-PSS, DSA, ECC_SECT571K1, ECC_SECT409K1, ECC_SECT571R1,
// ECC_SECT409R1, ECC_SECP521R1, ECC_SECP384R1) and img_signature_certificate_uuid. The
// signature covers the image's bytes as stored (what os_hash_value covers), hashed with the hash
// method and signed with the certificate's key: RSA-PSS with MGF1 of the same hash and exactly
// the maximum salt length; DSA and ECDSA as DER (r, s). The certificate's key type must match
// the key type (RSA, DSA, any elliptic curve: cursive does not compare curves). Only the
// certificate's public key is used: its dates and issuer are a separate, optional check.
//
// SignatureCheck runs beside the cache's hash in the one pass over an image's bytes. OpenSSL's
// EVP API does the work. Thread-compatible (one pass, one thread).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "fs/base/catalog.h"
#include "fs/base/status.h"

namespace glancefs::cache {

struct SignatureSpec {
  std::string signature;  // base64, as the property holds it
  std::string hash_method;
  std::string key_type;
  std::string certificate_uuid;

  // Identifies the four values (a changed property is a new verdict); "" for no signature.
  std::string Fingerprint() const;
};

// The record's signature properties; nullopt when it has none of the four (unsigned). A record
// with some but not all of them gives a spec whose check fails, saying which is missing.
std::optional<SignatureSpec> SignatureSpecOf(const ImageRecord& record);

// The verdict's words, as user.glancefs.signature shows them.
inline constexpr const char* kSignatureVerified = "verified";
inline constexpr const char* kSignatureUnsigned = "unsigned";
std::string SignatureInvalid(const std::string& why);       // "invalid: <why>"
std::string SignatureUnverifiable(const std::string& why);  // "unverifiable: <why>"

class SignatureCheck {
 public:
  ~SignatureCheck();
  SignatureCheck(const SignatureCheck&) = delete;
  SignatureCheck& operator=(const SignatureCheck&) = delete;

  // Ready to take the image's bytes. `certificate` is the certificate's PEM (as Glance keeps it
  // in Barbican) or DER. Fails with NotSupported for a hash method or key type Glance does not
  // accept (unverifiable), InvalidArgument for what makes the signature invalid before any byte
  // is read (missing property, bad base64, a key of another type), Corruption for a
  // certificate that cannot be read.
  static Result<std::unique_ptr<SignatureCheck>> Start(const SignatureSpec& spec,
                                                       const std::string& certificate);
  void Update(const char* data, size_t n);
  // Ok when the signature matches the bytes given; Corruption saying so when it does not.
  Status Finish();

 private:
  struct State;
  explicit SignatureCheck(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace glancefs::cache
