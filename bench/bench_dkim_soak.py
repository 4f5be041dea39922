#!/usr/bin/python3
"""bench_dkim_soak: the milter's memory while it verifies 100,000 signed
messages over SMTP (the DKIM issue: "milter memory flat over 100,000
verified messages"), as a daemon behind a real Postfix.

    make bench            (bench/run.py runs it)
    FILTERMAIL_BUILD=build /usr/bin/python3 bench/bench_dkim_soak.py [--messages N]

As root, after `make all build/bench/smtpload`. A private Postfix
(tests/integration/harness.py) takes incoming mail on its port-25 role with
the optimised filtermail-milter verifying DKIM against a key served from a
DNSSEC-signed zone through libunbound (offline), and discards what it
accepts. The message is tests/data/mail/encrypted.eml from alice@remote.test,
signed once by python3-dkim (RSA-2048, relaxed/simple); each of the 20
connections sends it again and again, and every copy is verified.

After 5,000 warm-up messages (key cache filled, threads started), VmHWM is
reset and the milter's memory is read after each tenth of the run. The
figure is the growth of its anonymous memory (RssAnon: heap, thread stacks,
everything a leak or a held message would show in) over the second half of
the run; the growth from the warm state is printed too. VmRSS is printed too; it also counts the pages of code in
the shared libraries (RssFile), which grows a little as rarer code paths
run for the first time and is bounded by the libraries' size. Every
message must get a 250, and the milter's log must count a DKIM pass for
each.

Prints figures; exits 1 only when something could not be measured.
"""
import argparse
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from benchlib import say  # noqa: E402
from harness import Relay, smtp_transaction  # noqa: E402

BUILD = REPO / os.environ.get("FILTERMAIL_BUILD", "build")
SMTPLOAD = REPO / "build" / "bench" / "smtpload"
DKIMTOOL = REPO / "tests" / "support" / "dkimtool.py"
MKZONE = REPO / "tests" / "support" / "mkzone.py"
LOCAL = "example.org"
REMOTE = "remote.test"
SENDER = f"alice@{REMOTE}"
RCPT = f"one@{LOCAL}"
CLIENTS = 20
WARMUP = 5000
STEPS = 10
# "Flat": over the second half of the run the anonymous memory grows by less
# than 256 KiB. A leak of the smallest allocation (32 bytes) in every message
# would add 1.5 MiB there; the allocator settling (each of glibc's arenas,
# up to 8 per CPU, reaching the high-water mark of the sessions it serves)
# adds a little in the first half and almost nothing after.
GROWTH_LIMIT_KIB = 256


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, **kw)


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[key] = int(value.split()[0])
    return out


def signed_message(tmp):
    key = tmp / "rsa.pem"
    sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
       "-out", key)
    record = sh("/usr/bin/python3", DKIMTOOL, "pubkey", key, text=True).stdout.strip()
    txt = " ".join(f'"{record[i:i + 200]}"' for i in range(0, len(record), 200))
    zone = tmp / f"{REMOTE}.zone"
    zone.write_text("\n".join([
        f"@ IN SOA ns.{REMOTE}. hostmaster.{REMOTE}. 1 3600 600 86400 300",
        f"@ IN NS ns.{REMOTE}.", "ns IN A 127.0.0.1",
        f"rsa._domainkey 300 IN TXT {txt}"]) + "\n")
    dns = tmp / "dns"
    sh("/usr/bin/python3", MKZONE, dns, f"{REMOTE}={zone}")
    for p in dns.iterdir():
        p.chmod(0o644)
    dns.chmod(0o755)
    text = (REPO / "tests" / "data" / "mail" / "encrypted.eml").read_bytes()
    text = re.sub(rb"(?mi)^From:.*$", f"From: <{SENDER}>".encode(), text, count=1)
    text = re.sub(rb"(?mi)^To:.*$", f"To: <{RCPT}>".encode(), text, count=1)
    text = text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    signed = subprocess.run(["/usr/bin/python3", str(DKIMTOOL), "sign", str(key), "rsa", REMOTE],
                            input=text, check=True, capture_output=True).stdout
    path = tmp / "signed.eml"
    path.write_bytes(signed)
    return path, dns


