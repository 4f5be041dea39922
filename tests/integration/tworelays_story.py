"""The two-relay story: what a.test and b.test do with each other's mail.

Each scenario is a function taking a running tworelays_harness.TwoRelays
(after prepare()) and returning a list of short lines saying what was
observed; it raises AssertionError (or HarnessError) when anything is not
as it must be. The integration suite (test_two_relays.py) runs them one per
test; `make demo` (demo.py) runs them in the same order and prints the lines.

STORY lists them in their order: (name, title, function). The order matters
a little: "nginx stopped" clears a.test's transport state afterwards, and
"burst" restarts a.test's policy server with an empty state so that alice
has her whole burst whatever the earlier scenarios sent.
"""
import re
import time

from harness import HarnessError, smtp_send, wait_until
from tworelays_harness import ENCRYPTION_NEEDED

ALICE = "alice@a.test"
BOB = "bob@b.test"
GROUP = [BOB] + [f"member{i:02d}@b.test" for i in range(1, 20)]       # 20 users at b.test
NO_SIGNATURE = "554 5.7.1 No DKIM signature found"
NO_VALID_SIGNATURE = "554 5.7.1 No valid DKIM signature found"
TOO_MUCH = "4.7.1: Too much mail from <{}>, rate-limited until "
DELIVERY_TIMEOUT = 30


def prepare(net):
    """The users: alice at a.test, bob and the group at b.test, every one
    with enforceE2EEincoming (as chatmail creates them)."""
    net.a.relay.add_user(ALICE)
    for addr in GROUP:
        net.b.relay.add_user(addr)


# -- helpers -----------------------------------------------------------------------

def fail(net, text):
    raise AssertionError(f"{text}\n{net.diagnostics(20)}")


def expect_reply(net, reply, text, what):
    if str(reply) != text:
        fail(net, f"{what}: expected {text!r}, got {reply!r}")


def queue_id(net, reply, what):
    m = re.search(r"queued as (\w+)", str(reply))
    if reply.code != 250 or m is None:
        fail(net, f"{what}: expected 250 ... queued as <id>, got {reply!r}")
    return m.group(1)


def wait_log(net, site, pattern, mark, what, timeout=DELIVERY_TIMEOUT, count=1):
    """Waits until pattern (a regexp) matches `count` lines of site's
    maillog written after mark; returns the matches."""
    def found():
        hits = re.findall(pattern, site.maillog()[mark:], re.M)
        return hits if len(hits) >= count else None
    try:
        return wait_until(found, timeout, what, interval=0.1)
    except HarnessError as e:
        fail(net, f"{e}: {pattern!r}")


def wait_delivered(net, addr, marker, timeout=DELIVERY_TIMEOUT):
    try:
        return net.b.relay.wait_for_delivery(addr, marker, timeout=timeout) \
            if addr.endswith("@b.test") else net.a.relay.wait_for_delivery(addr, marker,
                                                                           timeout=timeout)
    except HarnessError as e:
        fail(net, str(e).split("\n--- maillog")[0])


def never_delivered(net, addr, marker, settle=1.0):
    """Nothing holding marker reached addr (after both queues are empty and
    a moment for anything in flight)."""
    time.sleep(settle)
    for site in (net.a, net.b):
        site.relay.wait_queue_empty(timeout=DELIVERY_TIMEOUT)
    site = net.b if addr.endswith("@b.test") else net.a
    got = site.relay.find(addr, marker)
    if got:
        fail(net, f"{addr} received {marker} though it was refused: {got}")


def dkim_domains(raw):
    return re.findall(rb"^DKIM-Signature:.*?\bd=([^;\s]+)", raw, re.M | re.S)


