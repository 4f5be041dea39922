"""`make demo`: the E2EE gate on a private Postfix on loopback.

Starts Postfix and filtermail-milter ($FILTERMAIL_BUILD, default build/),
sends every message of tests/data/mail through submission (authenticated as
its From address) and through port 25, and prints what happened to each:

    message  direction  verdict  SMTP reply  (and whether it was delivered)

then stops everything.

Then the second part, "two relays on one machine": two complete relays,
a.test and b.test (Postfix, filtermail-milter, filtermail-policyd,
filtermail-transport, filtermail-mxdeliv behind nginx with TLS, DNSSEC-signed
test zones; tworelays_harness.py), and the scenarios of the two-relay suite
(tworelays_story.py) one after the other, each printed with what it
observed and "ok" or "FAILED".

Then the third part, "Delta Chat on two real chatmail relays": a.test and
b.test rendered from chatmail's own configuration and switched by
filtermail-postfix-setup, with Dovecot (chatmail_relay_harness.py, in a
private network namespace); two Delta Chat accounts (the real core over
JSON-RPC, deltachat_client.py) join by securejoin and chat through the gate.

Exits 0 when every reply of the first part is the one tests/data lists,
every scenario of the second part went as it must and the chat of the third
part arrived.
"""
import os
import pathlib
import signal
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import corpus  # noqa: E402
from harness import HarnessError, Relay, add_header, milter_binary  # noqa: E402


def verdict_of(reply):
    if reply.code == 250:
        return "accepted"
    return "tempfail" if 400 <= reply.code < 500 else "rejected"


def main():
    if os.geteuid() != 0:
        print("demo: must run as root (Postfix needs it)", file=sys.stderr)
        return 1
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    binary = milter_binary(default_build="build")
    rows, wrong = [], 0
    with Relay(binary=binary) as relay:
        relay.add_user(corpus.ENFORCING_RCPT)
        relay.add_user(corpus.OPEN_RCPT, enforce=False)
        print(f"Postfix on 127.0.0.1: port-25 role on :{relay.port('smtp')}, "
              f"submission on :{relay.port('submission')}; milter {binary}\n")
        for n, case in enumerate(corpus.cases()):
            tag = f"demo-{n}"
            data = add_header(case.data, "X-Demo-Id", tag)
            if case.direction == "outgoing":
                reply = relay.send_outgoing(case.mail_from, case.rcpts, data)
            else:
                reply = relay.send_incoming(case.mail_from, case.rcpts, data)
            delivered = ""
            if reply.code == 250:
                try:
                    relay.wait_for_delivery(case.rcpts[0], tag, timeout=10)
                    delivered = "delivered"
                except HarnessError:
                    delivered = "NOT DELIVERED"
            ok = case.matches(reply) and delivered != "NOT DELIVERED"
            wrong += not ok
            rows.append((case.name + (f" ({case.note})" if case.note else ""),
                         f"{case.direction} <{case.mail_from}> -> {','.join(case.rcpts)}",
                         verdict_of(reply), "ok" if ok else "WRONG",
                         str(reply) + (f"  [{delivered}]" if delivered else "")))

    headers = ("message", "direction, envelope", "verdict", "check", "SMTP reply")
    widths = [max(len(r[i]) for r in rows + [headers]) for i in range(4)]
    for r in [headers] + rows:
        print("  ".join(f"{v:<{w}}" for v, w in zip(r, widths)) + "  " + r[4])
    print(f"\n{len(rows) - wrong}/{len(rows)} verdicts as expected "
          "(tests/data/verdicts.tsv, tests/data/README.md)")
    failed = two_relays()
    failed += delta_chat()
    return 1 if wrong or failed else 0


