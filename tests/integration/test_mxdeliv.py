"""filtermail-mxdeliv through a real Postfix, behind a real nginx with TLS
(spec 6.8, 3.4, 11; the /mxdeliv issue).

One relay for every test: Postfix with filtermail-milter checking incoming
mail with DKIM on (keys served from DNSSEC-signed test zones, offline), the
reinjection smtpd of postfix-conf/master.cf.mxdeliv.snippet, filtermail-mxdeliv
on a free port (idle timeout 3 s, so the slow-client test is short), and
nginx with the shipped location block and a certificate from a test CA.
Requests go through nginx (HTTPS) unless they test something nginx would
hide (raw bytes, timeouts, chunked bodies), then straight to mxdeliv.
"""
import concurrent.futures
import os
import re
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

from harness import REPO, Relay, free_ports, read_mail, set_header, smtp_data, wait_until
from mxdeliv_harness import (Mxdeliv, Nginx, TestCA, client_context, connection,
                             parse_responses, post, raw_exchange, reinject_service, request)

LOCAL = "example.org"
REMOTE = "remote.test"
ALICE = f"alice@{REMOTE}"
ONE = f"one@{LOCAL}"               # enforcing
TWO = f"two@{LOCAL}"               # enforcing
OPEN = f"open@{LOCAL}"             # accepts cleartext
MAX_SIZE = 200_000
IDLE = 3                           # mxdeliv's -t, seconds
DKIMTOOL = REPO / "tests" / "support" / "dkimtool.py"
ENCRYPTION_NEEDED = "523 Encryption Needed: Invalid Unencrypted Mail"
TOO_BIG = "552 Message exceeds maximum size"

relay = mx = web = ca = None
keys = None


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, **kw)


def setup_module():
    global relay, mx, web, ca, keys
    keys = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-mxdeliv-it-"))
    keys.chmod(0o755)
    sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
       "-out", keys / "rsa.pem")
    record = sh("/usr/bin/python3", DKIMTOOL, "pubkey", keys / "rsa.pem",
                text=True).stdout.strip()
    txt = " ".join(f'"{record[i:i + 200]}"' for i in range(0, len(record), 200))
    (keys / "remote.zone").write_text(
        f"@ IN SOA ns.{REMOTE}. hostmaster.{REMOTE}. 1 3600 600 86400 300\n"
        f"@ IN NS ns.{REMOTE}.\nns IN A 127.0.0.1\nrsa._domainkey 300 IN TXT {txt}\n")
    sh("/usr/bin/python3", REPO / "tests" / "support" / "mkzone.py", keys / "dns",
       f"{REMOTE}={keys / 'remote.zone'}")
    for p in (keys / "dns").iterdir():
        p.chmod(0o644)
    (keys / "dns").chmod(0o755)

    relay = Relay(domains=(LOCAL,), skip_dkim=False, max_message_size=MAX_SIZE,
                  ini={"filtermail_unbound_config": str(keys / "dns" / "unbound.conf"),
                       "filtermail_trust_anchor": str(keys / "dns" / "trust-anchors"),
                       "filtermail_dns_timeout": "5"},
                  smtpd_services={"mxdeliv": reinject_service()})
    for user in (ONE, TWO):
        relay.add_user(user)
    relay.add_user(OPEN, enforce=False)
    relay.start()
    mx = Mxdeliv(relay, args=["-t", IDLE]).start()
    ca = TestCA(relay.tmp / "tls")
    web = Nginx(relay.tmp / "nginx", ca.issue("mx.example.org", sans=["127.0.0.1"]), mx.port,
                max_body=MAX_SIZE).start()


def teardown_module():
    try:
        for thing in (web, mx, relay):
            if thing is not None:
                thing.stop()
    finally:
        if keys is not None and not os.environ.get("FILTERMAIL_KEEP_TMP"):
            shutil.rmtree(keys, ignore_errors=True)


# -- helpers -------------------------------------------------------------------

def message(kind="encrypted.eml", sender=ALICE, rcpt=TWO, signed=True, body=None):
    """A test message from sender to rcpt with a unique Message-ID, DKIM-signed
    by remote.test; returns (the /mxdeliv body: CRLF, dots doubled, no final
    dot line; the marker)."""
    tid = uuid.uuid4().hex
    data = read_mail(kind).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if body is not None:
        head = data.split(b"\r\n\r\n", 1)[0]
        data = head + b"\r\n\r\n" + body
    data = set_header(data, "From", f"<{sender}>")
    data = set_header(data, "To", f"<{rcpt}>")
    data = set_header(data, "Message-ID", f"<{tid}@{sender.split('@')[1]}>")
    if signed:
        data = sh("/usr/bin/python3", DKIMTOOL, "sign", keys / "rsa.pem", "rsa", REMOTE,
                  "rsa-sha256", input=data).stdout
    return smtp_data(data), tid


