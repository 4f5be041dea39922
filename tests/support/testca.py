#!/usr/bin/python3
"""A throw-away certificate authority for TLS tests (openssl(1) only).

    from testca import TestCA
    ca = TestCA(directory)                       # ca.pem / ca.key in directory
    cert, key = ca.issue("mx1.remote.test")      # signed by the CA, SAN = the name
    cert, key = ca.self_signed("mx2.remote.test")  # not signed by the CA
    ca.spki_sha256(cert)                         # hex, for a TLSA "3 1 1" record

Keys are ECDSA P-256 (fast to make); certificates are valid for 10 days.
Files are world-readable, so unprivileged servers and clients can read them:
they protect nothing.
"""
import hashlib
import os
import pathlib
import subprocess


def _run(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, **kw)


class TestCA:
    def __init__(self, directory, name="filtermail test CA"):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cert = self.dir / "ca.pem"
        self.key = self.dir / "ca.key"
        _run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", self.key, "-out", self.cert, "-days", "10",
             "-subj", f"/CN={name}",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self._chmod(self.cert, self.key)

    @staticmethod
    def _chmod(*paths):
        for p in paths:
            os.chmod(p, 0o644)

    def _key(self, stem):
        key = self.dir / f"{stem}.key"
        _run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", key)
        return key

    def issue(self, name, *, stem=None, sans=None):
        """A certificate for name (and sans), signed by the CA: (cert, key) paths."""
        stem = stem or name
        key = self._key(stem)
        csr = self.dir / f"{stem}.csr"
        cert = self.dir / f"{stem}.pem"
        ext = self.dir / f"{stem}.ext"
        names = [name] + list(sans or [])
        san = ",".join(("IP:" if n.replace(".", "").isdigit() or ":" in n else "DNS:") + n
                       for n in names)
        ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                       "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n")
        _run("openssl", "req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={name}")
        _run("openssl", "x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
             "-CAcreateserial", "-out", cert, "-days", "10", "-extfile", ext)
        self._chmod(cert, key)
        return cert, key

    def self_signed(self, name, *, stem=None):
        """A self-signed certificate for name, not trusted by the CA: (cert, key)."""
        stem = stem or name
        key = self._key(stem)
        cert = self.dir / f"{stem}.pem"
        _run("openssl", "req", "-x509", "-new", "-key", key, "-out", cert, "-days", "10",
             "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}")
        self._chmod(cert, key)
        return cert, key

    @staticmethod
    def spki_sha256(cert):
        """SHA-256 of the certificate's SubjectPublicKeyInfo (TLSA 3 1 1), hex."""
        pub = _run("openssl", "x509", "-in", cert, "-noout", "-pubkey").stdout
        der = _run("openssl", "pkey", "-pubin", "-outform", "DER", input=pub).stdout
        return hashlib.sha256(der).hexdigest()