def check_signed_by(net, got, domain, receiver):
    """got carries a signature of domain that the receiving milter verified
    and that python3-dkim verifies too."""
    if dkim_domains(got.raw) != [domain.encode()]:
        fail(net, f"expected one DKIM-Signature with d={domain}, got "
                  f"{dkim_domains(got.raw)} in\n{got.raw[:1500]!r}")
    if not net.dkim_verify(got.raw):
        fail(net, "python3-dkim does not verify the delivered message")
    qid = received_queue_id(got.raw, receiver.mx)
    line = f"{qid}: DKIM pass: d={domain} s=opendkim verified"
    if line not in receiver.milter_log():
        fail(net, f"{receiver.domain}'s milter did not log {line!r}")
    return qid


def received_queue_id(raw, by):
    """The queue id of the topmost Received: field added by host `by`."""
    m = re.search(rb"^Received: [^\n]*(?:\n[ \t][^\n]*)*?\n[ \t]+by " + re.escape(by.encode())
                  + rb" \(Postfix\) with \w+ id (\w+)", raw, re.M)
    if m is None:
        raise AssertionError(f"no Received: by {by} in {raw[:1500]!r}")
    return m.group(1).decode()


def nginx_posts(site, mark):
    return [line for line in site.nginx_requests()[mark:] if '"POST /mxdeliv ' in line]


def wait_nginx_posts(net, site, mark, n, status=200):
    """The nginx access log lines of the n POSTs after mark (written once the
    answer is sent), each with `status`."""
    try:
        lines = wait_until(lambda: (lambda p: p if len(p) >= n else None)(
            nginx_posts(site, mark)), 10, f"{n} POSTs in {site.domain}'s nginx log")
    except HarnessError as e:
        fail(net, str(e))
    if len(lines) != n or not all(f'" {status} ' in line for line in lines):
        fail(net, f"{site.domain}'s nginx: expected {n} POST /mxdeliv with {status}, got {lines}")
    return lines


# -- the scenarios --------------------------------------------------------------------

def encrypted_over_https(net):
    """alice@a.test -> bob@b.test, encrypted: HTTPS /mxdeliv, DKIM signed by
    a.test and verified by b.test, in bob's Maildir."""
    a, b = net.a, net.b
    a_mark, b_nginx, b_mx = len(a.maillog()), len(b.nginx_requests()), len(b.mxdeliv.log())
    data, marker = net.message(ALICE, BOB)
    t0 = time.monotonic()
    reply = a.submit(ALICE, [BOB], data)
    queue_id(net, reply, "a.test's submission")
    got = wait_delivered(net, BOB, marker)
    elapsed = time.monotonic() - t0
    if got.return_path != f"<{ALICE}>":
        fail(net, f"Return-Path {got.return_path}, expected <{ALICE}>")
    sent = wait_log(net, a, rf"to=<{re.escape(BOB)}>, relay=filtermail, .*status=sent "
                    r"\(delivered via filtermail service \((delivered via HTTPS to "
                    rf"mx\.b\.test\[{re.escape(b.addr)}\]:{net.https_port} \(200\))\)\)",
                    a_mark, "a.test's pipe(8) delivery line")
    posts = wait_nginx_posts(net, b, b_nginx, 1)
    mx_log = b.mxdeliv.log()[b_mx:]
    if f"sender <{ALICE}>, 1 recipients" not in mx_log or "(HTTP) 200 250 OK" not in mx_log:
        fail(net, f"b.test's mxdeliv did not log the accepted POST:\n{mx_log}")
    qid = check_signed_by(net, got, "a.test", b)
    if not re.search(rf"postfix/mxdeliv/smtpd\[\d+\]: {qid}: client=", b.maillog()):
        fail(net, f"{qid} did not come through b.test's reinjection service (postfix/mxdeliv)")
    return [f"a.test submission: {reply}",
            f"a.test pipe(8): {sent[0]}",
            f"b.test nginx: {posts[0].split(' - - ')[0]} POST /mxdeliv -> 200; mxdeliv -> "
            f"Postfix reinjection service, queue id {qid}",
            "b.test milter: DKIM pass: d=a.test s=opendkim verified (python3-dkim agrees)",
            f"bob's Maildir: the message, Return-Path <{ALICE}>, {elapsed * 1000:.0f} ms "
            "after submission"]


