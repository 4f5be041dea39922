"""Acceptance tests of the E2EE gate through a real Postfix (spec sections 2.4,
4-6, 9): replies as the SMTP client sees them, deliveries as the Maildir sees
them, log lines as operators' dashboards see them, and the milter's behaviour
under bad input, concurrency and failure.

Most tests share one relay (setup_module); the failure test starts its own.
"""
import base64
import grp
import os
import pwd
import subprocess
import concurrent.futures
import random
import re
import signal
import threading
import time
import uuid

import corpus
from corpus import ACCEPT, ENCRYPTION_NEEDED
from harness import REPO, Relay, Reply, add_header, read_mail, set_header, smtp_data, smtp_send

ONE = "one@example.org"             # a user (enforcing), the usual sender
TWO = corpus.ENFORCING_RCPT         # a user (enforcing), the usual recipient
OPEN = corpus.OPEN_RCPT             # a user without enforceE2EEincoming
ABSENT = "nobody-here@example.org"  # no mailbox directory at all
DISABLED = "disabled@example.org"   # DISABLED flag
DSENDER = "dsender@example.org"     # a disabled sender
BOT = "bot@example.org"             # in passthrough_senders
REMOTE = "alice@remote.example"     # a sender on another relay

# Small enough to test the limit cheaply, large enough for every other test.
MAX_SIZE = 2_000_000

relay = None


def setup_module():
    global relay
    relay = Relay(
        max_message_size=MAX_SIZE,
        ini={"passthrough_senders": BOT,
             "passthrough_recipients": "@partner.example echo@other.example"},
        # A submission service that forgot the daemon-name override: only the
        # SASL login ({auth_authen}) tells the milter it is outgoing.
        smtpd_services={"badsub": ["-o milter_macro_daemon_name=INBOUND",
                                   "-o smtpd_authorized_xclient_hosts=127.0.0.1",
                                   "-o smtpd_relay_restrictions=permit_mynetworks,reject"]})
    for user in (ONE, TWO, DSENDER, BOT):
        relay.add_user(user)
    relay.add_user(OPEN, enforce=False)
    relay.add_user(DISABLED, disabled=True)
    relay.set_flag(DSENDER, "DISABLED")
    relay.start()


def teardown_module():
    if relay is not None:
        relay.stop()


# -- helpers -----------------------------------------------------------------

def marked(data):
    """data with a unique X-Test-Id header; returns (data, id)."""
    tid = uuid.uuid4().hex
    return add_header(data, "X-Test-Id", tid), tid


def plain(sender, rcpt=TWO, body=b"Hello!\r\n", headers=b""):
    """A cleartext message."""
    return (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: test\r\n"
            f"Message-ID: <{uuid.uuid4().hex}@test>\r\n").encode() + headers + b"\r\n" + body


def encrypted(sender):
    """encrypted.eml (PGP/MIME, valid for both directions) sent by sender."""
    return set_header(read_mail("encrypted.eml"), "From", sender)


def send(direction, sender, rcpts, data):
    """Outgoing: submission, logged in as sender. Incoming: port 25."""
    if direction == "outgoing":
        return relay.send_outgoing(sender, rcpts, data)
    return relay.send_incoming(sender, rcpts, data)


def matches(reply, expected):
    """expected: ACCEPT (any 250) or the exact reply line."""
    return reply.code == 250 if expected == ACCEPT else str(reply) == expected


def check_reply(reply, expected, what):
    assert matches(reply, expected), f"{what}: expected {expected!r}, got {reply!r}"


def check_not_delivered(addr, tid):
    relay.wait_queue_empty()
    got = relay.find(addr, tid)
    assert not got, f"{addr} got {got} although it should not"


def send_checked(direction, sender, rcpts, data, expected, deliver_to=None):
    """Sends data marked, checks the reply, and for an accepted message that it
    reaches deliver_to (default: every recipient). Returns the deliveries."""
    data, tid = marked(data)
    reply = send(direction, sender, rcpts, data)
    check_reply(reply, expected, f"{direction} from <{sender}> to {rcpts}")
    if reply.code != 250:
        return []
    return [relay.wait_for_delivery(r, tid) for r in (deliver_to or rcpts)]


def check_table(cases):
    """cases: (what, direction, sender, rcpts, data, expected). Sends them all
    and fails once, listing every wrong reply."""
    wrong = []
    for what, direction, sender, rcpts, data, expected in cases:
        reply = send(direction, sender, rcpts, data)
        if not matches(reply, expected):
            wrong.append(f"{what} {direction}: got {reply!r}, expected {expected!r}")
    assert not wrong, "\n".join(wrong)


def both_ways(what, make, expected, rcpts=(TWO,)):
    """The case `what` in both directions; make(sender) builds the message."""
    return [(what, d, s, list(rcpts), make(s), expected)
            for d, s in (("outgoing", ONE), ("incoming", REMOTE))]


# -- the corpus and the PGP/MIME rules ----------------------------------------

def run_corpus(direction):
    wrong = []
    for case in corpus.cases():
        if case.direction != direction:
            continue
        data, tid = marked(case.data)
        reply = send(direction, case.mail_from, case.rcpts, data)
        if not case.matches(reply):
            wrong.append(f"{case}: got {reply!r}, expected one of {case.expected}")
        elif reply.code == 250:
            got = relay.wait_for_delivery(case.rcpts[0], tid)
            want = f"<{case.mail_from}>"
            if got.return_path.lower() != want.lower():
                wrong.append(f"{case}: delivered with Return-Path {got.return_path}, "
                             f"expected {want}")
    assert not wrong, "\n".join(wrong)