def https(data, mail_from=ALICE, rcpts=(TWO,), **kw):
    return post(web.port, data, mail_from, rcpts, tls=client_context(ca), **kw)


def direct(data, mail_from=ALICE, rcpts=(TWO,), **kw):
    return post(mx.port, data, mail_from, rcpts, **kw)


def expect(got, status, body=None, what=""):
    mx.check()   # alive, and no sanitizer report
    ok = got[0] == status and (body is None or got[1] == body
                               or (callable(body) and body(got[1])))
    assert ok, (f"{what}: expected {status} {body if isinstance(body, str) else ''}, "
                f"got {got}\n--- mxdeliv:\n{mx.log()[-2500:]}\n{relay.diagnostics(15)}")


def never_delivered(addr, marker):
    relay.wait_queue_empty()
    assert not relay.find(addr, marker), f"{marker} reached {addr}"


# -- accepted mail ---------------------------------------------------------------

def test_encrypted_over_https_delivered():
    data, tid = message()
    expect(https(data), 200, "250 OK", "encrypted, signed")
    got = relay.wait_for_delivery(TWO, tid)
    assert got.return_path == f"<{ALICE}>", got
    assert b"DKIM-Signature:" in got.raw
    assert "(HTTP) MAIL FROM:<alice@remote.test>" in mx.log()
    # nginx's X-Real-IP names the sender in the log.
    assert "(HTTP) 200 250 OK (from 127.0.0.1 via 127.0.0.1," in mx.log()


def test_sessions_to_postfix_are_kept():
    """Requests one after another share one SMTP session to Postfix, as
    smtp(8) keeps its connections: three messages, at most one new
    connection (none when one kept from an earlier test is still fresh),
    each queued and delivered."""
    mark = len(relay.maillog())
    tids = []
    for _ in range(3):
        data, tid = message()
        expect(https(data), 200, "250 OK", "on a kept session")
        tids.append(tid)
    for tid in tids:
        relay.wait_for_delivery(TWO, tid)
    log = relay.maillog()[mark:]
    assert len(re.findall(r"smtpd\[\d+\]: connect from", log)) <= 1, log
    assert len(re.findall(r"smtpd\[\d+\]: [0-9A-F]+: client=", log)) == 3, log


def test_two_recipients_and_null_sender():
    data, tid = message()
    expect(https(data, mail_from=None, rcpts=(TWO, ONE)), 200, "250 OK", "two recipients")
    for rcpt in (TWO, ONE):
        assert relay.wait_for_delivery(rcpt, tid).return_path == "<>"


def test_any_path_and_keep_alive():
    # Three POSTs on one connection, to any path (nginx only forwards
    # /mxdeliv, mxdeliv itself ignores the path).
    conn = connection(mx.port)
    try:
        tids = []
        for path in ("/mxdeliv", "/anything-else", "/"):
            data, tid = message()
            expect(request(conn, data, ALICE, [TWO], path=path), 200, "250 OK", path)
            tids.append(tid)
            sock = conn.sock
            assert sock is not None, "mxdeliv closed a keep-alive connection"
            if path == "/mxdeliv":
                first = sock
            assert sock is first, "a new connection was opened"
    finally:
        conn.close()
    for tid in tids:
        relay.wait_for_delivery(TWO, tid)
    # Through nginx: the client's connection is kept alive too.
    conn = connection(web.port, tls=client_context(ca))
    try:
        for _ in range(2):
            data, tid = message()
            expect(request(conn, data, ALICE, [TWO]), 200, "250 OK", "keep-alive via nginx")
            relay.wait_for_delivery(TWO, tid)
    finally:
        conn.close()


def test_two_requests_in_one_write():
    # HTTP/1.1 pipelining: both answered, in order.
    a, tid_a = message()
    b, _ = message("plain.eml", rcpt=TWO)
    req = lambda d, last: (f"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\nX-Mail-From: {ALICE}\r\n"
                           f"X-Mail-To: {TWO}\r\nContent-Length: {len(d)}\r\n"
                           + ("Connection: close\r\n" if last else "") + "\r\n").encode() + d
    raw, err = raw_exchange(mx.port, [req(a, False) + req(b, True)])
    assert err is None, err
    assert parse_responses(raw) == [(200, "250 OK"), (400, ENCRYPTION_NEEDED)], raw
    relay.wait_for_delivery(TWO, tid_a)