def reply_from_b(net):
    """bob@b.test answers alice@a.test: the same path the other way."""
    a, b = net.a, net.b
    b_mark, a_nginx = len(b.maillog()), len(a.nginx_requests())
    data, marker = net.message(BOB, ALICE)
    reply = b.submit(BOB, [ALICE], data)
    queue_id(net, reply, "b.test's submission")
    got = wait_delivered(net, ALICE, marker)
    sent = wait_log(net, b, rf"to=<{re.escape(ALICE)}>, relay=filtermail, .*status=sent "
                    r"\(delivered via filtermail service \((delivered via HTTPS to "
                    rf"mx\.a\.test\[{re.escape(a.addr)}\]:{net.https_port} \(200\))\)\)",
                    b_mark, "b.test's pipe(8) delivery line")
    wait_nginx_posts(net, a, a_nginx, 1)
    check_signed_by(net, got, "b.test", a)
    return [f"b.test pipe(8): {sent[0]}",
            "a.test milter: DKIM pass: d=b.test s=opendkim verified; in alice's Maildir"]


def cleartext_refused_at_submission(net):
    """alice's cleartext to bob is refused by a.test's submission (523)."""
    data, marker = net.message(ALICE, BOB, kind="plain.eml")
    reply = net.a.submit(ALICE, [BOB], data)
    expect_reply(net, reply, ENCRYPTION_NEEDED, "cleartext at a.test's submission")
    if reply.stage != "end of data":
        fail(net, f"refused at {reply.stage}, expected at the end of data")
    never_delivered(net, BOB, marker)
    return [f"a.test submission: {reply}", "nothing queued, nothing reached bob"]


def cleartext_refused_by_b(net):
    """Cleartext (DKIM-signed by a.test, so only the encryption is wrong)
    injected straight into b.test, over port 25 and over /mxdeliv: 523."""
    b = net.b
    data, marker = net.message(ALICE, BOB, kind="plain.eml")
    data = net.dkim_sign(data, "a.test")
    reply = b.inject_smtp(ALICE, [BOB], data)
    expect_reply(net, reply, ENCRYPTION_NEEDED, "cleartext into b.test's port 25")
    got = b.post(data, ALICE, [BOB])
    if got != (400, ENCRYPTION_NEEDED):
        fail(net, f"cleartext POSTed to b.test's /mxdeliv: expected (400, "
                  f"{ENCRYPTION_NEEDED!r}), got {got}")
    never_delivered(net, BOB, marker)
    return [f"b.test port 25 ({b.addr}:{net.smtp_port}): {reply}",
            f"b.test https://mx.b.test/mxdeliv: {got[0]} {got[1]}",
            "nothing reached bob"]


def forged_refused_by_b(net):
    """Mail claiming to be from a.test without a.test's signature: 554."""
    b = net.b
    out = []
    # Unsigned, over port 25.
    data, marker = net.message(ALICE, BOB)
    reply = b.inject_smtp(ALICE, [BOB], data)
    expect_reply(net, reply, NO_SIGNATURE, "unsigned From a.test into b.test's port 25")
    out.append(f"unsigned, port 25: {reply}")
    # Signed as d=a.test with a key that is not a.test's, over /mxdeliv.
    forged, marker2 = net.message(ALICE, BOB)
    forged = net.dkim_sign(forged, "a.test", key=net.mallory_key())
    got = b.post(forged, ALICE, [BOB])
    if got != (400, NO_VALID_SIGNATURE):
        fail(net, f"d=a.test signed with another key, POSTed: expected (400, "
                  f"{NO_VALID_SIGNATURE!r}), got {got}")
    out.append(f"d=a.test with another key, /mxdeliv: {got[0]} {got[1]}")
    # A valid signature, but by b.test's own key (d=b.test), over port 25.
    other, marker3 = net.message(ALICE, BOB)
    other = net.dkim_sign(other, "b.test")
    reply = b.inject_smtp(ALICE, [BOB], other)
    expect_reply(net, reply, NO_VALID_SIGNATURE, "From a.test signed d=b.test, port 25")
    out.append(f"valid signature of d=b.test, port 25: {reply}")
    for m in (marker, marker2, marker3):
        never_delivered(net, BOB, m, settle=0)
    return out + ["nothing reached bob"]


