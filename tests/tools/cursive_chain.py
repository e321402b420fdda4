#!/usr/bin/python3
"""The oracle for glancefs's certificate validation (-o trusted_certs): python3-cursive's
certificate_utils.verify_certificate, as Nova calls it with trusted certificate ids, with
castellan's key manager replaced by one that serves local PEM files by name.

  cursive_chain.py SIGNING.pem TRUSTED.pem...

Prints "trusted", or "untrusted: <reason>", and exits 0 or 1.
"""
import sys

from cursive import certificate_utils, exception

from cursive_local import use_local_certificates


def main(signing, trusted):
    use_local_certificates(lambda uuid: uuid)  # the uuids are the files' names
    try:
        certificate_utils.verify_certificate(None, signing, trusted)
    except exception.SignatureVerificationError as e:
        print("untrusted: %s" % e)
        return 1
    print("trusted")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
