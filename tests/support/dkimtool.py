#!/usr/bin/python3
"""DKIM helper for the tests, on Debian's python3-dkim (dkimpy): an
implementation independent of libopendkim, used to sign test messages and to
verify what filtermail signs.

    dkimtool.py pubkey KEYFILE            print the TXT record for a private key
    dkimtool.py sign KEYFILE SELECTOR DOMAIN [ALG [CANON]] <msg >signed
    dkimtool.py verify TXTFILE <msg       exit 0 when a signature verifies;
                                          TXTFILE lines: "<name> <record>"
"""
import base64
import subprocess
import sys

import dkim


def pubkey(keyfile):
    der = subprocess.run(["openssl", "pkey", "-in", keyfile, "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    text = subprocess.run(["openssl", "pkey", "-in", keyfile, "-noout", "-text"],
                          check=True, capture_output=True, text=True).stdout
    if "ED25519" in text.upper():
        return "v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:]).decode()
    return "v=DKIM1; k=rsa; p=" + base64.b64encode(der).decode()


def main():
    cmd = sys.argv[1]
    if cmd == "pubkey":
        print(pubkey(sys.argv[2]))
    elif cmd == "sign":
        keyfile, selector, domain = sys.argv[2:5]
        alg = sys.argv[5].encode() if len(sys.argv) > 5 else b"rsa-sha256"
        canon = tuple(x.encode() for x in (sys.argv[6] if len(sys.argv) > 6
                                           else "relaxed/simple").split("/"))
        msg = sys.stdin.buffer.read()
        with open(keyfile, "rb") as f:
            key = f.read()
        if alg == b"ed25519-sha256":
            # dkimpy takes the raw 32-byte Ed25519 seed, base64-encoded.
            der = subprocess.run(["openssl", "pkey", "-in", keyfile, "-outform", "DER"],
                                 check=True, capture_output=True).stdout
            key = base64.b64encode(der[-32:])
        sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                        signature_algorithm=alg, canonicalize=canon)
        sys.stdout.buffer.write(sig + msg)
    elif cmd == "verify":
        records = {}
        with open(sys.argv[2]) as f:
            for line in f:
                name, rec = line.rstrip("\n").split(" ", 1)
                records[name.rstrip(".") + "."] = rec.encode()
        msg = sys.stdin.buffer.read()

        def dnsfunc(name, timeout=5):
            return records.get(name.decode().rstrip(".") + ".")

        ok = dkim.verify(msg, dnsfunc=dnsfunc)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