def group_message(net):
    """One message from alice to 20 users at b.test reaches all 20."""
    a, b = net.a, net.b
    a_mark, b_nginx = len(a.maillog()), len(b.nginx_requests())
    data, marker = net.message(ALICE, GROUP)
    t0 = time.monotonic()
    reply = a.submit(ALICE, GROUP, data)
    queue_id(net, reply, "a.test's submission of the group message")
    for addr in GROUP:
        got = wait_delivered(net, addr, marker)
        if got.return_path != f"<{ALICE}>":
            fail(net, f"{addr}: Return-Path {got.return_path}")
    elapsed = time.monotonic() - t0
    sent = wait_log(net, a, r"to=<(member\d\d@b\.test|bob@b\.test)>, relay=filtermail, "
                    r".*status=sent \(delivered via filtermail service \(delivered via HTTPS",
                    a_mark, "20 deliveries in a.test's log", count=len(GROUP))
    if sorted(sent) != sorted(GROUP):
        fail(net, f"delivery lines for {sorted(sent)}, expected {sorted(GROUP)}")
    # Recipient limit 1 gives each member its own delivery; those that reach
    # filtermail-deliverd together share a POST (at least one, at most 20).
    try:
        wait_until(lambda: nginx_posts(b, b_nginx), 10, "a POST in b.test's nginx log")
    except HarnessError as e:
        fail(net, str(e))
    time.sleep(0.5)  # every answer was read by a.test: its log lines follow at once
    posts = nginx_posts(b, b_nginx)
    if not 1 <= len(posts) <= len(GROUP) or not all('" 200 ' in p for p in posts):
        fail(net, f"b.test's nginx: expected 1 to {len(GROUP)} POSTs with 200, got {posts}")
    counts = {addr: len(b.relay.find(addr, marker)) for addr in GROUP}
    if set(counts.values()) != {1}:
        fail(net, f"each member must have the message once: {counts}")
    return [f"a.test submission: {reply} (one message, {len(GROUP)} recipients)",
            f"a.test: {len(GROUP)} deliveries via HTTPS (recipient limit 1: one status "
            f"each) in {len(posts)} POSTs",
            f"b.test: {len(GROUP)} Maildir deliveries, each member once, "
            f"{elapsed:.1f} s after submission"]


