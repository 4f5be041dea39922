"""DKIM through a real Postfix (spec 6.3-6.7, the DKIM issue): incoming mail
verified against keys served from DNSSEC-signed test zones by libunbound,
entirely offline; outgoing mail signed by the milter and checked by an
independent verifier (python3-dkim) and by the milter's own verifier.

Keys are made fresh for each run (openssl); the zones are signed by
tests/support/mkzone.py and loaded through filtermail_unbound_config.
"""
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import uuid

import dkim

from harness import REPO, Relay, add_header, read_mail, set_header

LOCAL = "example.org"          # the relay's mail_domain, signed by the milter
REMOTE = "remote.test"         # another relay, signing with python3-dkim
ONE = f"one@{LOCAL}"           # a local user (enforcing)
TWO = f"two@{LOCAL}"           # a local user (enforcing)
ALICE = f"alice@{REMOTE}"
BOB = f"bob@{REMOTE}"
DKIMTOOL = REPO / "tests" / "support" / "dkimtool.py"

relay = None
keys = None       # temporary directory: keys, zones, records
records = {}      # "<selector>._domainkey.<domain>." -> TXT text (python3-dkim)


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, **kw)


def pubkey(keyfile):
    return sh("/usr/bin/python3", DKIMTOOL, "pubkey", keyfile, text=True).stdout.strip()


def txt(record):
    """A TXT record split into character-strings of at most 200 bytes."""
    return " ".join(f'"{record[i:i + 200]}"' for i in range(0, len(record), 200))


def zone(domain, entries):
    """Writes a zone file; entries: (owner, record text, marker)."""
    path = keys / f"{domain}.zone"
    lines = [f"@ IN SOA ns.{domain}. hostmaster.{domain}. 1 3600 600 86400 300",
             f"@ IN NS ns.{domain}.", "ns IN A 127.0.0.1"]
    for owner, record, marker in entries:
        lines.append(f"{owner} 300 IN TXT {txt(record)}{marker}")
    path.write_text("\n".join(lines) + "\n")
    return f"{domain}={path}"


def setup_module():
    global relay, keys
    keys = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-dkim-it-"))
    keys.chmod(0o755)
    for name, alg in (("relay", "RSA"), ("rsa", "RSA"), ("other", "RSA"),
                      ("ed", "ED25519")):
        args = ["openssl", "genpkey", "-algorithm", alg, "-out", keys / f"{name}.pem"]
        if alg == "RSA":
            args[4:4] = ["-pkeyopt", "rsa_keygen_bits:2048"]
        sh(*args)
    # The signing key as chatmail keeps it: readable by root only (the milter
    # reads it before dropping its privileges).
    (keys / "relay.pem").chmod(0o600)
    relay_rec, rsa_rec, ed_rec, other_rec = (pubkey(keys / f"{n}.pem")
                                             for n in ("relay", "rsa", "ed", "other"))
    records.update({
        f"opendkim._domainkey.{LOCAL}.": relay_rec,
        f"rsa._domainkey.{REMOTE}.": rsa_rec,
    })
    zones = [
        zone(LOCAL, [("opendkim._domainkey", relay_rec, "")]),
        zone(REMOTE, [("rsa._domainkey", rsa_rec, ""),
                      ("ed._domainkey", ed_rec, ""),
                      ("bogus._domainkey", rsa_rec, ";BOGUS"),
                      ("rsa._domainkey.sub", rsa_rec, "")]),
        zone("other.test", [("other._domainkey", other_rec, "")]),
    ]
    sh("/usr/bin/python3", REPO / "tests" / "support" / "mkzone.py", keys / "dns", *zones)
    for p in (keys / "dns").iterdir():
        p.chmod(0o644)
    (keys / "dns").chmod(0o755)

    relay = Relay(domains=(LOCAL,), skip_dkim=False,
                  ini={"filtermail_dkim_sign": "yes",
                       "filtermail_dkim_key": str(keys / "relay.pem"),
                       "filtermail_dkim_selector": "opendkim",
                       "filtermail_unbound_config": str(keys / "dns" / "unbound.conf"),
                       "filtermail_trust_anchor": str(keys / "dns" / "trust-anchors"),
                       "filtermail_dns_timeout": "5",
                       "filtermail_rejected_max_files": "3"})
    relay.add_user(ONE)
    relay.add_user(TWO)
    relay.start()


def teardown_module():
    try:
        if relay is not None:
            relay.stop()
    finally:
        if keys is not None and not os.environ.get("FILTERMAIL_KEEP_TMP"):
            shutil.rmtree(keys, ignore_errors=True)


# -- helpers -----------------------------------------------------------------

def message(sender, rcpt=TWO):
    """encrypted.eml from sender to rcpt, with a unique Message-ID; returns
    (bytes with CRLF line ends, marker)."""
    tid = uuid.uuid4().hex
    data = read_mail("encrypted.eml").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    data = set_header(data, "From", f"<{sender}>")
    data = set_header(data, "To", f"<{rcpt}>")
    data = set_header(data, "Message-ID", f"<{tid}@{sender.split('@')[1]}>")
    return data, tid


