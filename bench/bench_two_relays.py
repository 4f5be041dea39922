#!/usr/bin/python3
"""bench_two_relays: mail from one complete relay to another, end to end.

    FILTERMAIL_BUILD=build /usr/bin/python3 bench/bench_two_relays.py
        [--messages N] [--senders S] [--per-sender K] [--rounds R]

As root, on loopback: the two relays of the integration suite
(tests/integration/tworelays_harness.py), a.test and b.test, each a private
Postfix + filtermail-milter (signing, verifying) + filtermail-policyd +
filtermail-transport-client (pipe(8)) + filtermail-deliverd + filtermail-mxdeliv
behind nginx with TLS,
with the optimised build (build/, unless FILTERMAIL_BUILD says otherwise),
log level info, and a rate limit too high to matter. The same two Postfix
instances also relay without filtermail, for the same-run baseline: a
submission service without milter or policy check on a.test, Postfix's own
smtp(8) client (opportunistic STARTTLS, connection cache) instead of the
transport, and a port-25 smtpd without milter on b.test. A third path, the
"gate baseline", keeps the gate's policy work but not our delivery path:
a.test's ordinary submission (filtermail-milter signing, the policy check),
then Postfix's smtp(8) as in the baseline, to a b.test smtpd WITH
filtermail-milter verifying DKIM as the port-25 role does, but without nginx,
filtermail-mxdeliv and the reinjection. So filtermail / gate baseline is the
cost of our delivery path (transport + nginx + mxdeliv), gate baseline /
baseline the cost of the policy (signing, verifying, policy server).

 1. Latency: alice@a.test sends N (1000) messages to bob@b.test one after
    another over one submission session; each is timed from MAIL FROM until
    the file appears in bob's Maildir at b.test (inotify, no polling). p50,
    p90, p99, max. Then the same N through the gate baseline and the
    baseline. Target: p50 <= 100 ms through filtermail.
 2. Throughput: S (20) senders, each with its own session and login, each
    sends K (25) messages to its own recipient at b.test as fast as it can;
    the figure is messages delivered into b.test's Maildir per second, from
    the first MAIL FROM to the last delivery. The three paths take turns
    for R (3) rounds; each ratio is the median of the per-round ratios.

Prints figures and same-run ratios and a summary table; exits 1 only when
something could not be measured (a program not built, a message refused or
not delivered).
"""
import argparse
import os
import pathlib
import re
import signal
import statistics
import sys
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from harness import HarnessError, smtp_connect, smtp_send  # noqa: E402
from tworelays_harness import MaildirWatch, TwoRelays  # noqa: E402
from benchlib import pct, say  # noqa: E402

ALICE = "alice@a.test"
PLAIN_ALICE = "plain-alice@a.test"
GATE_ALICE = "gate-alice@a.test"
BOB = "bob@b.test"
LATENCY_TARGET_MS = 100
DELIVERY_TIMEOUT = 60


class BenchError(Exception):
    """Something could not be measured."""


def ms(seconds):
    return f"{seconds * 1000:.1f} ms"


TICK = os.sysconf("SC_CLK_TCK")


