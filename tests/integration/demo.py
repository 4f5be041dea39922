"""`make demo`: the E2EE gate on a private Postfix on loopback.

Starts Postfix and filtermail-milter ($FILTERMAIL_BUILD, default build/),
sends every message of tests/data/mail through submission (authenticated as
its From address) and through port 25, and prints what happened to each:

    message  direction  verdict  SMTP reply  (and whether it was delivered)

then stops everything. Exits 0 when every reply is the one tests/data lists.
"""
import os
import pathlib
import signal
import sys

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
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
