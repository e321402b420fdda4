#include "cache/certificate_check.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace glancefs::cache {
namespace {

using X509Ptr = std::shared_ptr<X509>;

}  // namespace

X509Ptr ReadCertificate(const std::string& bytes) {
  std::unique_ptr<BIO, int (*)(BIO*)> bio(
      BIO_new_mem_buf(bytes.data(), static_cast<int>(bytes.size())), BIO_free);
  X509* cert = bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr;
  if (!cert) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(bytes.data());
    cert = d2i_X509(nullptr, &p, static_cast<long>(bytes.size()));
  }
  return X509Ptr(cert, X509_free);
}

namespace {

bool WithinDates(X509* cert, int64_t now) {
  time_t t = static_cast<time_t>(now);
  // X509_cmp_time: -1 when the time is at or before `t`, 1 after, 0 on a malformed time
  // (never valid). A notAfter of exactly now counts as expired (cursive: valid); a second apart.
  return X509_cmp_time(X509_get0_notBefore(cert), &t) < 0 &&
         X509_cmp_time(X509_get0_notAfter(cert), &t) > 0;
}

using Constraints = std::unique_ptr<BASIC_CONSTRAINTS, void (*)(BASIC_CONSTRAINTS*)>;

Constraints BasicConstraints(X509* cert) {
  return Constraints(static_cast<BASIC_CONSTRAINTS*>(
                         X509_get_ext_d2i(cert, NID_basic_constraints, nullptr, nullptr)),
                     BASIC_CONSTRAINTS_free);
}

bool CanSignCertificates(X509* cert) {
  Constraints bc = BasicConstraints(cert);
  return bc && bc->ca && (X509_get_extension_flags(cert) & EXFLAG_KUSAGE) &&
         (X509_get_key_usage(cert) & KU_KEY_CERT_SIGN);
}

bool IsIssuer(X509* issuer, X509* issued) {
  EVP_PKEY* key = X509_get0_pubkey(issuer);
  return key && X509_NAME_cmp(X509_get_subject_name(issuer), X509_get_issuer_name(issued)) == 0 &&
         X509_verify(issued, key) == 1;
}

}  // namespace

Status ValidateCertificate(const std::string& certificate,
                           const std::vector<std::pair<std::string, std::string>>& trusted,
                           int64_t now) {
  struct ClearErrors {
    ~ClearErrors() { ERR_clear_error(); }  // failed reads and X509_verify calls queue errors
  } clear_errors;
  X509Ptr leaf = ReadCertificate(certificate);
  if (!leaf) return Status::InvalidArgument("the signing certificate is neither PEM nor DER");
  std::vector<std::pair<std::string, X509Ptr>> signers;
  for (const auto& [uuid, bytes] : trusted) {
    X509Ptr cert = ReadCertificate(bytes);
    if (cert && WithinDates(cert.get(), now) && CanSignCertificates(cert.get())) {
      signers.emplace_back(uuid, cert);
    }
  }
  if (!WithinDates(leaf.get(), now)) {
    return Status::InvalidArgument("the signing certificate is outside its valid date range");
  }
  // The chain, signing certificate last; `names[i]` says which trusted certificate chain[i] is.
  std::vector<X509Ptr> chain = {leaf};
  std::vector<std::string> names = {"the signing certificate"};
  X509Ptr current = leaf;
  for (;;) {
    const std::pair<std::string, X509Ptr>* found = nullptr;
    for (const auto& signer : signers) {
      if (IsIssuer(signer.second.get(), current.get())) {
        found = &signer;
        break;
      }
    }
    if (!found) {
      return Status::InvalidArgument("no trusted certificate issued " + names.front() +
                                     " (the chain must end in a trusted self-signed CA)");
    }
    if (X509_cmp(found->second.get(), current.get()) == 0) break;  // self-signed: the root
    if (chain.size() > signers.size()) {
      return Status::InvalidArgument("the certificate chain loops");
    }
    chain.insert(chain.begin(), found->second);
    names.insert(names.begin(), "trusted certificate " + found->first);
    current = found->second;
  }
  // Path lengths: each issuer allows the intermediates below it (not counting the signing one).
  for (size_t i = 0; i + 1 < chain.size(); ++i) {
    Constraints bc = BasicConstraints(chain[i].get());
    if (!bc) return Status::InvalidArgument(names[i] + " has no basic constraints");
    const size_t below = chain.size() - i;
    const long needed = below > 2 ? static_cast<long>(below - 2) : 0;
    if (bc->pathlen && ASN1_INTEGER_get(bc->pathlen) < needed) {
      return Status::InvalidArgument(names[i] + " does not allow a chain this long (pathlen)");
    }
  }
  return Status::Ok();
}

}  // namespace glancefs::cache