def two_relays():
    """The second part; returns the number of scenarios that failed."""
    import tworelays_story as story
    from tworelays_harness import TwoRelays

    print("\n== Two relays on one machine\n")
    started = time.monotonic()
    net = TwoRelays(default_build="build")
    try:
        net.start()
    except Exception as e:
        print(f"FAILED: the two relays did not start: {e}")
        return 1
    failed = 0
    try:
        story.prepare(net)
        print(f"a.test: MX mx.a.test = {net.a.addr}, b.test: MX mx.b.test = {net.b.addr}; "
              f"port-25 role on :{net.smtp_port}, nginx (HTTPS /mxdeliv) on :{net.https_port} "
              "of each;\nDNSSEC-signed zones (MX, A, TLSA, DKIM keys); transport as pipe(8) "
              "default_transport;\nrate limit "
              f"{net.per_minute}/minute, bursts of {net.burst}\n")
        for n, (name, title, fn) in enumerate(story.STORY, 1):
            t0 = time.monotonic()
            try:
                lines = fn(net)
                net.check()
                verdict = "ok"
            except Exception as e:
                failed += 1
                verdict = "FAILED"
                lines = str(e).splitlines()[:12]
            print(f"{n}. {title}: {verdict} ({time.monotonic() - t0:.1f} s)")
            for line in lines:
                print(f"     {line}")
    finally:
        try:
            net.stop(check=not failed)
        except Exception as e:
            failed += 1
            print(f"FAILED: stopping the two relays: {e}")
    print(f"\n{len(story.STORY) - failed}/{len(story.STORY)} two-relay scenarios as expected "
          f"({time.monotonic() - started:.0f} s)")
    return failed


def delta_chat():
    """The third part; returns 1 when it failed."""
    from chatmail_relay_harness import (ChatmailRelays, enter_private_network,
                                        leave_private_network)
    from deltachat_client import DeltaChat

    print("\n== Delta Chat on two real chatmail relays\n")
    started = time.monotonic()
    enter_private_network()
    net = ChatmailRelays(default_build="build")
    try:
        net.start()
        for site in net.sites:
            print(f"{site.domain} ({site.config.name} configuration) on {site.addr}: "
                  "filtermail-postfix-setup said:")
            for line in site.setup_output.splitlines():
                if "may search" in line or "setting(s) changed" in line:
                    print(f"     {line.split(': ', 1)[1].split('; saved')[0]}")
        net.a.create_account("alice@a.test", "alice-password-1")
        net.b.create_account("bob@b.test", "bob-password-123")
        with DeltaChat(net.tmp / "deltachat") as dc:
            alice = dc.account("alice@a.test", "alice-password-1", net.a.addr)
            bob = dc.account("bob@b.test", "bob-password-123", net.b.addr)
            print("alice@a.test and bob@b.test configured (Delta Chat core "
                  f"{dc.call('get_system_info')['deltachat_core_version']})")
            mark = bob.mark()
            chat = bob.call("secure_join", alice.call("get_chat_securejoin_qr_code", None))
            bob.wait_event("SecurejoinJoinerProgress", lambda e: e["progress"] == 1000,
                           since=mark, timeout=90)
            print("bob scanned alice's QR code: securejoin done, both verified")
            mark = alice.mark()
            bob.call("misc_send_text_message", chat, "Hi alice, this is bob on b.test")
            msg = alice.wait_message("Hi alice", since=mark)
            print(f"alice got: {msg['text']!r} (encrypted: {msg['showPadlock']})")
            mark = bob.mark()
            alice.call("misc_send_text_message",
                       alice.call("create_chat_by_contact_id", msg["fromId"]),
                       "Hi bob, alice here on a.test")
            msg = bob.wait_message("Hi bob", since=mark)
            print(f"bob got: {msg['text']!r} (encrypted: {msg['showPadlock']})")
        for site in net.sites:
            verdicts = [l.split("] ", 1)[1] for l in site.milter_log().splitlines()
                        if ": verdict " in l]
            sent = [l for l in site.transport_log_text().splitlines() if "status=sent" in l]
            print(f"{site.domain}: milter {len(verdicts)} verdicts (last: {verdicts[-1]}); "
                  f"transport {len(sent)} sent; mxdeliv "
                  f"{site.mxdeliv.log().count('(HTTP) 200 250 OK')} accepted")
        net.stop()
        print(f"\nDelta Chat through the gate: ok ({time.monotonic() - started:.0f} s)")
        return 0
    except Exception as e:
        print(f"FAILED: {e}")
        try:
            print(net.diagnostics(15))
            net.stop(check=False)
        except Exception:
            pass
        return 1
    finally:
        leave_private_network()


if __name__ == "__main__":
    sys.exit(main())