def test_dot_lines_round_trip():
    # Lines starting with a dot arrive as they were written: the sender
    # doubles them, Postfix undoes it; a line of one dot is data, not an end.
    lines = [b".leading dot", b"..two dots", b".", b"...", b" .", b"end"]
    body = b"\r\n".join(lines) + b"\r\n"
    data, tid = message("plain.eml", rcpt=OPEN, body=body)
    assert b"\r\n..leading dot\r\n...two dots\r\n..\r\n....\r\n" in data
    expect(https(data, rcpts=(OPEN,)), 200, "250 OK", "dot lines")
    got = relay.wait_for_delivery(OPEN, tid)
    delivered = got.raw.replace(b"\r\n", b"\n").split(b"\n\n", 1)[1]
    assert delivered.split(b"\n")[:len(lines)] == lines, delivered[:300]


def test_concurrent_posts():
    messages = [message() for _ in range(16)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda m: https(m[0]), messages))
    for got in results:
        expect(got, 200, "250 OK", "concurrent")
    for _, tid in messages:
        relay.wait_for_delivery(TWO, tid)


# -- refused mail ---------------------------------------------------------------

def test_cleartext_to_enforcing_user_refused():
    data, tid = message("plain.eml")
    expect(https(data), 400, ENCRYPTION_NEEDED, "cleartext")
    never_delivered(TWO, tid)


def test_unsigned_refused():
    data, tid = message(signed=False)
    expect(https(data), 400, "554 5.7.1 No DKIM signature found", "unsigned")
    data, tid2 = message()
    forged = data.replace(b"Subject:", b"Subject: changed", 1)
    expect(https(forged), 400, "554 5.7.1 No valid DKIM signature found", "tampered")
    never_delivered(TWO, tid)
    never_delivered(TWO, tid2)


def test_relaying_refused():
    data, tid = message(rcpt="someone@elsewhere.test")
    expect(https(data, rcpts=("someone@elsewhere.test",)), 400,
           lambda b: b.startswith("554 5.7.1") and "Relay access denied" in b, "relaying")
    # One foreign recipient fails the whole request: nothing is delivered.
    data, tid = message()
    expect(https(data, rcpts=(TWO, "someone@elsewhere.test")), 400,
           lambda b: "Relay access denied" in b, "mixed recipients")
    never_delivered(TWO, tid)


def test_bad_envelope_values_never_reach_smtp():
    data, tid = message()
    bad_rcpts = [f"{TWO}> NOTIFY=NEVER", f"<{TWO}>", "two @example.org", f"{TWO},{ONE} x"]
    for rcpt in bad_rcpts:
        expect(direct(data, rcpts=(rcpt,)), 400, "501 Invalid address in X-Mail-To", rcpt)
        expect(https(data, rcpts=(rcpt,)), 400, "501 Invalid address in X-Mail-To", rcpt)
    for sender in (f"{ALICE}> SIZE=1", "alice remote.test", f"<{ALICE}>"):
        expect(https(data, mail_from=sender), 400, "501 Invalid address in X-Mail-From",
               sender)
    # Control characters (only possible on a raw connection: http.client
    # refuses them). libmicrohttpd or mxdeliv refuses; SMTP never sees them.
    for value in (b"two\x01@example.org", b"two@example.org\x7f", b"t\xc3\xa9@example.org"):
        head = (b"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\nX-Mail-To: " + value +
                b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(data))
        raw, _ = raw_exchange(mx.port, [head + data])
        status, body = parse_responses(raw)[0]
        assert status == 400 and (body.startswith("501 ") or "<html>" in body.lower()), raw
    never_delivered(TWO, tid)
    assert "NOTIFY=NEVER" not in relay.maillog()