def nginx_stopped_smtp_starttls(net):
    """With b.test's nginx stopped, alice's mail goes over SMTP with
    STARTTLS (verified by DANE: the TLSA record is DNSSEC-signed)."""
    a, b = net.a, net.b
    a_mark, a_tlog, b_mark = len(a.maillog()), len(a.transport_log_text()), len(b.maillog())
    b.nginx.stop()
    try:
        data, marker = net.message(ALICE, BOB)
        reply = a.submit(ALICE, [BOB], data)
        queue_id(net, reply, "a.test's submission")
        got = wait_delivered(net, BOB, marker)
        sent = wait_log(net, a, rf"to=<{re.escape(BOB)}>, relay=filtermail, .*status=sent "
                        r"\(delivered via filtermail service \((delivered via SMTP to "
                        rf"mx\.b\.test\[{re.escape(b.addr)}\]:{net.smtp_port} \(250 [^)]*\))",
                        a_mark, "a.test's SMTP delivery line")
        tlog = a.transport_log_text()[a_tlog:]
        m = re.search(r"status=sent \(delivered via SMTP[^\n]*", tlog)
        tls = re.search(r"TLSv1\.[23] [\w-]+, verified by DANE", tlog)
        if m is None or tls is None:
            fail(net, f"a.test's transport log does not show a DANE-verified TLS delivery:\n"
                      f"{tlog}")
        received = [f for f in re.findall(rb"^Received: [^\n]*(?:\n[ \t][^\n]*)*", got.raw, re.M)
                    if b"by mx.b.test (Postfix)" in f]
        if not received or b"using TLSv1." not in received[0] \
                or b"with ESMTPS" not in received[0]:
            fail(net, f"no STARTTLS Received: field by mx.b.test in\n{got.raw[:2000]!r}")
        qid = check_signed_by(net, got, "a.test", b)
        if not re.search(rf"postfix/mx/smtpd\[\d+\]: {qid}: client=", b.maillog()[b_mark:]):
            fail(net, f"{qid} did not come through b.test's port-25 smtpd")
        state = a.transport_state()
        if not re.search(rf"^https-refused mx\.b\.test {net.https_port} \d+$", state, re.M):
            fail(net, f"a.test's transport did not remember that HTTPS failed:\n{state}")
    finally:
        b.nginx.start()
        # The transport skips HTTPS to that host for 30 minutes (upstream's
        # rule); the state is documented as harmless to delete.
        a.forget_transport_state()
    return [f"a.test pipe(8): {sent[0]}",
            f"a.test transport: {tls.group(0)}",
            "bob's Maildir: Received: ... by mx.b.test (Postfix) with ESMTPS, DKIM pass "
            "d=a.test at b.test",
            "a.test remembered that mx.b.test refused HTTPS (state cleared afterwards)"]


def b_down_then_back(net, messages=3, down_attempts=2):
    """b.test goes down; alice's mail waits in a.test's queue (retried,
    deferred) and is delivered, exactly once each, when b.test is back."""
    a, b = net.a, net.b
    a_mark = len(a.maillog())
    b.take_down()
    sent = {}
    try:
        t_down = time.monotonic()
        for _ in range(messages):
            data, marker = net.message(ALICE, BOB)
            sent[marker] = queue_id(net, a.submit(ALICE, [BOB], data), "submission to a.test")
        # Every message was tried and deferred at least down_attempts times.
        for qid in sent.values():
            wait_log(net, a, rf"{qid}: to=<{re.escape(BOB)}>, relay=filtermail, .*dsn=4\.[\d.]+, "
                     r"status=deferred \(", a_mark, f"{qid} deferred {down_attempts} times",
                     timeout=10 + 4 * net.retry * down_attempts, count=down_attempts)
        queued = {m["queue_id"]: m for m in a.relay.queue()}
        missing = [q for q in sent.values() if q not in queued]
        if missing:
            fail(net, f"messages not in a.test's queue while b.test is down: {missing}")
        reason = queued[next(iter(sent.values()))]["recipients"][0].get("delay_reason", "")
        for marker in sent:
            if b.relay.find(BOB, marker):
                fail(net, "delivered while b.test was down?")
        down_for = time.monotonic() - t_down
    finally:
        b.bring_up()
    t_up = time.monotonic()
    for marker in sent:
        wait_delivered(net, BOB, marker, timeout=DELIVERY_TIMEOUT + 4 * net.retry)
    back_after = time.monotonic() - t_up
    a.relay.wait_queue_empty(timeout=DELIVERY_TIMEOUT)
    b.relay.wait_queue_empty(timeout=DELIVERY_TIMEOUT)
    counts = {marker: len(b.relay.find(BOB, marker)) for marker in sent}
    if set(counts.values()) != {1}:
        fail(net, f"each message must reach bob exactly once: {counts}")
    log = a.maillog()[a_mark:]
    deferrals = {qid: len(re.findall(rf"{qid}: to=<[^>]+>, .*status=deferred", log))
                 for qid in sent.values()}
    # Back on the first channel: a refused connection while the whole host
    # was down must not push the relay to SMTP for half an hour.
    channels = {qid: re.findall(rf"{qid}: to=<[^>]+>, relay=filtermail, .*status=sent "
                                r"\(delivered via filtermail service \(delivered via (\w+)", log)
                for qid in sent.values()}
    if any(c != ["HTTPS"] for c in channels.values()):
        fail(net, f"after b.test came back, each message must be delivered once, over HTTPS: "
                  f"{channels}")
    return [f"b.test down (nginx, mxdeliv, Postfix, milter, policy server stopped) "
            f"for {down_for:.0f} s",
            f"a.test accepted {messages} messages; deferred {sorted(deferrals.values())} times "
            f"each: {reason[:160]}",
            f"b.test back: all {messages} in bob's Maildir within {back_after:.1f} s, "
            "by Postfix's own retry (no flush), over HTTPS",
            "each exactly once; both queues empty"]


