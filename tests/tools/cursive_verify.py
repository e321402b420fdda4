#!/usr/bin/python3
"""The oracle for glancefs's signature check: python3-cursive, the library Nova verifies image
signatures with, run as Nova runs it except that the certificate comes from a local PEM file
instead of Barbican (castellan's key manager is replaced by one that returns that file, as DER,
the way castellan hands certificates to cursive).

  cursive_verify.py CERT.pem KEY_TYPE HASH_METHOD SIGNATURE_BASE64 IMAGE_FILE

Prints "verified", "invalid: <reason>" or "error: <reason>" and exits 0, 1 or 2.
"""
import sys

from cryptography.exceptions import InvalidSignature
from cursive import exception, signature_utils

from cursive_local import use_local_certificates


def main(cert_path, key_type, hash_method, signature, image_path):
    use_local_certificates(lambda uuid: cert_path)
    try:
        verifier = signature_utils.get_verifier(None, "local", hash_method, signature, key_type)
        with open(image_path, "rb") as f:
            for chunk in iter(lambda: f.read(65536), b""):
                verifier.update(chunk)
        verifier.verify()
    except InvalidSignature:
        print("invalid: InvalidSignature")
        return 1
    except exception.SignatureVerificationError as e:
        print("error: %s" % e)
        return 2
    print("verified")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