def sign(data, key, selector, domain, alg="rsa-sha256"):
    """data signed by python3-dkim (through tests/support/dkimtool.py)."""
    return sh("/usr/bin/python3", DKIMTOOL, "sign", keys / key, selector, domain, alg,
              input=data).stdout


def verify_independently(data):
    """python3-dkim's verdict on data, with the test zones' records."""
    def dnsfunc(name, timeout=5):
        rec = records.get(name.decode().rstrip(".") + ".")
        return rec.encode() if rec is not None else None
    return dkim.verify(data, dnsfunc=dnsfunc)


def incoming(data, sender=ALICE, rcpts=(TWO,)):
    return relay.send_incoming(sender, list(rcpts), data)


def expect(reply, code, text=None, what=""):
    assert reply.code == code and (text is None or str(reply) == text), \
        f"{what}: expected {code} {text or ''}, got {reply!r}\n{relay.milter_log()[-3000:]}"


def rejected_files():
    d = relay.tmp / "rejected" / "dkim-verify"
    return sorted(d.iterdir()) if d.is_dir() else []


# -- incoming ------------------------------------------------------------------

def test_incoming_rsa_signature_accepted():
    data, tid = message(ALICE)
    expect(incoming(sign(data, "rsa.pem", "rsa", REMOTE)), 250, what="RSA-signed")
    got = relay.wait_for_delivery(TWO, tid)
    assert b"DKIM-Signature:" in got.raw


def test_incoming_ed25519_signature_accepted():
    data, tid = message(ALICE)
    expect(incoming(sign(data, "ed.pem", "ed", REMOTE, "ed25519-sha256")), 250,
           what="Ed25519-signed")
    relay.wait_for_delivery(TWO, tid)


def test_incoming_unsigned_refused_and_kept():
    before = len(rejected_files())
    data, tid = message(ALICE)
    expect(incoming(data), 554, "554 5.7.1 No DKIM signature found", "unsigned")
    files = rejected_files()
    assert len(files) == min(before + 1, 3), files
    newest = max(files, key=lambda p: p.stat().st_mtime_ns)
    assert tid.encode() in newest.read_bytes()
    assert newest.stat().st_mode & 0o777 == 0o600
    assert re.search(r"Rejected message stored at: \S+/dkim-verify/\d+-\w+-\d+\.eml",
                     relay.milter_log())


def test_rejected_store_is_capped():
    for _ in range(4):
        data, _ = message(ALICE)
        expect(incoming(data), 554, "554 5.7.1 No DKIM signature found", "unsigned")
    assert len(rejected_files()) == 3, rejected_files()


def test_incoming_alignment_is_exact():
    # Signed by another domain than From's.
    data, _ = message(ALICE)
    expect(incoming(sign(data, "other.pem", "other", "other.test")), 554,
           "554 5.7.1 No valid DKIM signature found", "d=other.test for remote.test")
    # A subdomain's From is not covered by its parent's signature...
    data, _ = message(f"carol@sub.{REMOTE}")
    expect(incoming(sign(data, "rsa.pem", "rsa", REMOTE), sender=f"carol@sub.{REMOTE}"), 554,
           "554 5.7.1 No valid DKIM signature found", "d=remote.test for sub.remote.test")
    # ...nor the parent by a subdomain's signature.
    data, _ = message(ALICE)
    expect(incoming(sign(data, "rsa.pem", "rsa", f"sub.{REMOTE}")), 554,
           "554 5.7.1 No valid DKIM signature found", "d=sub.remote.test for remote.test")
    # Case does not matter.
    data, tid = message(f"alice@{REMOTE.upper()}")
    expect(incoming(sign(data, "rsa.pem", "rsa", REMOTE)), 250, what="upper-case From domain")
    relay.wait_for_delivery(TWO, tid)


def test_incoming_encoded_from_cannot_borrow_a_signature():
    """The policy reads From with RFC 2047 words decoded (as upstream does);
    the signature is checked against the field as received. Here the first
    is a@bank.example, the second alice@remote.test, which remote.test's key
    signs: the signature proves nothing about bank.example."""
    data, _ = message(ALICE)
    data = set_header(data, "From", f"=?us-ascii?q?a=40bank.example=2C?= {ALICE}")
    expect(incoming(sign(data, "rsa.pem", "rsa", REMOTE), sender="a@bank.example"), 554,
           "554 5.7.1 No valid DKIM signature found", "From decoded to another domain")
    assert "differs from the domain the signatures were checked against" in relay.milter_log()


def test_incoming_tampered_body_refused():
    data, _ = message(ALICE)
    signed = sign(data, "rsa.pem", "rsa", REMOTE)
    i = signed.rindex(b"-----END PGP MESSAGE-----")
    tampered = signed[:i] + b"\r\n" + signed[i:]
    expect(incoming(tampered), 554, "554 5.7.1 No valid DKIM signature found", "body changed")
    assert "body hash mismatch" in relay.milter_log()