def test_folded_or_cut_recipient_refused():
    """Issue 12 item 6: a folded X-Mail-To once got 200 with no SMTP session
    at all, and one with a NUL was cut there and delivered to the part before
    it. A 200 must mean Postfix queued the message for every recipient named;
    these get 501 and nothing reaches Postfix."""
    data, tid = message()
    bad = {
        "folded": b"X-Mail-To: " + TWO.encode() + b"\r\n evil@example.org\r\n",
        "folded with a tab": b"X-Mail-To: " + TWO.encode() + b"\r\n\tevil@example.org\r\n",
        "folded, empty first line": b"X-Mail-To:\r\n " + TWO.encode() + b"\r\n",
        "NUL": b"X-Mail-To: " + TWO.encode() + b"\x00evil@example.org\r\n",
        "NUL, last header": None,
    }
    for what, line in bad.items():
        if line is None:
            head = (b"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\nContent-Length: %d\r\n"
                    b"Connection: close\r\nX-Mail-To: " % len(data) + TWO.encode() +
                    b"\x00" + ONE.encode() + b"\r\n\r\n")
        else:
            head = (b"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\n" + line +
                    b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(data))
        raw, _ = raw_exchange(mx.port, [head + data])
        got = parse_responses(raw)
        assert got == [(400, "501 Invalid address in X-Mail-To")], (what, raw)
        mx.check()
    fold_from = (b"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\nX-Mail-From: " + ALICE.encode() +
                 b"\r\n x\r\nX-Mail-To: " + TWO.encode() +
                 b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(data))
    raw, _ = raw_exchange(mx.port, [fold_from + data])
    assert parse_responses(raw) == [(400, "501 Invalid address in X-Mail-From")], raw
    assert "Dropping mail" not in mx.log()
    never_delivered(TWO, tid)

    # The check does not touch well-formed requests: bare LF line ends (which
    # libmicrohttpd accepts), trailing blanks, several recipients.
    data, tid = message(rcpt=TWO)
    head = (b"POST /mxdeliv HTTP/1.1\nHost: mx\nX-Mail-From: " + ALICE.encode() +
            b"\nX-Mail-To: " + TWO.encode() + b" \t\nX-Mail-To: " + ONE.encode() +
            b"\nContent-Length: %d\nConnection: close\n\n" % len(data))
    raw, _ = raw_exchange(mx.port, [head + data])
    assert parse_responses(raw) == [(200, "250 OK")], raw
    relay.wait_queue_empty()
    assert relay.find(TWO, tid) and relay.find(ONE, tid)


def test_invalid_data_refused():
    good, tid = message()
    cases = {
        "LF line ends": good.replace(b"\r\n", b"\n"),
        "no final CRLF": good + b"trailing text",
        "empty": b"",
        "bare CR": good.replace(b"\r\n\r\n", b"\r\n\rX\r\n", 1),
        # An unescaped end of data followed by a second transaction: if it
        # reached Postfix, "smuggled" would be delivered.
        "smuggled": good + b".\r\nMAIL FROM:<>\r\nRCPT TO:<" + TWO.encode() +
                    b">\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled\r\n",
        "smuggled with LF": good + b".\nMAIL FROM:<>\r\n",
        "leading end of data": b".\r\n" + good,
    }
    for what, data in cases.items():
        expect(https(data), 400, "500 Invalid DATA", what)
        expect(direct(data), 400, "500 Invalid DATA", what)
    never_delivered(TWO, tid)
    never_delivered(TWO, "smuggled")


def test_no_recipient_accepted_and_dropped():
    data, tid = message()
    expect(https(data, rcpts=()), 200, "250 OK", "no X-Mail-To")
    assert "Dropping mail; All recipients disabled." in mx.log()
    never_delivered(TWO, tid)
    # The body is still checked.
    expect(https(b"x\n", rcpts=()), 400, "500 Invalid DATA", "no X-Mail-To, bad body")


def test_other_methods_405():
    for method in ("GET", "PUT", "DELETE"):
        for port, tls in ((mx.port, None), (web.port, client_context(ca))):
            conn = connection(port, tls)
            try:
                got = request(conn, None if method == "GET" else b"x\r\n", method=method)
            finally:
                conn.close()
            expect(got, 405, "Method Not Allowed", f"{method} on {port}")


# -- size ----------------------------------------------------------------------------