def test_corpus_outgoing():
    """Every test message through submission (XCLIENT LOGIN = From = MAIL FROM)."""
    run_corpus("outgoing")


def test_corpus_incoming():
    """Every test message through port 25 to an enforcing recipient."""
    run_corpus("incoming")


def replace_armor(data, armor):
    """data (a PGP/MIME message) with its ASCII armor block replaced."""
    end_line = b"-----END PGP MESSAGE-----\r\n"
    start = data.index(b"-----BEGIN PGP MESSAGE-----")
    end = data.index(end_line) + len(end_line)
    if not armor.endswith(b"\n"):
        armor += b"\r\n"
    return data[:start] + armor + data[end:]


def test_armor_vectors():
    """encrypted.eml with each armor of tests/data/armor: accepted exactly when
    tests/data/armor-verdicts.tsv says the armor passes in that direction
    (a Version: header only coming in; spec 4.3, O23, O24, I5)."""
    cases = []
    for line in (REPO / "tests" / "data" / "armor-verdicts.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, out_ok, in_ok = line.split("\t")
        armor = (REPO / "tests" / "data" / "armor" / name).read_bytes()
        for direction, ok, sender in (("outgoing", out_ok, ONE), ("incoming", in_ok, REMOTE)):
            cases.append((name, direction, sender, [TWO],
                          replace_armor(encrypted(sender), armor),
                          ACCEPT if ok == "1" else ENCRYPTION_NEEDED))
    check_table(cases)


def pgp_mime(sender, parts, preamble="", epilogue=""):
    """A multipart/encrypted message; parts are (headers, body) strings."""
    msg = (f"From: <{sender}>\r\nTo: <{TWO}>\r\nSubject: [...]\r\nMIME-Version: 1.0\r\n"
           "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";"
           " boundary=\"B\"\r\n\r\n" + preamble)
    for headers, body in parts:
        msg += f"--B\r\n{headers}\r\n{body}\r\n"
    return (msg + "--B--\r\n" + epilogue).encode()


VERSION_PART = ("Content-Type: application/pgp-encrypted\r\n", "Version: 1\r\n")
OCTET_STREAM = "Content-Type: application/octet-stream\r\n"


def armor_part(headers=OCTET_STREAM):
    armor = (REPO / "tests" / "data" / "armor" / "rust-valid.asc").read_text()
    return (headers, armor.replace("\r\n", "\n").replace("\n", "\r\n"))


def test_pgp_mime_structure():
    """The PGP/MIME shape rules of spec 4.2 (O25-O28), both directions."""
    b64_armor = base64.encodebytes(armor_part()[1].encode()).decode().replace("\n", "\r\n")
    shapes = [
        ("reference structure", [VERSION_PART, armor_part()], "", "", ACCEPT),
        # Quirk Q7, copied from upstream: the Version part alone is enough, and
        # preamble and epilogue may hold cleartext.
        ("only the Version part", [VERSION_PART], "cleartext preamble\r\n",
         "cleartext epilogue\r\n", ACCEPT),
        ("a third part", [VERSION_PART, armor_part(),
                          ("Content-Type: text/plain\r\n", "hello\r\n")], "", "",
         ENCRYPTION_NEEDED),
        ("base64-encoded armor part",
         [VERSION_PART, (OCTET_STREAM + "Content-Transfer-Encoding: base64\r\n", b64_armor)],
         "", "", ACCEPT),
        ("Version: 2", [("Content-Type: application/pgp-encrypted\r\n", "Version: 2\r\n"),
                        armor_part()], "", "", ENCRYPTION_NEEDED),
        ("part 1 text/plain", [("Content-Type: text/plain\r\n", "Version: 1\r\n"),
                               armor_part()], "", "", ENCRYPTION_NEEDED),
        ("part 2 text/plain", [VERSION_PART, armor_part("Content-Type: text/plain\r\n")],
         "", "", ENCRYPTION_NEEDED),
    ]
    cases = []
    for name, parts, preamble, epilogue, expected in shapes:
        cases += both_ways(name, lambda s: pgp_mime(s, parts, preamble, epilogue), expected)
    check_table(cases)


def crc24(data):
    """The OpenPGP armor checksum (RFC 4880 6.1), table-driven."""
    table = []
    for i in range(256):
        c = i << 16
        for _ in range(8):
            c = (c << 1) ^ (0x1864CFB if c & 0x800000 else 0)
        table.append(c & 0xFFFFFF)
    crc = 0xB704CE
    for b in data:
        crc = ((crc << 8) & 0xFFFFFF) ^ table[(crc >> 16) ^ b]
    return crc


def big_pgp_message(rnd, seipd_tail, trailing=b""):
    """PKESK, then a SEIPD with one 1 MiB partial chunk and a final chunk of
    seipd_tail bytes (5-octet length), then trailing, armored with a checksum."""
    packets = (bytes([0xC1, 94]) + rnd.randbytes(94)
               + bytes([0xD2, 0xE0 + 20]) + rnd.randbytes(1 << 20)
               + bytes([0xFF]) + seipd_tail.to_bytes(4, "big") + rnd.randbytes(seipd_tail)
               + trailing)
    b64 = base64.b64encode(packets).decode()
    lines = [b64[i:i + 76] for i in range(0, len(b64), 76)]
    crc = base64.b64encode(crc24(packets).to_bytes(3, "big")).decode()
    return ("-----BEGIN PGP MESSAGE-----\r\n\r\n" + "\r\n".join(lines)
            + f"\r\n={crc}\r\n-----END PGP MESSAGE-----\r\n")


def test_big_message_delivered_intact():
    """A 1.5 MB encrypted message (many libmilter body chunks) is accepted in
    both directions and delivered byte for byte, including epilogue lines
    that start with dots (SMTP dot transparency, S12)."""
    rnd = random.Random(1)
    armor = big_pgp_message(rnd, 100_000)
    for direction, sender in (("outgoing", ONE), ("incoming", REMOTE)):
        data = pgp_mime(sender, [VERSION_PART, (OCTET_STREAM, armor)],
                        epilogue=".hidden\r\n..two\r\n.\r\n")
        got = send_checked(direction, sender, [TWO], data, ACCEPT)[0]
        # virtual(8) writes Maildir files with LF line ends.
        body = got.raw.replace(b"\r\n", b"\n")
        assert armor.replace("\r\n", "\n").encode() in body, f"{direction}: armor changed"
        assert body.endswith(b"--B--\n.hidden\n..two\n.\n"), \
            f"{direction}: epilogue changed: {body[-60:]!r}"
    # Bytes after the SEIPD packet: not an encrypted message.
    broken = big_pgp_message(rnd, 100_000, trailing=b"\0\0\0")
    data = pgp_mime(ONE, [VERSION_PART, (OCTET_STREAM, broken)])
    check_reply(send("outgoing", ONE, [TWO], data), ENCRYPTION_NEEDED, "trailing bytes")


# -- outgoing ----------------------------------------------------------------

def test_outgoing_from_alignment():
    """From: must be the envelope sender (spec 5.1 steps 3 and 5, O14-O18)."""
    enc = read_mail("encrypted.eml")
    check_table([
        ("forged From", "outgoing", ONE, [TWO], set_header(enc, "From", "forged@example.org"),
         "500 Invalid FROM <forged@example.org> for <one@example.org>"),
        ("From in capitals", "outgoing", ONE, [TWO],
         set_header(enc, "From", "User One <ONE@EXAMPLE.ORG>"), ACCEPT),
        ("group From", "outgoing", ONE, [TWO], set_header(enc, "From", "undisclosed-recipients:;"),
         "500 Invalid FROM header: undisclosed-recipients:;"),
        # Postfix drops the trailing space of upstream's "Invalid FROM header: ".
        ("no From", "outgoing", ONE, [TWO], enc.replace(b"From: one@example.org\r\n", b""),
         "500 Invalid FROM header:"),
    ])
    # The null sender never matches a From address (O18).
    reply = relay.send_outgoing("", [TWO], enc, login=ONE)
    check_reply(reply, "500 Invalid FROM <one@example.org> for <>", "MAIL FROM:<>")


def test_outgoing_autocrypt_setup_message():
    """The ASM exception holds only self-sent, with the exact Subject and
    multipart/mixed, counting recipients after DISABLED ones are removed
    (spec 4.7, O9-O13)."""
    asm = read_mail("asm.eml")
    check_table([
        ("ASM to self and another", "outgoing", ONE, [ONE, TWO], asm, ENCRYPTION_NEEDED),
        ("ASM with another Subject", "outgoing", ONE, [ONE],
         set_header(asm, "Subject", "Autocrypt Setup Message 2"), ENCRYPTION_NEEDED),
        ("ASM as multipart/alternative", "outgoing", ONE, [ONE],
         set_header(asm, "Content-Type", 'multipart/alternative; boundary="Y6fyGi9SoGeH8WwRaEd'
                                         'C6bbBcYOedDzrQ"'), ENCRYPTION_NEEDED),
    ])
    send_checked("outgoing", ONE, [ONE, DISABLED], asm, ACCEPT, deliver_to=[ONE])


def test_outgoing_to_remote_domain():
    """Accepted outgoing mail leaves the relay (captured); cleartext does not."""
    remote = "bob@remote.example"
    send_checked("outgoing", ONE, [remote], encrypted(ONE), ACCEPT)
    data, tid = marked(plain(ONE, remote))
    check_reply(relay.send_outgoing(ONE, [remote], data), ENCRYPTION_NEEDED, "cleartext out")
    check_not_delivered(remote, tid)


def test_outgoing_disabled_recipients():
    """DISABLED recipients are removed; a message left without recipients,
    or from a disabled sender, is accepted and dropped (spec 2.4, 5.1)."""
    data, tid = marked(encrypted(ONE))
    check_reply(relay.send_outgoing(ONE, [DISABLED, TWO], data), ACCEPT, "disabled + two")
    relay.wait_for_delivery(TWO, tid)
    check_not_delivered(DISABLED, tid)

    data, tid = marked(encrypted(ONE))
    check_reply(relay.send_outgoing(ONE, [DISABLED], data), ACCEPT, "only disabled")
    check_not_delivered(DISABLED, tid)

    data, tid = marked(encrypted(DSENDER))
    check_reply(relay.send_outgoing(DSENDER, [TWO], data), ACCEPT, "disabled sender")
    check_not_delivered(TWO, tid)
    check_reply(relay.send_outgoing(DSENDER, [TWO], plain(DSENDER)), ENCRYPTION_NEEDED,
                "disabled sender, cleartext")


def test_passthrough():
    """passthrough_senders and passthrough_recipients (every recipient must
    match; "@domain" matches the end) let cleartext out."""
    send_checked("outgoing", BOT, [TWO], plain(BOT), ACCEPT)
    send_checked("outgoing", ONE, ["x@partner.example"], plain(ONE, "x@partner.example"), ACCEPT)
    send_checked("outgoing", ONE, ["echo@other.example", "y@partner.example"],
                 plain(ONE, "echo@other.example"), ACCEPT)
    check_table([(f"cleartext to {rcpts}", "outgoing", ONE, rcpts, plain(ONE, rcpts[0]),
                  ENCRYPTION_NEEDED)
                 for rcpts in (["x@partner.example", TWO], ["x@sub.partner.example"],
                               ["other@other.example"])]
                # Passthrough is an outgoing exception only.
                + [("from a passthrough sender", "incoming", BOT, [TWO], plain(BOT),
                    ENCRYPTION_NEEDED)])


def test_authenticated_is_outgoing_whatever_the_daemon_name():
    """A submission service without the ORIGINATING override: SASL login alone
    selects the outgoing policy, so cleartext cannot leave even to a recipient
    that would accept it coming in, and From: must match."""
    check_reply(relay.send("badsub", ONE, [OPEN], plain(ONE, OPEN), login=ONE),
                ENCRYPTION_NEEDED, "authenticated cleartext on badsub")
    check_reply(relay.send("badsub", ONE, [TWO], encrypted(REMOTE), login=ONE),
                f"500 Invalid FROM <{REMOTE}> for <{ONE}>", "From mismatch on badsub")
    # Unauthenticated, the same service is incoming: cleartext to OPEN passes.
    data, tid = marked(plain(REMOTE, OPEN))
    check_reply(relay.send("badsub", REMOTE, [OPEN], data), ACCEPT, "incoming on badsub")
    relay.wait_for_delivery(OPEN, tid)


def test_originating_is_outgoing_without_login():
    """The daemon name alone (no SASL login) selects the outgoing policy."""
    check_reply(relay.send("submission", ONE, [OPEN], plain(ONE, OPEN)), ENCRYPTION_NEEDED,
                "unauthenticated cleartext on submission")


# -- incoming ----------------------------------------------------------------

def test_incoming_return_path():
    """An envelope sender that differs from From: becomes <>; a matching one
    (ignoring case) is kept (spec 6.2 step 3, I8)."""
    enc = encrypted(REMOTE)
    got = send_checked("incoming", "bounce+srs=x@fwd.example", [TWO], enc, ACCEPT)[0]
    assert got.return_path == "<>", f"Return-Path {got.return_path}, expected <>"
    got = send_checked("incoming", REMOTE, [TWO], enc, ACCEPT)[0]
    assert got.return_path == f"<{REMOTE}>", got.return_path
    got = send_checked("incoming", "ALICE@Remote.Example", [TWO], enc, ACCEPT)[0]
    assert got.return_path.lower() == f"<{REMOTE}>", got.return_path
    got = send_checked("incoming", "", [TWO], enc, ACCEPT)[0]
    assert got.return_path == "<>", got.return_path


def test_incoming_enforce_flag():
    """Cleartext comes in only when no recipient has enforceE2EEincoming; the
    flag is read for every message (spec 2.4, 6.4, I3, I11)."""
    send_checked("incoming", REMOTE, [OPEN], plain(REMOTE, OPEN), ACCEPT)
    send_checked("incoming", REMOTE, [ABSENT], plain(REMOTE, ABSENT), ACCEPT)
    send_checked("incoming", REMOTE, [OPEN, ABSENT], plain(REMOTE, OPEN), ACCEPT)
    check_table([
        ("open + enforcing", "incoming", REMOTE, [OPEN, TWO], plain(REMOTE, OPEN),
         ENCRYPTION_NEEDED),
        ("enforcing + open", "incoming", REMOTE, [TWO, OPEN], plain(REMOTE, OPEN),
         ENCRYPTION_NEEDED),
        # An address with '/' cannot name a mailbox: it enforces.
        ("recipient with a slash", "incoming", REMOTE, ["a/b@example.org"],
         plain(REMOTE, "a/b@example.org"), ENCRYPTION_NEEDED),
    ])
    newly = "newly@example.org"
    relay.add_user(newly, enforce=False)
    send_checked("incoming", REMOTE, [newly], plain(REMOTE, newly), ACCEPT)
    relay.set_flag(newly, "enforceE2EEincoming")
    check_reply(relay.send_incoming(REMOTE, [newly], plain(REMOTE, newly)), ENCRYPTION_NEEDED,
                "after creating enforceE2EEincoming")
    relay.set_flag(newly, "enforceE2EEincoming", present=False)
    send_checked("incoming", REMOTE, [newly], plain(REMOTE, newly), ACCEPT)
    # Encrypted mail ignores the flag.
    send_checked("incoming", REMOTE, [TWO, OPEN], encrypted(REMOTE), ACCEPT)


def test_incoming_mailer_daemon():
    """The mailer-daemon exception: From mailer-daemon@, any non-empty
    Auto-Submitted (even "no", quirk Q22), multipart/report (spec 4.6, I6, I7)."""
    md = read_mail("mailer-daemon.eml")
    got = send_checked("incoming", "", [TWO], md, ACCEPT)[0]
    assert got.return_path == "<>", got.return_path
    without = re.sub(rb"(?mi)^Auto-Submitted:.*\n", b"", md)
    check_table([
        ("without Auto-Submitted", "incoming", "", [TWO], without, ENCRYPTION_NEEDED),
        ("Auto-Submitted: no", "incoming", "", [TWO], set_header(md, "Auto-Submitted", "no"),
         ACCEPT),
        ("multipart/mixed", "incoming", "", [TWO],
         set_header(md, "Content-Type",
                    'multipart/mixed; boundary="JAA13167.773673707/CS.UTK.EDU"'),
         ENCRYPTION_NEEDED),
        ("From postmaster", "incoming", "", [TWO],
         set_header(md, "From", "Mail Delivery Subsystem <postmaster@example.org>"),
         ENCRYPTION_NEEDED),
    ])


def test_incoming_disabled_recipients():
    """As going out: DISABLED recipients are removed, none left means dropped."""
    data, tid = marked(encrypted(REMOTE))
    check_reply(relay.send_incoming(REMOTE, [DISABLED, TWO], data), ACCEPT, "disabled + two")
    relay.wait_for_delivery(TWO, tid)
    check_not_delivered(DISABLED, tid)
    data, tid = marked(encrypted(REMOTE))
    check_reply(relay.send_incoming(REMOTE, [DISABLED], data), ACCEPT, "only disabled")
    check_not_delivered(DISABLED, tid)
    # A disabled recipient does not count for enforcement: cleartext to
    # DISABLED (enforcing) + OPEN reaches OPEN.
    send_checked("incoming", REMOTE, [DISABLED, OPEN], plain(REMOTE, OPEN), ACCEPT,
                 deliver_to=[OPEN])


# -- both --------------------------------------------------------------------

def test_size_limit():
    """Over max_message_size: 552 in both directions, even for encrypted mail."""
    enc = read_mail("encrypted.eml")
    big = enc + b"epilogue line of padding to make the message big\r\n" * (MAX_SIZE // 50 + 10)
    for direction in ("outgoing", "incoming"):
        send_checked(direction, ONE, [TWO], enc + b"short epilogue\r\n" * 100, ACCEPT)
        check_reply(send(direction, ONE, [TWO], big), "552 Message exceeds maximum size",
                    f"{direction} oversize")


def test_several_messages_per_session():
    """Verdicts and envelopes do not leak from one transaction to the next,
    nor from an aborted one (RSET)."""
    (enc, t1), (enc2, t2) = marked(encrypted(ONE)), marked(encrypted(ONE))
    s = relay.connect("submission", login=ONE)
    try:
        check_reply(smtp_send(s, ONE, [DISABLED], enc), ACCEPT, "1st: only disabled")
        check_reply(smtp_send(s, ONE, [TWO], plain(ONE)), ENCRYPTION_NEEDED, "2nd: cleartext")
        assert s.docmd("MAIL", f"FROM:<{ONE}>")[0] == 250
        assert s.docmd("RCPT", f"TO:<{OPEN}>")[0] == 250
        assert s.rset()[0] == 250
        check_reply(smtp_send(s, ONE, [TWO], enc2), ACCEPT, "3rd: after RSET")
    finally:
        s.quit()
    got = relay.wait_for_delivery(TWO, t2)
    assert got.return_path == f"<{ONE}>"
    check_not_delivered(OPEN, t2)
    check_not_delivered(DISABLED, t1)


def test_concurrent_sessions():
    """Many sessions at once (libmilter runs their callbacks on a thread pool):
    every one gets its own verdict."""
    kinds = [("outgoing", ONE, encrypted, ACCEPT),
             ("outgoing", ONE, plain, ENCRYPTION_NEEDED),
             ("incoming", REMOTE, encrypted, ACCEPT),
             ("incoming", REMOTE, plain, ENCRYPTION_NEEDED)]
    jobs = []
    for i in range(48):
        direction, sender, make, expected = kinds[i % len(kinds)]
        data, tid = marked(make(sender))
        jobs.append((direction, sender, data, tid, expected))
    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        replies = list(pool.map(lambda j: send(j[0], j[1], [TWO], j[2]), jobs))
    wrong = [f"{j[0]} {j[4]}: got {r!r}" for j, r in zip(jobs, replies) if not matches(r, j[4])]
    assert not wrong, "\n".join(wrong)
    for (direction, sender, data, tid, expected), r in zip(jobs, replies):
        if expected == ACCEPT:
            relay.wait_for_delivery(TWO, tid)


# -- logging -----------------------------------------------------------------

# The lines operators' mtail rules count (spec 9.2), with level and target.
METRIC_LINES = ("Outgoing: Filtering encrypted mail.", "Outgoing: Filtering unencrypted mail.",
                "Incoming: Filtering encrypted mail.", "Incoming: Filtering unencrypted mail.",
                "Incoming: Filtering mailer-daemon message from", "Rejected unencrypted mail")


def test_log_lines():
    """Each message logs its "Filtering" line once, with upstream's level,
    target and text, and the warnings upstream's dashboards match (spec 9,
    O35, I6, O29-O31)."""
    steps = [
        ("outgoing", ONE, [TWO], encrypted(ONE),
         ["[INFO  filtermail::outbound] Outgoing: Filtering encrypted mail."]),
        ("outgoing", ONE, [TWO], plain(ONE),
         ["[INFO  filtermail::outbound] Outgoing: Filtering unencrypted mail.",
          "[WARN  filtermail::outbound] Rejected unencrypted mail from: one@example.org"]),
        ("outgoing", ONE, [ONE], read_mail("asm.eml"),
         ["[INFO  filtermail::outbound] Outgoing: Filtering unencrypted mail."]),
        ("incoming", REMOTE, [TWO], encrypted(REMOTE),
         ["[INFO  filtermail::inbound] Incoming: Filtering encrypted mail."]),
        ("incoming", REMOTE, [TWO], plain(REMOTE),
         ["[INFO  filtermail::inbound] Incoming: Filtering unencrypted mail.",
          "[WARN  filtermail::inbound] Rejected unencrypted mail from: alice@remote.example"]),
        ("incoming", "", [TWO], read_mail("mailer-daemon.eml"),
         ["[INFO  filtermail::inbound] Incoming: Filtering mailer-daemon message from "
          "<mailer-daemon@example.org>"]),
        ("outgoing", ONE, [DISABLED, TWO], encrypted(ONE),
         ["[INFO  filtermail::outbound] Outgoing: Filtering encrypted mail.",
          "[WARN  filtermail::outbound] Disabled recipient: disabled@example.org; "
          "removing from RCPT TO"]),
        ("outgoing", ONE, [DISABLED], encrypted(ONE),
         ["[INFO  filtermail::outbound] Outgoing: Filtering encrypted mail.",
          "[WARN  filtermail::outbound] Dropping mail; All recipients disabled."]),
        ("incoming", REMOTE, [DISABLED], encrypted(REMOTE),
         ["[INFO  filtermail::inbound] Incoming: Filtering encrypted mail.",
          "[WARN  filtermail::smtp_server] Dropping mail; All recipients disabled."]),
        ("outgoing", DSENDER, [TWO], encrypted(DSENDER),
         ["[INFO  filtermail::outbound] Outgoing: Filtering encrypted mail.",
          "[WARN  filtermail::outbound] Dropping mail; Sender dsender@example.org is disabled."]),
    ]
    wrong = []
    for direction, sender, rcpts, data, want in steps:
        mark = len(relay.milter_log())
        send(direction, sender, rcpts, data)
        lines = relay.milter_log()[mark:].splitlines()
        for line in want:
            if lines.count(line) != 1:
                wrong.append(f"{direction} from <{sender}> to {rcpts}: {line!r} logged "
                             f"{lines.count(line)} times")
        counted = [m for m in METRIC_LINES for line in lines if m in line]
        if len(counted) != sum(1 for line in want for m in METRIC_LINES if m in line):
            wrong.append(f"{direction} from <{sender}> to {rcpts}: metric lines {counted}")
    assert not wrong, "\n".join(wrong)


def test_log_lines_cannot_be_split_by_message_text():
    """An RFC 2047-encoded newline in From (here on a mailer-daemon report,
    whose From is quoted in the metric line) stays inside its one log line:
    the log module makes every line safe, whichever caller logged it."""
    md = read_mail("mailer-daemon.eml")
    forged = set_header(md, "From", "=?utf-8?q?=3Cmailer-daemon=40example.net=0A"
                                    "=5BWARN__filtermail=3A=3Ainbound=5D_injected2=3E?=")
    mark = len(relay.milter_log())
    send("incoming", "", [TWO], forged)
    lines = relay.milter_log()[mark:].splitlines()
    # The address is lowercased: a split would start a line "[warn  ...".
    alien = [line for line in lines if not re.match(r"\[(ERROR|WARN |INFO |DEBUG|TRACE) ", line)]
    assert not alien, f"a peer's text started a log line: {alien}"
    assert any("Filtering mailer-daemon message from <mailer-daemon@example.net?[warn" in line
               and line.endswith("injected2>") for line in lines), lines


# -- bad input ---------------------------------------------------------------

def nested_multipart(sender, depth, top="multipart/mixed"):
    head = (f"From: <{sender}>\r\nTo: <{TWO}>\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
            f"Content-Type: {top}; boundary=\"b0\"\r\n\r\n")
    body = ""
    for i in range(1, depth):
        body += f"--b{i - 1}\r\nContent-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n"
    body += f"--b{depth - 1}\r\nContent-Type: text/plain\r\n\r\nhello\r\n"
    for i in reversed(range(depth)):
        body += f"--b{i}--\r\n"
    return (head + body).encode()


def bad_inputs(sender):
    """(name, message) pairs that must never be accepted."""
    enc = encrypted(sender)
    armor_at = enc.index(b"-----BEGIN PGP MESSAGE-----\r\n\r\n") + 33
    froms = b"".join(f"From: <user{i}@example.net>\r\n".encode() for i in range(49))
    return [
        ("50 From fields", plain(sender, headers=froms)),
        ("50 From fields, the first foreign", froms + plain(sender)),
        ("multipart nested 100 deep", nested_multipart(sender, 100)),
        ("multipart/encrypted nested 100 deep",
         nested_multipart(sender, 100, top="multipart/encrypted")),
        ("garbage base64 part", pgp_mime(sender, [VERSION_PART, (
            OCTET_STREAM + "Content-Transfer-Encoding: base64\r\n",
            "!!!!****garbage$$$$ not base64 at all ====\r\n")])),
        ("garbage base64 armor", pgp_mime(sender, [VERSION_PART, (
            OCTET_STREAM, "-----BEGIN PGP MESSAGE-----\r\n\r\n@@@@####%%%%\r\n=abcd\r\n"
                          "-----END PGP MESSAGE-----\r\n")])),
        ("8-bit bytes in a cleartext body",
         plain(sender, body=b"\xff\xfe caf\xe9 \xc3\x28 \x80\r\n")),
        ("8-bit bytes in a header", plain(sender, headers=b"X-Subject: \xff\xfe\xe9\r\n")),
        ("8-bit byte inside the armor", enc[:armor_at] + b"\xff" + enc[armor_at + 1:]),
        ("70 kB folded header",
         plain(sender, headers=b"X-Long: " + (b"x" * 70 + b"\r\n ") * 1000 + b"end\r\n")),
        ("header without a colon", plain(sender, headers=b"NoColonHere\r\n")),
    ]


def test_bad_input_rejected_and_milter_survives():
    """Malformed or hostile messages get 500 or 523 at end of data, never 250,
    in both directions, and the milter keeps serving (checked after every
    test by the runner; here also with a good message)."""
    wrong = []
    for direction, sender in (("outgoing", ONE), ("incoming", REMOTE)):
        for name, data in bad_inputs(sender):
            reply = send(direction, sender, [TWO], data)
            if reply.code not in (500, 523) or reply.stage != "end of data":
                wrong.append(f"{direction} {name}: got {reply!r}, expected 500 or 523")
            relay.check_milter()
    assert not wrong, "\n".join(wrong)
    send_checked("outgoing", ONE, [TWO], encrypted(ONE), ACCEPT)
    send_checked("incoming", REMOTE, [TWO], encrypted(REMOTE), ACCEPT)


def test_long_reply_texts_reach_client():
    """Replies that quote peer text keep upstream's wording however long the
    text: "500 Invalid FROM header: <value>" and "500 Invalid FROM <F> for <S>"
    (the quoted part may be shortened), never Postfix's generic "550 5.7.1
    Command rejected", which is what a reply libmilter refuses turns into."""
    long_from = [
        ("1.5 kB unparsable From", "not an address " * 100),
        ("5 kB From address", "<" + "a" * 5000 + "@example.org>"),
        ("500 percent signs", "%" * 500),
    ]
    wrong = []
    for direction in ("outgoing", "incoming"):
        for name, value in long_from:
            reply = send(direction, ONE, [TWO], set_header(plain(ONE), "From", value))
            want = "Invalid FROM header: " + value[:40]
            if reply.code != 500 or not reply.message.startswith(want):
                wrong.append(f"{direction} {name}: got {str(reply)[:80]!r}, "
                             f"expected '500 {want}...'")
    # Long (but for Postfix acceptable) envelope and From addresses.
    sender, forged = "s" * 480 + "@example.org", "f" * 480 + "@example.org"
    reply = relay.send_outgoing(sender, [TWO], encrypted(forged), login=ONE)
    if reply.code != 500 or not reply.message.startswith("Invalid FROM <fff"):
        wrong.append(f"outgoing From mismatch, 490-byte addresses: got {str(reply)[:80]!r}, "
                     "expected '500 Invalid FROM <fff...'")
    assert not wrong, "\n".join(wrong)


def test_slow_upload_gets_the_real_verdict():
    """Postfix sends the milter nothing while a client uploads (cleanup passes
    the headers on after the whole DATA): an upload silent for longer than the
    milter's packet timeout (filtermail_milter_timeout, 2 s here) still gets
    the milter's verdict, not Postfix's tempfail for a lost milter."""
    with Relay(ini={"filtermail_milter_timeout": "2"}) as r:
        r.add_user(TWO)
        for direction, sender, data, expected in (
                ("incoming", REMOTE, plain(REMOTE), ENCRYPTION_NEEDED),
                ("outgoing", ONE, encrypted(ONE), ACCEPT)):
            s = r.connect("smtp" if direction == "incoming" else "submission",
                          login=ONE if direction == "outgoing" else None)
            try:
                assert s.docmd("MAIL", f"FROM:<{sender}>")[0] == 250
                assert s.docmd("RCPT", f"TO:<{TWO}>")[0] == 250
                assert s.docmd("DATA")[0] == 354
                body = smtp_data(data)
                s.send(body[:len(body) // 2])
                time.sleep(5)
                s.send(body[len(body) // 2:] + b".\r\n")
                code, msg = s.getreply()
            finally:
                s.close()
            check_reply(Reply(code, msg.decode("utf-8", "replace"), "end of data"), expected,
                        f"{direction} slow upload")


def test_shutdown_with_sessions_in_flight():
    """SIGTERM while clients keep sending through 20 Postfix sessions (some
    between messages, some with MAIL and RCPT given, which Postfix buffers
    until end of data, some inside the milter's end-of-message step): the
    milter exits 0 within seconds with no sanitizer report, and every reply
    is either its real verdict or Postfix's tempfail, never an accept."""
    with Relay() as r:
        r.add_user(TWO)
        idle = [r.connect("smtp") for _ in range(5)]
        pending = []
        for _ in range(5):
            s = r.connect("smtp")
            assert s.docmd("MAIL", f"FROM:<{REMOTE}>")[0] == 250
            assert s.docmd("RCPT", f"TO:<{TWO}>")[0] == 250
            pending.append(s)
        stop = threading.Event()
        replies = []

        def sender():
            while not stop.is_set():
                replies.append(r.send_incoming(REMOTE, [TWO], plain(REMOTE)))

        threads = [threading.Thread(target=sender) for _ in range(10)]
        for t in threads:
            t.start()
        time.sleep(1)
        proc = r.milter_proc
        r._milter_expected_dead = True
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(10)
        finally:
            stop.set()
            for t in threads:
                t.join()
        for s in pending:
            assert s.docmd("DATA")[0] == 354
            s.send(smtp_data(plain(REMOTE)) + b".\r\n")
            code, msg = s.getreply()
            replies.append(Reply(code, msg.decode("utf-8", "replace"), "end of data"))
        for s in idle + pending:
            s.close()
        assert status == 0, f"exit status {status}"
        problem = r._sanitizer_problem()
        assert problem is None, problem
        wrong = [x for x in replies if not (matches(x, ENCRYPTION_NEEDED) or 400 <= x.code < 500)]
        assert not wrong, wrong
        assert any(matches(x, ENCRYPTION_NEEDED) for x in replies), replies[:3]
        assert any(400 <= x.code < 500 for x in replies), replies[-3:]


def test_bare_socket_path_reaches_postfix():
    """filtermail_milter_socket = /path (a form the milter accepts): the socket
    is handed to filtermail_user and the Postfix group, 0660, and mail is
    filtered (it once stayed root:root 0770: Postfix could not connect and
    deferred everything)."""
    r = Relay()
    r.extra_ini["filtermail_milter_socket"] = str(r.milter_socket)
    try:
        r.start()
        r.add_user(TWO)
        check_reply(r.send_outgoing(ONE, [TWO], encrypted(ONE)), ACCEPT, "bare socket path")
        check_reply(r.send_outgoing(ONE, [TWO], plain(ONE)), ENCRYPTION_NEEDED,
                    "bare socket path, cleartext")
        st = os.stat(r.milter_socket)
        assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == \
            (pwd.getpwnam("nobody").pw_uid, grp.getgrnam("postfix").gr_gid, 0o660), st
    finally:
        r.stop()


def test_second_milter_leaves_the_socket_alone():
    """A second milter started on the socket of a running one fails, and the
    running one keeps its socket and keeps filtering."""
    with Relay() as r:
        r.add_user(TWO)
        second = subprocess.run([str(r.binary), str(r.ini_path)], capture_output=True,
                                timeout=30, env=dict(os.environ, FILTERMAIL_SKIP_DKIM="1"))
        assert second.returncode == 1, second
        assert b"listen" in second.stderr or b"socket" in second.stderr, second.stderr
        check_reply(r.send_outgoing(ONE, [TWO], plain(ONE)), ENCRYPTION_NEEDED,
                    "after a second milter tried the socket")


# -- milter failure ----------------------------------------------------------

def short_milter_timeouts(r):
    """main.cf text: the milter with 3 s timeouts (a later line wins)."""
    return (f"smtpd_milters = {{ unix:{r.milter_socket}, default_action=tempfail,"
            " command_timeout=3s, content_timeout=3s }\n")


def test_milter_down_killed_or_hung_tempfails():
    """No milter, a milter killed in the middle of a session, or one that
    hangs: the client gets 4xx (milter_default_action = tempfail), never an
    accept."""
    with Relay(main_cf=short_milter_timeouts) as r:
        r.add_user(TWO)
        r.kill_milter()
        reply = r.send_outgoing(ONE, [TWO], encrypted(ONE))
        assert 400 <= reply.code < 500, f"milter down, outgoing: {reply!r}"
        reply = r.send_incoming(REMOTE, [TWO], encrypted(REMOTE))
        assert 400 <= reply.code < 500, f"milter down, incoming: {reply!r}"

        r.start_milter()
        data, tid = marked(encrypted(ONE))
        check_reply(r.send_outgoing(ONE, [TWO], data), ACCEPT, "after restart")
        r.wait_for_delivery(TWO, tid)

        # Killed after RCPT, then in the middle of DATA.
        for kill_at in ("RCPT", "DATA"):
            data, tid = marked(encrypted(ONE))
            data = smtp_data(data)
            s = r.connect("submission", login=ONE)
            try:
                assert s.docmd("MAIL", f"FROM:<{ONE}>")[0] == 250
                assert s.docmd("RCPT", f"TO:<{TWO}>")[0] == 250
                if kill_at == "RCPT":
                    r.kill_milter()
                s.putcmd("data")
                code, msg = s.getreply()
                if code == 354:
                    half = len(data) // 2
                    s.send(data[:half])
                    if kill_at == "DATA":
                        r.kill_milter(signal.SIGKILL)
                    s.send(data[half:] + b".\r\n")
                    code, msg = s.getreply()
            finally:
                s.close()
            assert 400 <= code < 500, f"milter killed at {kill_at}: got {code} {msg!r}"
            r.wait_queue_empty()
            assert not r.find(TWO, tid), f"milter killed at {kill_at}: delivered anyway"
            if kill_at == "RCPT":
                r.start_milter()

        # Hung: stopped, it still accepts connections (the kernel's backlog)
        # but never answers.
        r.start_milter()
        r.milter_proc.send_signal(signal.SIGSTOP)
        try:
            data, tid = marked(encrypted(ONE))
            reply = r.send_outgoing(ONE, [TWO], data)
            assert 400 <= reply.code < 500, f"milter hung: {reply!r}"
        finally:
            r.kill_milter()
        r.wait_queue_empty()
        assert not r.find(TWO, tid), "milter hung: delivered anyway"