def _proc_table():
    """{pid: (ppid, comm, own cpu s, reaped children's cpu s)} of every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                text = f.read()
        except OSError:
            continue
        comm = text[text.index("(") + 1:text.rindex(")")]
        f = text.rsplit(")", 1)[1].split()
        out[int(d)] = (int(f[1]), comm, (int(f[11]) + int(f[12])) / TICK,
                       (int(f[13]) + int(f[14])) / TICK)
    return out


class CpuMeter:
    """CPU time of the two relays' processes, by component, between start()
    and stop(): Postfix (each master and its daemons, by program name; a
    daemon's reaped children, e.g. pipe(8)'s filtermail-transport-client, under
    "<daemon> children"), nginx, and the filtermail daemons. Processes that
    exit inside the window are counted through their parent's reaped-children
    time."""

    def __init__(self, net):
        self.net = net

    def roots(self):
        roots = {}
        for site in (self.net.a, self.net.b):
            pid = site.relay.master_pid()
            if pid:
                roots[pid] = "postfix"
            for name, proc in (("nginx", site.nginx.proc), ("filtermail-milter",
                               site.relay.milter_proc), ("filtermail-mxdeliv", site.mxdeliv.proc),
                               ("filtermail-policyd", site.policyd.proc),
                               ("filtermail-deliverd", site.deliverd.proc)):
                if proc is not None:
                    roots[proc.pid] = name
        return roots

    def sample(self):
        table = _proc_table()
        roots = self.roots()
        owned = {}
        for pid in table:
            p, chain = pid, 0
            while p in table and p not in roots and chain < 50:
                p, chain = table[p][0], chain + 1
            if p in roots:
                owned[pid] = roots[p]
        return {pid: (owned[pid], table[pid]) for pid in owned}

    def start(self):
        self.before = self.sample()
        self.t0 = time.monotonic()

    def stop(self):
        after = self.sample()
        wall = time.monotonic() - self.t0
        usage = {}
        for pid, (root, (_, comm, own, kids)) in after.items():
            if pid in self.before and self.before[pid][1][1] == comm:
                own -= self.before[pid][1][2]
                kids -= self.before[pid][1][3]
            name = root if root != "postfix" else f"postfix {comm}"
            if root == "nginx":
                name = "nginx"
            usage[name] = usage.get(name, 0) + own
            if kids > 0:
                usage[f"{name} children"] = usage.get(f"{name} children", 0) + kids
        return usage, wall

    @staticmethod
    def describe(usage, wall, messages):
        total = sum(usage.values())
        top = sorted(usage.items(), key=lambda kv: -kv[1])
        parts = ", ".join(f"{k} {v / messages * 1000:.2f}" for k, v in top if v >= 0.005 * total)
        return (f"CPU {total:.1f} s in {wall:.1f} s ({total / wall:.2f} CPUs busy), "
                f"{total / messages * 1000:.1f} ms a message: {parts} (ms a message)")


class Bench:
    def __init__(self, net, args):
        self.net = net
        self.args = args
        self.rows = []
        self.watch = MaildirWatch(net.b.relay.maildirs / "inbox")
        self.senders = [f"sender{i:02d}@a.test" for i in range(1, args.senders + 1)]
        self.plain_senders = [f"plain{i:02d}@a.test" for i in range(1, args.senders + 1)]
        self.gate_senders = [f"gate{i:02d}@a.test" for i in range(1, args.senders + 1)]
        self.rcpts = [f"rcpt{i:02d}@b.test" for i in range(1, args.senders + 1)]

    def row(self, figure, measured, target, verdict):
        self.rows.append((figure, measured, target, verdict))

    def messages(self, sender, rcpt, n):
        """n distinct messages (unique Message-ID and Subject)."""
        return [self.net.message(sender, rcpt, tag=f"{os.urandom(8).hex()}")[0] for _ in range(n)]

    def drain(self):
        """Until both queues are empty and no delivery is pending."""
        for site in (self.net.a, self.net.b):
            site.relay.wait_queue_empty(timeout=120)
        while self.watch.wait(0.2):
            pass

    def check_paths(self):
        """One message each way; the log says which path it took."""
        a = self.net.a
        b_addr = re.escape(self.net.b.addr)
        for service, sender, relay_re in (
                ("submission", ALICE, r"relay=filtermail, .*delivered via HTTPS"),
                ("submission", GATE_ALICE,
                 rf"relay={b_addr}\[{b_addr}\]:{self.net.gate_port}, .*status=sent"),
                ("plain-submission", PLAIN_ALICE,
                 rf"relay={b_addr}\[{b_addr}\]:{self.net.plain_port}, .*status=sent")):
            mark = len(a.maillog())
            data, marker = self.net.message(sender, BOB)
            r = a.submit(sender, [BOB], data, service=service)
            if r.code != 250:
                raise BenchError(f"{service}: {r}")
            got = self.net.b.relay.wait_for_delivery(BOB, marker, timeout=DELIVERY_TIMEOUT)
            self.drain()
            line = [x for x in a.maillog()[mark:].splitlines() if "to=<bob@b.test>" in x]
            if not line or not re.search(relay_re, line[-1]):
                raise BenchError(f"{service}: not the expected path: {line}")
            signed = b"DKIM-Signature:" in got.raw
            if signed != (service == "submission"):
                raise BenchError(f"{service}: DKIM-Signature present={signed}")
        self.drain()

    # -- figure 1 ----------------------------------------------------------------

    def latency_run(self, service, sender, n, warmup=20):
        msgs = self.messages(sender, BOB, n + warmup)
        s = smtp_connect(self.net.a.relay.port(service), login=sender)
        lat, sub = [], []
        try:
            for i, data in enumerate(msgs):
                t0 = time.perf_counter()
                r = smtp_send(s, sender, [BOB], data)
                t1 = time.perf_counter()
                if r.code != 250:
                    raise BenchError(f"{service}: message {i} refused: {r}")
                got = []
                deadline = t0 + DELIVERY_TIMEOUT
                while not got:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        raise BenchError(f"{service}: message {i} not delivered after "
                                         f"{DELIVERY_TIMEOUT} s\n{self.net.diagnostics(15)}")
                    got = self.watch.wait(left)
                t2 = time.perf_counter()
                if len(got) != 1:
                    raise BenchError(f"{service}: {len(got)} files arrived for one message")
                if i >= warmup:
                    lat.append(t2 - t0)
                    sub.append(t1 - t0)
        finally:
            try:
                s.quit()
            except Exception:
                s.close()
        self.drain()
        return lat, sub

    def pipe_delays(self, mark):
        """a.test's pipe(8) delivery times (the 4th `delays` field) and the
        transport's own delay, since mark (maillog, transport log offsets)."""
        log = self.net.a.maillog()[mark[0]:]
        d = [float(m) for m in re.findall(r"relay=filtermail, .*delays=[\d.]+/[\d.]+/[\d.]+/"
                                          r"([\d.]+),", log)]
        t = [float(m) for m in re.findall(r"/https, delay=([\d.]+),",
                                          self.net.a.transport_log_text()[mark[1]:])]
        return d, t

    def latency(self):
        n = self.args.messages
        say(f"== 1. End-to-end latency, {n} messages one after another: MAIL FROM at "
            "a.test's submission until the file is in bob's Maildir at b.test")
        results = {}
        for name, service, sender in (("filtermail", "submission", ALICE),
                                      ("gate", "submission", GATE_ALICE),
                                      ("baseline", "plain-submission", PLAIN_ALICE)):
            mark = (len(self.net.a.maillog()), len(self.net.a.transport_log_text()))
            t0 = time.monotonic()
            lat, sub = self.latency_run(service, sender, n)
            took = time.monotonic() - t0
            results[name] = lat
            say(f"  {name:<11} p50 {ms(pct(lat, 50))}, p90 {ms(pct(lat, 90))}, "
                f"p99 {ms(pct(lat, 99))}, max {ms(max(lat))}, mean {ms(statistics.mean(lat))} "
                f"({len(lat)} messages in {took:.0f} s); submission reply alone: p50 "
                f"{ms(pct(sub, 50))}")
            if name == "filtermail":
                d, t = self.pipe_delays(mark)
                if d and t:
                    say(f"  {'':<11} a.test's pipe(8) delivery (process start to exit): p50 "
                        f"{ms(statistics.median(d))}; the transport's own delivery time: "
                        f"p50 {ms(statistics.median(t))}")
        f, g, b = results["filtermail"], results["gate"], results["baseline"]
        for label, x, y in (("filtermail / baseline", f, b), ("filtermail / gate", f, g),
                            ("gate / baseline", g, b)):
            say(f"  ratio {label + ':':<22} p50 {pct(x, 50) / pct(y, 50):.2f}, "
                f"p99 {pct(x, 99) / pct(y, 99):.2f}")
        say()
        p50 = pct(f, 50) * 1000
        self.row(f"latency a.test -> bob's Maildir, p50 ({n} msgs)", f"{p50:.1f} ms",
                 f"<= {LATENCY_TARGET_MS} ms", "PASS" if p50 <= LATENCY_TARGET_MS else "MISS")
        self.row(f"latency p99 ({n} msgs)", f"{pct(f, 99) * 1000:.1f} ms", "-", "-")
        self.row("latency without filtermail, p50 / p99", f"{pct(b, 50) * 1000:.1f} / "
                 f"{pct(b, 99) * 1000:.1f} ms", "(baseline)", "-")
        lr = pct(f, 50) / pct(b, 50)
        self.row("latency ratio filtermail / baseline, p50", f"{lr:.2f}", "<= 1.5",
                 "PASS" if lr <= 1.5 else "MISS")
        self.row("latency gate baseline, p50 / p99", f"{pct(g, 50) * 1000:.1f} / "
                 f"{pct(g, 99) * 1000:.1f} ms", "(floor)", "-")
        self.row("latency ratio filtermail / gate baseline, p50",
                 f"{pct(f, 50) / pct(g, 50):.2f}", "(our delivery path)", "-")
        self.row("latency ratio gate baseline / baseline, p50",
                 f"{pct(g, 50) / pct(b, 50):.2f}", "(the policy work)", "-")

    # -- figure 2 ----------------------------------------------------------------

    def throughput_run(self, service, senders):
        k = self.args.per_sender
        batches = [self.messages(s, r, k) for s, r in zip(senders, self.rcpts)]
        total = k * len(senders)
        sessions = [smtp_connect(self.net.a.relay.port(service), login=s) for s in senders]
        errors = []
        submitted = [None]
        start = threading.Barrier(len(senders) + 1)

        def send(i):
            s = sessions[i]
            start.wait()
            try:
                for data in batches[i]:
                    r = smtp_send(s, senders[i], [self.rcpts[i]], data)
                    if r.code != 250:
                        errors.append(f"{senders[i]}: {r}")
                        return
            except Exception as e:
                errors.append(f"{senders[i]}: {e!r}")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(senders))]
        for t in threads:
            t.start()
        meter = CpuMeter(self.net)
        meter.start()
        start.wait()
        t0 = time.perf_counter()
        arrived = 0
        done_sending = False
        deadline = t0 + 300
        while arrived < total:
            if not done_sending and not any(t.is_alive() for t in threads):
                done_sending = True
                submitted[0] = time.perf_counter() - t0
                if errors:
                    break
            arrived += len(self.watch.wait(0.05))
            if time.perf_counter() > deadline:
                break
        elapsed = time.perf_counter() - t0
        usage, wall = meter.stop()
        for t in threads:
            t.join()
        if submitted[0] is None:
            submitted[0] = elapsed
        for s in sessions:
            try:
                s.quit()
            except Exception:
                s.close()
        if errors:
            raise BenchError(f"{service}: refused: {errors[:5]}")
        if arrived < total:
            raise BenchError(f"{service}: {arrived} of {total} delivered after 300 s\n"
                             + self.net.diagnostics(15))
        self.drain()
        self.cpu = CpuMeter.describe(usage, wall, total)
        self.usage = (usage, total)
        return total / elapsed, total / submitted[0], elapsed

    def throughput(self):
        n, k, rounds = len(self.senders), self.args.per_sender, self.args.rounds
        say(f"== 2. Sustained throughput a.test -> b.test: {n} senders x {k} messages, "
            f"each sender to its own recipient; delivered into b.test's Maildir per second, "
            f"{rounds} rounds, paths in turns")
        rates = {"filtermail": [], "gate": [], "baseline": []}
        pairs = (("filtermail", "baseline"), ("filtermail", "gate"), ("gate", "baseline"))
        ratios = {pair: [] for pair in pairs}
        per_msg, cpu_msg = {}, {}
        paths = [("filtermail", "submission", self.senders),
                 ("gate", "submission", self.gate_senders),
                 ("baseline", "plain-submission", self.plain_senders)]
        for rnd in range(rounds):
            order = paths[rnd % 3:] + paths[:rnd % 3]
            got = {}
            for name, service, senders in order:
                rate, sub_rate, elapsed = self.throughput_run(service, senders)
                got[name] = rate
                rates[name].append(rate)
                say(f"  round {rnd + 1} {name:<11} {rate:7.1f} msg/s delivered "
                    f"({n * k} in {elapsed:.1f} s; submitted at {sub_rate:.1f} msg/s)")
                if rnd == 0:
                    say(f"  {'':<19} {self.cpu}")
                    usage, total = self.usage
                    cpu_msg[name] = 1000 * sum(usage.values()) / total
                    # The remote delivery's own CPU: pipe(8)'s children (the
                    # client) and filtermail-deliverd, against Postfix's smtp(8).
                    per_msg[name] = 1000 * (
                        usage.get("postfix pipe children", 0) + usage.get("filtermail-deliverd", 0)
                        if name == "filtermail" else usage.get("postfix smtp", 0)) / total
            for x, y in pairs:
                ratios[(x, y)].append(got[x] / got[y])
        f, g, b = (statistics.median(rates[k]) for k in ("filtermail", "gate", "baseline"))
        ratio, fg, gb = (statistics.median(ratios[pair]) for pair in pairs)
        say(f"  median: filtermail {f:.1f} msg/s, gate {g:.1f} msg/s, baseline {b:.1f} msg/s; "
            f"ratios (median of per-round ratios): filtermail / baseline {ratio:.2f}, "
            f"filtermail / gate {fg:.2f}, gate / baseline {gb:.2f}")
        say()
        self.row(f"throughput a.test -> b.test, {n} senders", f"{f:.1f} msg/s", "-", "-")
        self.row("throughput without filtermail", f"{b:.1f} msg/s", "(baseline)", "-")
        self.row("throughput ratio filtermail / baseline", f"{ratio:.2f}", ">= 0.80",
                 "PASS" if ratio >= 0.80 else "MISS")
        self.row("throughput gate baseline", f"{g:.1f} msg/s", "(floor)", "-")
        self.row("throughput ratio filtermail / gate baseline", f"{fg:.2f}",
                 "(our delivery path)", "-")
        self.row("throughput ratio gate baseline / baseline", f"{gb:.2f}", "(the policy work)",
                 "-")
        t, smtp = per_msg.get("filtermail", 0), per_msg.get("baseline", 0)
        self.row("remote delivery CPU a message (client + deliverd)", f"{t:.2f} ms", "<= 3 ms",
                 "PASS" if t <= 3 else "MISS")
        self.row("Postfix smtp(8) CPU a message", f"{smtp:.2f} ms", "(baseline)", "-")
        self.row("CPU a message, filtermail / gate baseline / baseline",
                 " / ".join(f"{cpu_msg.get(k, 0):.1f}" for k in ("filtermail", "gate", "baseline"))
                 + " ms", "-", "-")

    def summary(self):
        say("== Summary (bench_two_relays)")
        head = ("figure", "measured", "target", "result")
        widths = [max(len(str(r[i])) for r in self.rows + [head]) for i in range(4)]
        line = "  ".join("{:<%d}" % w for w in widths)
        say(line.format(*head))
        say(line.format(*("-" * w for w in widths)))
        for r in self.rows:
            say(line.format(*r))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--messages", type=int, default=int(os.environ.get("BENCH_E2E_MESSAGES",
                                                                       "1000")))
    ap.add_argument("--senders", type=int, default=20)
    ap.add_argument("--per-sender", type=int, default=int(os.environ.get("BENCH_E2E_PER_SENDER",
                                                                         "25")))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_E2E_ROUNDS", "3")))
    args = ap.parse_args()
    if os.geteuid() != 0:
        say("bench_two_relays: run as root (Postfix must start as root)")
        return 1
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    senders = [f"plain{i:02d}@a.test" for i in range(1, args.senders + 1)] + [PLAIN_ALICE]
    gate = [f"gate{i:02d}@a.test" for i in range(1, args.senders + 1)] + [GATE_ALICE]
    net = TwoRelays(default_build="build", per_minute=1000000, burst=1000000, retry=10,
                    log_level="info", plain=True, plain_senders=senders, gate_senders=gate)
    failed = False
    try:
        net.start()
        build = os.environ.get("FILTERMAIL_BUILD", "build")
        say(f"bench_two_relays: a.test ({net.a.addr}) -> b.test ({net.b.addr}), programs from "
            f"{build}/, encrypted.eml (about 3 KB; 4 KB once signed), {os.cpu_count()} CPUs")
        say(f"  setup took {time.monotonic() - started:.0f} s")
        say()
        bench = Bench(net, args)
        net.a.relay.add_user(ALICE)
        net.a.relay.add_user(GATE_ALICE)
        for addr in [BOB] + bench.rcpts:
            net.b.relay.add_user(addr)
        bench.check_paths()
        try:
            bench.latency()
            bench.throughput()
        finally:
            bench.watch.close()
        net.check()
        bench.summary()
    except (BenchError, HarnessError) as e:
        say(f"bench_two_relays: {e}")
        failed = True
    finally:
        try:
            net.stop(check=not failed)
        except Exception as e:
            say(f"bench_two_relays: stopping: {e}")
            failed = True
    say(f"(bench_two_relays took {time.monotonic() - started:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