def test_oversize_refused_before_reading():
    # The declared size is enough: the answer comes before a byte of the body
    # is sent (the client waits for it, as with Expect: 100-continue).
    head = (f"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\nX-Mail-To: {TWO}\r\n"
            f"Content-Length: {MAX_SIZE + 1}\r\n\r\n").encode()
    s = socket.create_connection(("127.0.0.1", mx.port), timeout=10)
    try:
        s.sendall(head)
        raw = b""
        while b"\r\n\r\n" not in raw or not raw.endswith(TOO_BIG.encode()):
            d = s.recv(4096)
            if not d:
                break
            raw += d
    finally:
        s.close()
    assert parse_responses(raw) == [(413, TOO_BIG)], raw

    # Through nginx: refused by nginx's limit, with the same text.
    data, tid = message()
    big = data + b"X" * (MAX_SIZE + 1 - len(data))
    expect(https(big), 413, TOO_BIG, "over the limit via nginx")

    # A chunked body has no declared size: refused once it passes the limit,
    # and the connection is closed without reading the rest.
    chunk = b"%x\r\n" % 16384 + b"Y" * 16384 + b"\r\n"
    head = (f"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\nX-Mail-To: {TWO}\r\n"
            f"Transfer-Encoding: chunked\r\n\r\n").encode()
    total = 200 * MAX_SIZE   # 40 MB: far more than socket buffers hold
    raw, err = raw_exchange(mx.port, [head] + [chunk] * (total // 16384))
    assert err is not None, "the whole chunked body was read"
    assert parse_responses(raw) == [(413, TOO_BIG)], raw[:300]
    never_delivered(TWO, tid)


def test_just_under_the_limit_accepted():
    body = b"\r\n".join(b"%06d " % i + b"x" * 60 for i in range(2000)) + b"\r\n"
    data, tid = message("plain.eml", rcpt=OPEN, body=body)
    assert 100_000 < len(data) < MAX_SIZE - 20_000
    expect(https(data, rcpts=(OPEN,)), 200, "250 OK", "large message")
    got = relay.wait_for_delivery(OPEN, tid)
    assert b"001999 " + b"x" * 60 in got.raw


# -- failures ----------------------------------------------------------------------

def test_postfix_unreachable_is_temporary():
    closed = free_ports(1)[0]
    down = Mxdeliv(relay, name="mxdeliv-down", postfix_reinject_port_incoming=closed).start()
    try:
        data, tid = message()
        got = post(down.port, data, ALICE, [TWO])
        expect(got, 503, f'450 Failed to connect to any of the following addresses: '
                         f'["127.0.0.1:{closed}"]', "Postfix down")
        assert "Failed to reinject mail" in down.log()
    finally:
        down.stop()


def test_milter_down_is_temporary():
    relay.kill_milter()
    try:
        data, tid = message()
        expect(https(data), 503, lambda b: b.startswith("4"), "milter down")
    finally:
        relay.start_milter()
    never_delivered(TWO, tid)
    data, tid = message()
    expect(https(data), 200, "250 OK", "milter back")
    relay.wait_for_delivery(TWO, tid)


def test_slow_clients_time_out_without_blocking_others():
    # One client stops in the middle of its headers, one in the middle of
    # its body; meanwhile others are served; both are closed after IDLE s.
    data, tid = message()
    others = [message() for _ in range(3)]
    stalled_head = socket.create_connection(("127.0.0.1", mx.port), timeout=30)
    stalled_body = socket.create_connection(("127.0.0.1", mx.port), timeout=30)
    try:
        stalled_head.sendall(b"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\nX-Mail-To: ")
        stalled_body.sendall((f"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\nX-Mail-To: {TWO}\r\n"
                              f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:100])
        start = time.monotonic()
        for d, t in others:
            expect(direct(d), 200, "250 OK", "while others stall")
        assert time.monotonic() - start < IDLE, "served too slowly"
        for s in (stalled_head, stalled_body):
            assert s.recv(4096) == b"", "a stalled client got an answer"
        waited = time.monotonic() - start
        assert IDLE - 0.5 <= waited <= IDLE + 5, waited
    finally:
        stalled_head.close()
        stalled_body.close()
    wait_until(lambda: "(timeout); message discarded" in mx.log(), 5,
               "the discarded message in mxdeliv's log")
    for _, t in others:
        relay.wait_for_delivery(TWO, t)
    never_delivered(TWO, tid)


def test_sighup_reloads_the_size_limit():
    """SIGHUP: a smaller max_message_size applies to the next requests; a file
    that does not load keeps the running limit."""
    def declared(size):
        head = (f"POST /mxdeliv HTTP/1.1\r\nHost: mx\r\nX-Mail-To: {TWO}\r\n"
                f"Content-Length: {size}\r\n\r\n").encode()
        raw, _ = raw_exchange(mx.port, [head], timeout=5)
        return parse_responses(raw)

    def reload(marker):
        before = mx.log().count(marker)
        mx.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: mx.log().count(marker) > before, 10, f"{marker!r} logged")

    original = mx.ini.read_text()
    try:
        mx.ini.write_text(original.replace(f"max_message_size = {MAX_SIZE}",
                                           "max_message_size = 1000"))
        reload("configuration reloaded from")
        assert declared(1001) == [(413, TOO_BIG)]
        mx.ini.write_text("[params]\nmax_message_size = huge\n")
        reload("Failed to reload config:")
        assert declared(1001) == [(413, TOO_BIG)]
    finally:
        mx.ini.write_text(original)
        reload("configuration reloaded from")
    data, tid = message()
    expect(https(data), 200, "250 OK", "after restoring the limit")
    relay.wait_for_delivery(TWO, tid)