def load(port, path, count):
    """Sends count messages over CLIENTS connections; returns smtpload's figures."""
    per = max(1, count // CLIENTS)
    r = subprocess.run([str(SMTPLOAD), "-p", str(port), "-f", str(path), "-c", str(CLIENTS),
                        "-n", str(per), "-F", SENDER, "-R", RCPT, "-e", f"mx.{REMOTE}"],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"smtpload failed: {r.stderr}")
    fields = dict(kv.split("=", 1) for kv in r.stdout.split())
    return {k: float(v) for k, v in fields.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int,
                    default=int(os.environ.get("BENCH_DKIM_SOAK_MESSAGES", 100000)))
    args = ap.parse_args()
    if os.geteuid() != 0:
        say("bench_dkim_soak: run as root (Postfix must start as root)")
        return 1
    # A terminated run still stops its Postfix and milter (the with-block and
    # the harness's exit handlers).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for path in (BUILD / "filtermail-milter", SMTPLOAD):
        if not path.exists():
            say(f"bench_dkim_soak: {path} not built (make all build/bench/smtpload)")
            return 1
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-bench-dkim-"))
    tmp.chmod(0o755)
    try:
        path, dns = signed_message(tmp)
        main_cf = ("# bench_dkim_soak: discard what is accepted\n"
                   "virtual_transport = discard\ndefault_transport = discard\n"
                   "in_flow_delay = 0\n")
        with Relay(domains=(LOCAL,), binary=BUILD / "filtermail-milter", skip_dkim=False,
                   main_cf=main_cf,
                   ini={"filtermail_log_level": "info",
                        "filtermail_unbound_config": str(dns / "unbound.conf"),
                        "filtermail_trust_anchor": str(dns / "trust-anchors")}) as relay:
            relay.add_user(RCPT)
            port = relay.port("smtp")
            reply = smtp_transaction(port, SENDER, [RCPT], path.read_bytes())
            if reply.code != 250:
                raise RuntimeError(f"the signed message was refused: {reply}\n"
                                   + relay.diagnostics())
            pid = relay.milter_proc.pid
            log = relay.milter_log_path
            passes0 = log.read_text(errors="replace").count("DKIM pass")
            t0 = time.monotonic()
            r = load(port, path, WARMUP)
            relay.wait_queue_empty(timeout=300)
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
            warm = status(pid)
            say(f"== DKIM soak: {args.messages} signed messages (RSA-2048) over port 25, "
                f"{CLIENTS} connections, after {WARMUP} warm-up messages")
            say(f"  warm: VmRSS {warm['VmRSS']} KiB (anonymous {warm['RssAnon']}, file "
                f"{warm['RssFile']}), {warm['Threads']} threads")
            sent = 0
            half = None
            bad = int(r["4xx"] + r["5xx"] + r["errors"])
            step = args.messages // STEPS
            for i in range(STEPS):
                r = load(port, path, step)
                sent += int(r["2xx"])
                bad += int(r["4xx"] + r["5xx"] + r["errors"])
                relay.wait_queue_empty(timeout=300)
                st = status(pid)
                if i == STEPS // 2 - 1:
                    half = st
                say(f"  after {sent:>7} messages: anonymous {st['RssAnon']} KiB "
                    f"({st['RssAnon'] - warm['RssAnon']:+d}), file {st['RssFile']} KiB "
                    f"({st['RssFile'] - warm['RssFile']:+d}), VmRSS {st['VmRSS']} KiB, "
                    f"{r['ok_rate']:.0f} msg/s")
            took = time.monotonic() - t0
            passes = log.read_text(errors="replace").count("DKIM pass") - passes0
            end = status(pid)
        growth = end["RssAnon"] - half["RssAnon"]
        total = WARMUP // CLIENTS * CLIENTS + sent
        say(f"  {sent} verified after the warm-up, {bad} not accepted, {passes} DKIM passes "
            f"logged for {total} messages, {took:.0f} s")
        say(f"  anonymous memory over the second half ({sent - sent // 2} messages): "
            f"{growth:+d} KiB; from warm to end {end['RssAnon'] - warm['RssAnon']:+d} KiB, "
            f"VmRSS {end['VmRSS'] - warm['VmRSS']:+d} KiB (peak over the run "
            f"{end['VmHWM'] - warm['VmRSS']:+d} KiB)")
        say(f"  target flat (second half < {GROWTH_LIMIT_KIB} KiB): "
            f"{'PASS' if growth < GROWTH_LIMIT_KIB else 'MISS'}")
        if bad or passes != total:
            say("bench_dkim_soak: not every message was accepted and verified")
            return 1
        return 0
    except Exception as e:
        say(f"bench_dkim_soak: {e}")
        return 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