def test_incoming_two_from_fields_refused():
    data, _ = message(ALICE)
    data = add_header(data, "From", f"<{ALICE}>")
    expect(incoming(sign(data, "rsa.pem", "rsa", REMOTE)), 554,
           "554 5.7.1 No valid DKIM signature found", "two From fields")


def test_incoming_bogus_dnssec_is_temporary():
    data, _ = message(ALICE)
    expect(incoming(sign(data, "rsa.pem", "rsa", REMOTE).replace(b"s=rsa", b"s=bogus", 1)),
           451, "451 4.7.5 DKIM key lookup failed, try again later", "bogus key record")


def test_incoming_malformed_selector_is_final():
    """A selector no DNS name can have is the sender's fault: 554 (the
    signature fails for good), not 451 retried for days."""
    data, _ = message(ALICE)
    signed = sign(data, "rsa.pem", "rsa", REMOTE)
    for bad in (b"a..b", b".a", b"a.", b"a" * 64):
        expect(incoming(signed.replace(b"s=rsa", b"s=" + bad, 1)), 554,
               "554 5.7.1 No valid DKIM signature found", f"s={bad.decode()}")


def test_incoming_encryption_checked_first():
    # Cleartext to an enforcing user: 523 before any key lookup.
    data = (f"From: <{ALICE}>\r\nTo: <{TWO}>\r\nSubject: hi\r\n\r\nHello\r\n").encode()
    expect(incoming(data), 523, "523 Encryption Needed: Invalid Unencrypted Mail", "cleartext")


def test_incoming_domain_literal_not_checked():
    sender = "one@[127.0.0.1]"
    data, tid = message(sender)
    expect(incoming(data, sender=sender), 250, what="domain literal, unsigned")
    relay.wait_for_delivery(TWO, tid)


# -- outgoing ------------------------------------------------------------------

def test_outgoing_signed_and_verifiable():
    data, tid = message(ONE, BOB)
    expect(relay.send_outgoing(ONE, [BOB], data), 250, what="outgoing encrypted")
    got = relay.wait_for_delivery(BOB, tid)
    sig = re.search(rb"^DKIM-Signature:(.*?)\r?\n(?![ \t])", got.raw, re.M | re.S)
    assert sig, got.raw[:800]
    tags = re.sub(rb"\s+", b"", sig.group(1))
    for tag in (b"d=" + LOCAL.encode(), b"s=opendkim", b"a=rsa-sha256", b"c=relaxed/simple"):
        assert tag in tags, tags
    # Signed and oversigned: every listed header appears in h= once more than
    # in the message, so none can be added.
    h = re.search(rb"(?:^|;)h=([^;]*)", tags).group(1).decode().lower().split(":")
    head = re.split(rb"\r?\n\r?\n", got.raw, maxsplit=1)[0]
    for name in ("from", "to", "subject", "date", "message-id", "content-type", "autocrypt"):
        present = len(re.findall(rf"^{name}:".encode(), head, re.M | re.I))
        assert h.count(name) == present + 1, (name, present, h)
    # An independent verifier accepts it...
    assert verify_independently(got.raw), "python3-dkim rejects the milter's signature"
    # ...and so does the milter's own verifier, as another relay would run it.
    again = re.sub(rb"\A(?:(?:Return-Path|Delivered-To):[^\n]*\n)+", b"", got.raw)
    again = again.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    expect(relay.send_incoming(ONE, [TWO], again), 250, what="own signature on port 25")
    relay.wait_for_delivery(TWO, tid)
    # An added Subject breaks it (oversigning at work).
    assert not verify_independently(add_header(got.raw, "Subject", "added"))


def test_outgoing_refused_mail_not_signed():
    data = (f"From: <{ONE}>\r\nTo: <{BOB}>\r\nSubject: hi\r\n\r\nHello\r\n").encode()
    expect(relay.send_outgoing(ONE, [BOB], data), 523,
           "523 Encryption Needed: Invalid Unencrypted Mail", "outgoing cleartext")


# -- configuration ---------------------------------------------------------------

def test_skip_dkim_and_unsigned_outgoing():
    with Relay(domains=(LOCAL,), skip_dkim=True) as r:
        r.add_user(TWO)
        assert "DKIM verification DISABLED! This should not be used in production." \
            in r.milter_log()
        data, tid = message(ALICE)
        reply = r.send_incoming(ALICE, [TWO], data)
        assert reply.code == 250, reply
        r.wait_for_delivery(TWO, tid)
        data, tid = message(TWO, BOB)
        reply = r.send_outgoing(TWO, [BOB], data)
        assert reply.code == 250, reply
        assert b"DKIM-Signature" not in r.wait_for_delivery(BOB, tid).raw


def test_unusable_signing_key_stops_start():
    small = keys / "small.pem"
    sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:512",
       "-out", small)
    r = Relay(domains=(LOCAL,), ini={"filtermail_dkim_sign": "yes",
                                     "filtermail_dkim_key": str(small)})
    try:
        r.start()
    except Exception as e:
        assert "Failed to set up DKIM:" in str(e) and "1024 bits" in str(e), e
    else:
        r.stop()
        raise AssertionError("the milter started with a 512-bit signing key")
