// Certificate validation as Nova does it before it trusts an image signature (cursive's
// certificate_utils.verify_certificate with its defaults: dates, signing extensions and path
// lengths enforced), for -o trusted_certs. Glance itself never validates certificates.
//
// The trusted certificates usable as issuers are those within their dates whose
// basicConstraints says CA and whose keyUsage has keyCertSign. The signing certificate must be
// within its dates. Its chain is built upward: each step takes the first usable trusted
// certificate whose subject is the current issuer and whose key verifies the current
// certificate's signature, until a certificate issued itself; so the chain must end in a
// self-signed certificate that is itself trusted (trusting an intermediate alone is not
// enough). Every certificate above the signing one needs basicConstraints whose pathlen allows
// the intermediates below it. Where cursive fails by accident, this does what it means: an
// issuer without pathlen is unlimited (cursive crashes), a chain that loops fails (cursive
// loops forever). OpenSSL does the signatures (X509_verify, which also accepts RSA-PSS
// certificate signatures, where cursive takes PKCS#1 v1.5 only).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "fs/base/status.h"

struct x509_st;  // OpenSSL's X509

namespace glancefs::cache {

// A certificate from its PEM (as Glance keeps it in Barbican) or DER bytes; null if neither.
std::shared_ptr<x509_st> ReadCertificate(const std::string& bytes);

// Ok when `certificate` (PEM or DER) validates against `trusted` (uuid, PEM or DER) at `now`
// (seconds since the epoch); InvalidArgument saying why not.
Status ValidateCertificate(const std::string& certificate,
                           const std::vector<std::pair<std::string, std::string>>& trusted,
                           int64_t now);

}  // namespace glancefs::cache