def burst_rate_limited(net):
    """alice sends a burst: ten messages pass, the 11th gets 450 at RCPT;
    the ten reach bob."""
    a = net.a
    # A fresh policy server state: alice has her whole burst, whatever the
    # scenarios before sent.
    a.policyd.stop()
    state = a.relay.tmp / "policyd" / "ratelimit.state"
    if state.exists():
        state.unlink()
    a.policyd.start()
    s = a.session(ALICE)
    markers, replies = [], []
    t0 = time.monotonic()
    try:
        for _ in range(net.burst):
            data, marker = net.message(ALICE, BOB)
            replies.append(smtp_send(s, ALICE, [BOB], data))
            markers.append(marker)
        data, over = net.message(ALICE, BOB)
        eleventh = smtp_send(s, ALICE, [BOB], data)
        elapsed = time.monotonic() - t0
        try:
            s.rset()
            s.quit()
        except Exception:
            s.close()
    except BaseException:
        s.close()
        raise
    interval = 60 / net.per_minute
    if elapsed >= interval:
        fail(net, f"{net.burst + 1} submissions took {elapsed:.1f} s, more than one "
                  f"interval ({interval:.0f} s): too slow to test the burst")
    bad = [r for r in replies if r.code != 250]
    if bad:
        fail(net, f"the first {net.burst} messages must pass: {bad}")
    if eleventh.code != 450 or eleventh.stage != f"RCPT {BOB}" \
            or TOO_MUCH.format(ALICE) not in eleventh.message:
        fail(net, f"message {net.burst + 1}: expected 450 ... {TOO_MUCH.format(ALICE)} at RCPT, "
                  f"got {eleventh!r}")
    for marker in markers:
        wait_delivered(net, BOB, marker)
    never_delivered(net, BOB, over, settle=0)
    return [f"messages 1-{net.burst}: 250 (in {elapsed:.1f} s); all {net.burst} reach bob",
            f"message {net.burst + 1}: {eleventh.code} {eleventh.message[:100]}..."]


STORY = [
    ("encrypted_over_https", "encrypted alice@a.test -> bob@b.test over HTTPS, DKIM "
     "signed and verified", encrypted_over_https),
    ("reply_from_b", "bob@b.test replies to alice@a.test", reply_from_b),
    ("cleartext_refused_at_submission", "cleartext alice -> bob: refused at a.test's "
     "submission", cleartext_refused_at_submission),
    ("cleartext_refused_by_b", "cleartext injected straight into b.test (port 25, "
     "/mxdeliv)", cleartext_refused_by_b),
    ("forged_refused_by_b", "forged From a.test, not signed by a.test", forged_refused_by_b),
    ("group_message", "a group message to 20 users at b.test", group_message),
    ("nginx_stopped_smtp_starttls", "b.test's nginx stopped: SMTP with STARTTLS",
     nginx_stopped_smtp_starttls),
    ("b_down_then_back", "b.test down for a while, then back", b_down_then_back),
    ("burst_rate_limited", "a burst from alice: the 11th message", burst_rate_limited),
]
