#!/usr/bin/python3
"""The oracle for glancefs's certificate validation (-o trusted_certs): python3-cursive's
certificate_utils.verify_certificate, as Nova calls it with trusted certificate ids, with
castellan's key manager replaced by one that serves local PEM files by name.

  cursive_chain.py SIGNING.pem TRUSTED.pem...

Prints "trusted", or "untrusted: <reason>", and exits 0 or 1.
"""
import sys

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cursive import certificate_utils, exception, signature_utils


def main(signing, trusted):
    class Certificate:
        format = signature_utils.X_509

        def __init__(self, path):
            with open(path, "rb") as f:
                pem = f.read()
            self.der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)

        def get_encoded(self):
            return self.der

    class KeyManager:
        def get(self, context, uuid):
            return Certificate(uuid)

    signature_utils.key_manager.API = lambda *args, **kwargs: KeyManager()
    try:
        certificate_utils.verify_certificate(None, signing, trusted)
    except exception.SignatureVerificationError as e:
        print("untrusted: %s" % e)
        return 1
    print("trusted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
