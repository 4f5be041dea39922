#!/usr/bin/python3
"""bench/run.py: the `make bench` driver. Prints figures and same-run ratios.

    make bench      # as root: builds, then FILTERMAIL_BUILD=build bench/run.py

What it measures (see bench/README.md):

 1. SMTP accept rate. One private Postfix (tests/integration/harness.py) with
    four submission-role services that differ only in smtpd_milters: none,
    filtermail-milter, bench/null_milter (filtermail's protocol server
    accepting every message unread: the floor of what any milter that reads
    the body costs Postfix) and bench/naive_milter (libmilter, buffers the
    whole message).
    build/bench/smtpload drives each with 20 concurrent clients, as an
    authenticated submission client (XCLIENT LOGIN=), sending 2 KB and 100 KB
    PGP/MIME messages built from tests/data/mail/encrypted.eml. Postfix
    discards what it accepts (default_transport = discard, in_flow_delay = 0),
    so the SMTP accept path is what is timed. Only 250 replies count. The
    four services run in turns for several rounds; the figure is the median
    over rounds of (rate with the milter / rate without) in the same round.
 2. build/bench/bench_mime: the check alone on a 30 MiB message.
 3. Milter memory: 50 clients each send 1 MiB messages at once while
    /proc/<pid>/status is sampled; the peak VmRSS (and VmHWM, reset just
    before the run) of filtermail-milter, the null and the naive milter.
 4. build/bench/bench_policyd, when it has been built; then any other
    build/bench/bench_* program (bench_dkim, bench_transport), and the
    Python benchmarks bench_dkim_soak.py and bench_two_relays.py, output
    shown as is.

Ends with a table of every figure, its target and PASS or MISS. Timings are
reported, never asserted: the exit status is 1 only when something could not
be measured (a build missing, a message refused, a daemon failing).
"""
import os
import pathlib
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from harness import HarnessError, Relay, read_mail, smtp_transaction, wait_until  # noqa: E402
from benchlib import say  # noqa: E402

BUILD = REPO / os.environ.get("FILTERMAIL_BUILD", "build")
BENCH_BIN = BUILD / "bench"

SENDER = "one@example.org"          # the From: of encrypted.eml; also the login
RCPT = "bob@example.net"            # a foreign domain: default_transport = discard

# Throughput runs (figure 1).
CLIENTS = 20
SIZES = (("2 KB", 2 * 1024), ("100 KB", 100 * 1024))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "6"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "3"))
WARMUP_SECONDS = 2
MIN_RATIO = 0.90

# Memory runs (figure 3).
MEM_CLIENTS = 50
MEM_SIZE = 1024 * 1024
MEM_PER_CLIENT = int(os.environ.get("BENCH_MEM_MESSAGES", "3"))
MEM_TARGET = 16 * 1024 * 1024
SAMPLE_INTERVAL = 0.005

MIME_TARGET_GBS = 1.0

CONFIGS = (("none", "no milter"), ("filtermail", "filtermail-milter"),
           ("null", "null milter"), ("naive", "naive milter"))


class BenchError(Exception):
    """Something could not be measured."""


# ---------------------------------------------------------------------------
# Messages: encrypted.eml with its SEIPD packet resized.

def _crc24(data):
    crc = 0xB704CE
    for byte in data:
        crc ^= byte << 16
        for _ in range(8):
            crc <<= 1
            if crc & 0x1000000:
                crc ^= 0x1864CFB
    return crc & 0xFFFFFF


def _packets(data):
    """[(tag, body)] of a sequence of new-format OpenPGP packets."""
    out, p = [], 0
    while p < len(data):
        head = data[p]
        if head & 0xC0 != 0xC0:
            raise BenchError("encrypted.eml: expected new-format OpenPGP packets")
        tag, first = head & 0x3F, data[p + 1]
        if first < 192:
            hlen, blen = 2, first
        elif first < 224:
            hlen, blen = 3, ((first - 192) << 8) + data[p + 2] + 192
        elif first == 255:
            hlen, blen = 6, int.from_bytes(data[p + 2:p + 6], "big")
        else:
            raise BenchError("encrypted.eml: partial body lengths not expected")
        out.append((tag, data[p + hlen:p + hlen + blen]))
        p += hlen + blen
    return out


def _packet(tag, body):
    n = len(body)
    if n < 192:
        length = bytes([n])
    elif n < 8384:
        length = bytes([((n - 192) >> 8) + 192, (n - 192) & 0xFF])
    else:
        length = b"\xff" + n.to_bytes(4, "big")
    return bytes([0xC0 | tag]) + length + body


def _armor(data):
    import base64
    b64 = base64.b64encode(data)
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    crc = base64.b64encode(_crc24(data).to_bytes(3, "big"))
    return (b"-----BEGIN PGP MESSAGE-----\r\n\r\n" + b"\r\n".join(lines) + b"\r\n="
            + crc + b"\r\n-----END PGP MESSAGE-----")


def build_message(size):
    """encrypted.eml (CRLF) whose SEIPD packet is cut or padded with random
    bytes so that the message has about `size` bytes. The check never reads
    packet bodies, so the result passes it exactly as the original does."""
    import base64
    raw = read_mail("encrypted.eml").replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    raw = raw.replace(b"{subject}", b"[...]")
    begin = raw.index(b"-----BEGIN PGP MESSAGE-----")
    end_marker = b"-----END PGP MESSAGE-----"
    end = raw.index(end_marker) + len(end_marker)
    lines = raw[begin:end].split(b"\r\n")[1:-1]
    b64 = b"".join(line for line in lines if line and not line.startswith(b"="))
    packets = _packets(base64.b64decode(b64))
    if packets[-1][0] != 18 or any(tag not in (1, 3) for tag, _ in packets[:-1]):
        raise BenchError("encrypted.eml: not PKESK/SKESK packets then one SEIPD")
    prefix = b"".join(_packet(tag, body) for tag, body in packets[:-1])
    seipd = packets[-1][1] + random.Random(size).randbytes(max(0, size * 3 // 4))

    def render(n):
        return raw[:begin] + _armor(prefix + _packet(18, seipd[:n])) + raw[end:]

    n = len(packets[-1][1])
    for _ in range(30):
        msg = render(n)
        diff = size - len(msg)
        if abs(diff) < 4:
            break
        n = max(1, n + diff * 3 * 64 // (4 * 66))
    return msg


# ---------------------------------------------------------------------------
# Running the programs.

def smtpload(port, path, *, clients, seconds=None, per_client=None, login=SENDER):
    """Runs build/bench/smtpload; returns its key=value line as a dict."""
    cmd = [str(BENCH_BIN / "smtpload"), "-p", str(port), "-f", str(path), "-c", str(clients),
           "-F", SENDER, "-R", RCPT, "-x", login]
    cmd += ["-d", str(seconds)] if seconds else ["-n", str(per_client)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0 or "ok_rate=" not in r.stdout:
        raise BenchError(f"smtpload failed ({r.returncode}): {r.stdout}{r.stderr}")
    result = {}
    for field in r.stdout.split():
        key, _, value = field.partition("=")
        result[key] = float(value)
    result["stderr"] = r.stderr.strip()
    return result


def run_child(argv, timeout, env=None):
    """Runs a benchmark program: (exit status, stdout, stderr), or None when
    it gave no result in time. A late one gets SIGTERM first, so its exit
    handlers stop the Postfix and daemons it started (SIGKILL would leave
    them running), and SIGKILL a minute later."""
    proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, out, err
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()  # not communicate(): a grandchild may hold the pipes open
        return None


def drain(relay):
    """Waits until Postfix has discarded what it accepted, so no run pays for
    the previous run's queue."""
    t0 = time.monotonic()
    relay.wait_queue_empty(timeout=120)
    if os.environ.get("BENCH_DEBUG"):
        say(f"    (queue drained in {time.monotonic() - t0:.1f} s)")


def proc_status(pid):
    """VmRSS and VmHWM of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                fields = value.split()
                out[key] = int(fields[0]) * (1024 if key != "Threads" else 1)
    return out


class Sampler(threading.Thread):
    """Samples /proc/<pid>/status until stopped; keeps the peaks."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_rss = 0
        self.peak_threads = 0
        self.samples = 0
        self._stop_event = threading.Event()

    def run(self):
        while not self._stop_event.is_set():
            try:
                st = proc_status(self.pid)
            except OSError:
                return
            self.peak_rss = max(self.peak_rss, st["VmRSS"])
            self.peak_threads = max(self.peak_threads, st["Threads"])
            self.samples += 1
            time.sleep(SAMPLE_INTERVAL)

    def stop(self):
        self._stop_event.set()
        self.join()


def cpu_seconds(pid):
    """User plus system CPU time of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_hwm(pid):
    """Resets VmHWM to the current RSS (Linux >= 4.0: clear_refs 5)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def mib(n):
    return f"{n / (1024 * 1024):.1f} MiB"


# ---------------------------------------------------------------------------
# The figures.

class Bench:
    def __init__(self, tmp):
        self.tmp = tmp
        self.rows = []          # (figure, measured, target, verdict)
        self.failed = False
        self.naive_proc = None
        self.naive_sock = tmp / "naive.sock"
        self.null_proc = None
        self.null_sock = tmp / "null.sock"

    def row(self, figure, measured, target, verdict):
        self.rows.append((figure, measured, target, verdict))

    # -- the relay -------------------------------------------------------

    def _start_milter(self, name, sock):
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [str(BENCH_BIN / name), f"unix:{sock}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        wait_until(lambda: sock.exists() or proc.poll() is not None,
                   20, f"the {name} socket")
        if proc.poll() is not None:
            raise BenchError(f"{name} exited: "
                             + (self.tmp / f"{name}.log").read_text(errors="replace"))
        return proc

    def start_naive(self):
        """The comparison milters: naive_milter (libmilter, buffers the
        message) and null_milter (filtermail's protocol server accepting
        everything unread: the floor any milter that reads the body costs)."""
        self.naive_proc = self._start_milter("naive_milter", self.naive_sock)
        self.null_proc = self._start_milter("null_milter", self.null_sock)

    def stop_naive(self):
        for proc in (self.naive_proc, self.null_proc):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(20)

    def relay(self):
        submission = ["-o milter_macro_daemon_name=ORIGINATING",
                      "-o smtpd_authorized_xclient_hosts=127.0.0.1",
                      "-o smtpd_relay_restrictions=permit_mynetworks,reject"]
        main_cf = f"""
# bench/run.py: discard everything accepted, so the SMTP accept path is timed,
# and never slow smtpd down to the delivery rate (in_flow_delay), which would
# cap every configuration at the same rate.
default_transport = discard
in_flow_delay = 0
bench_naive_milters = {{ unix:{self.naive_sock}, default_action=tempfail, content_timeout=60s }}
bench_null_milters = {{ unix:{self.null_sock}, default_action=tempfail, content_timeout=60s }}
"""
        return Relay(
            milter=True,
            binary=BUILD / "filtermail-milter",
            ini={"filtermail_log_level": "info"},
            main_cf=main_cf,
            smtpd_services={"none": submission + ["-o smtpd_milters="],
                            "naive": submission + ["-o smtpd_milters=$bench_naive_milters"],
                            "null": submission + ["-o smtpd_milters=$bench_null_milters"]})

    def port(self, relay, config):
        return relay.port("submission" if config == "filtermail" else config)

    # -- figure 1 ----------------------------------------------------------

    def check_accepted(self, relay, label, data):
        for config, name in CONFIGS:
            reply = smtp_transaction(self.port(relay, config), SENDER, [RCPT], data,
                                     login=SENDER)
            if reply.code != 250:
                raise BenchError(f"{label} message refused via {name}: {reply} "
                                 f"(at {reply.stage})\n" + relay.diagnostics())

    def milter_pids(self, relay):
        """The process of each configuration that has a milter (CONFIGS[1:])."""
        return {"filtermail": relay.milter_proc.pid, "null": self.null_proc.pid,
                "naive": self.naive_proc.pid}

    def throughput(self, relay, files):
        say(f"== SMTP accept rate: {CLIENTS} clients, XCLIENT-authenticated submission, "
            f"{ROUNDS} rounds of {SECONDS} s per service in turns, 250 replies only")
        pids = self.milter_pids(relay)
        for label, size in SIZES:
            path = files[label]
            self.check_accepted(relay, label, path.read_bytes())
            for config, _ in CONFIGS:  # warm up: processes started, caches filled
                smtpload(self.port(relay, config), path, clients=CLIENTS,
                         seconds=WARMUP_SECONDS)
                drain(relay)
            runs = {config: [] for config, _ in CONFIGS}
            for rnd in range(ROUNDS):
                order = CONFIGS if rnd % 2 == 0 else tuple(reversed(CONFIGS))
                for config, name in order:
                    cpu0 = cpu_seconds(pids[config]) if config in pids else 0.0
                    r = smtpload(self.port(relay, config), path, clients=CLIENTS,
                                 seconds=SECONDS)
                    r["cpu"] = (cpu_seconds(pids[config]) - cpu0) if config in pids else 0.0
                    drain(relay)
                    runs[config].append(r)
                    bad = int(r["4xx"] + r["5xx"] + r["errors"])
                    if bad:
                        say(f"  {label:>6} {name}: {bad} messages not accepted: {r['stderr']}")
                        self.failed = True
                rates = "  ".join(f"{name} {runs[config][-1]['ok_rate']:7.1f}"
                                  for config, name in CONFIGS)
                say(f"  {label:>6} round {rnd + 1}: {rates} msg/s")
            base_runs = runs["none"]
            ratios = {}
            for config, name in CONFIGS:
                rs = runs[config]
                rate = statistics.median(r["ok_rate"] for r in rs)
                p50 = statistics.median(r["p50_ms"] for r in rs)
                p99 = statistics.median(r["p99_ms"] for r in rs)
                text = f"  {label:>6} {name:<18} median {rate:7.1f} msg/s"
                if config != "none":
                    # Paired: each round's rate over the no-milter rate of the
                    # same round, so load that drifts during the run cancels.
                    ratios[config] = statistics.median(
                        r["ok_rate"] / b["ok_rate"] for r, b in zip(rs, base_runs))
                    sent = sum(r["2xx"] for r in rs)
                    cpu_us = sum(r["cpu"] for r in rs) / sent * 1e6 if sent else 0.0
                    text += (f", ratio to no milter {ratios[config]:.2f}, "
                             f"milter CPU {cpu_us:.0f} us/msg")
                say(text + f", latency p50 {p50:.1f} ms, p99 {p99:.1f} ms")
            base = statistics.median(r["ok_rate"] for r in base_runs)
            ratio = ratios["filtermail"]
            fm = statistics.median(r["ok_rate"] for r in runs["filtermail"])
            nv = statistics.median(r["ok_rate"] for r in runs["naive"])
            self.row(f"accept rate {label}, milter / no milter",
                     f"{ratio:.2f} ({fm:.0f} vs {base:.0f} msg/s)",
                     f">= {MIN_RATIO:.2f}", "PASS" if ratio >= MIN_RATIO else "MISS")
            nl = statistics.median(r["ok_rate"] for r in runs["null"])
            self.row(f"accept rate {label}, null milter / no milter",
                     f"{ratios['null']:.2f} ({nl:.0f} vs {base:.0f} msg/s)", "(floor)", "-")
            self.row(f"accept rate {label}, naive milter / no milter",
                     f"{ratios['naive']:.2f} ({nv:.0f} vs {base:.0f} msg/s)", "(comparison)", "-")
        say()

    # -- figure 3 ----------------------------------------------------------

    def memory_run(self, relay, config, pid, path):
        idle = proc_status(pid)
        reset = reset_hwm(pid)
        sampler = Sampler(pid)
        sampler.start()
        try:
            r = smtpload(self.port(relay, config), path, clients=MEM_CLIENTS,
                         per_client=MEM_PER_CLIENT)
        finally:
            sampler.stop()
        after = proc_status(pid)
        drain(relay)
        peak = max(sampler.peak_rss, after["VmHWM"] if reset else 0)
        return idle, after, sampler, peak, r

    def memory(self, relay, files):
        say(f"== Milter memory: {MEM_CLIENTS} concurrent clients, {MEM_PER_CLIENT} x "
            f"{mib(MEM_SIZE)} message each, /proc/<pid>/status sampled every "
            f"{SAMPLE_INTERVAL * 1000:.0f} ms")
        path = files["1 MiB"]
        self.check_accepted(relay, "1 MiB", path.read_bytes())
        pids = self.milter_pids(relay)
        peaks = {}
        for config, name in CONFIGS[1:]:
            idle, after, sampler, peak, r = self.memory_run(relay, config, pids[config], path)
            bad = int(r["4xx"] + r["5xx"] + r["errors"])
            say(f"  {name:<18} VmRSS idle {mib(idle['VmRSS'])}, peak sampled "
                f"{mib(sampler.peak_rss)} ({sampler.samples} samples), VmHWM over the run "
                f"{mib(after['VmHWM'])}, VmHWM since start {mib(idle['VmHWM'])}, "
                f"threads up to {sampler.peak_threads}")
            say(f"  {'':<18} {int(r['2xx'])} x 250, {bad} not accepted, "
                f"{r['ok_rate']:.1f} msg/s, p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms")
            if bad:
                say(f"  {'':<18} {r['stderr']}")
                self.failed = True
            peaks[config] = peak
        self.row(f"milter peak RSS, {MEM_CLIENTS} x 1 MiB", mib(peaks["filtermail"]),
                 f"<= {mib(MEM_TARGET)}", "PASS" if peaks["filtermail"] <= MEM_TARGET else "MISS")
        for config, name in CONFIGS[2:]:
            self.row(f"{name} peak RSS, {MEM_CLIENTS} x 1 MiB", mib(peaks[config]),
                     "(comparison)", "-")
        say()

    # -- figures 2 and 4 ---------------------------------------------------

    def bench_mime(self):
        say("== The check alone: bench_mime")
        r = subprocess.run([str(BENCH_BIN / "bench_mime")], capture_output=True, text=True,
                           timeout=300)
        say(r.stdout.rstrip())
        if r.returncode != 0:
            say(r.stderr.rstrip())
            self.failed = True
            self.row("bench_mime 30 MiB", "failed", f">= {MIME_TARGET_GBS:.0f} GB/s", "MISS")
            return
        m = re.search(r"^mime (\d+)MiB encrypted: ([0-9.]+) GB/s", r.stdout, re.M)
        if m is None:
            self.row("bench_mime 30 MiB", "unparsed output", f">= {MIME_TARGET_GBS:.0f} GB/s",
                     "MISS")
            return
        gbs = float(m.group(2))
        self.row(f"check throughput, {m.group(1)} MiB message", f"{gbs:.2f} GB/s",
                 f">= {MIME_TARGET_GBS:.0f} GB/s", "PASS" if gbs >= MIME_TARGET_GBS else "MISS")
        say()

    def run_bench(self, name, title):
        """Runs build/bench/<name> from the source tree and shows its output;
        returns its exit status, or None when it is not built."""
        path = BENCH_BIN / name
        say(f"== {title}")
        if not path.exists():
            say(f"  {path.relative_to(REPO)} not built (bench/{name}.c absent): skipped")
            say()
            return None
        t0 = time.monotonic()
        r = run_child([path], 300)
        if r is None:
            say(f"  {name}: no result after 300 s")
            self.failed = True
            say()
            return -1
        rc, out, err = r
        say(out.rstrip())
        if rc != 0:
            say(err.rstrip())
            say(f"  {name}: exit status {rc}")
            self.failed = True
        say(f"  ({name} took {time.monotonic() - t0:.0f} s)")
        say()
        return rc

    def bench_policyd(self):
        rc = self.run_bench("bench_policyd", "Rate-limit policy server: bench_policyd")
        if rc is None:
            self.row("bench_policyd", "not built", "-", "-")
        else:
            self.row("bench_policyd", "see its output" if rc == 0 else f"failed ({rc})",
                     "its own", "-" if rc == 0 else "MISS")

    def other_benches(self):
        """Any other build/bench/bench_* program (e.g. bench_dkim): its output
        is shown, its figures and targets are its own."""
        known = {"bench_mime", "bench_policyd"}
        for path in sorted(BENCH_BIN.glob("bench_*")):
            if path.name in known or path.suffix in (".o", ".d") or not os.access(path, os.X_OK):
                continue
            rc = self.run_bench(path.name, f"Also: {path.name}")
            self.row(path.name, "see its output" if rc == 0 else f"failed ({rc})", "its own",
                     "-" if rc == 0 else "MISS")
        # Benchmarks written in Python (they drive several daemons).
        for script in ("bench_dkim_soak.py", "bench_two_relays.py"):
            say(f"== Also: {script}")
            t0 = time.monotonic()
            r = run_child([sys.executable, REPO / "bench" / script], 600,
                          env=dict(os.environ, FILTERMAIL_BUILD=str(BUILD)))
            if r is None:
                say(f"  {script}: no result after 600 s")
                rc = -1
            else:
                rc, out, err = r
                say(out.rstrip())
                if rc != 0:
                    say(err.rstrip())
            say(f"  ({script} took {time.monotonic() - t0:.0f} s)")
            say()
            if rc != 0:
                self.failed = True
            self.row(script, "see its output" if rc == 0 else f"failed ({rc})", "its own",
                     "-" if rc == 0 else "MISS")

    def summary(self):
        say("== Summary")
        head = ("figure", "measured", "target", "result")
        widths = [max(len(str(row[i])) for row in self.rows + [head]) for i in range(4)]
        line = "  ".join("{:<%d}" % w for w in widths)
        say(line.format(*head))
        say(line.format(*("-" * w for w in widths)))
        for row in self.rows:
            say(line.format(*row))


def main():
    if os.geteuid() != 0:
        say("bench: run as root (Postfix must start as root): sudo make bench")
        return 1
    needed = [BUILD / "filtermail-milter", BENCH_BIN / "smtpload", BENCH_BIN / "naive_milter",
              BENCH_BIN / "null_milter",
              BENCH_BIN / "bench_mime"]
    missing = [str(p.relative_to(REPO)) for p in needed if not p.exists()]
    if missing:
        say("bench: not built: " + ", ".join(missing) + " (make bench builds them)")
        return 1
    # A terminated run still stops its Postfix and milters (the harness's
    # atexit, and the finally clauses here).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="filtermail-bench-") as tmpname:
        tmp = pathlib.Path(tmpname)
        # smtpd (user postfix) connects to the naive milter's socket, and the
        # harness's relay directory goes in here too: one directory to clean.
        tmp.chmod(0o755)
        tempfile.tempdir = tmpname
        files = {}
        for label, size in SIZES + (("1 MiB", MEM_SIZE),):
            files[label] = tmp / f"encrypted-{size}.eml"
            files[label].write_bytes(build_message(size))
        say("filtermail benchmarks; messages: "
            + ", ".join(f"{label} = {files[label].stat().st_size} bytes"
                        for label in files) + " (encrypted.eml, SEIPD resized)")
        say()
        bench = Bench(tmp)
        try:
            bench.start_naive()
            with bench.relay() as relay:
                bench.throughput(relay, files)
                bench.memory(relay, files)
        except (BenchError, HarnessError) as e:
            say(f"bench: {e}")
            bench.failed = True
            bench.row("SMTP accept rate / milter memory", "not measured (see above)", "-",
                      "MISS")
        finally:
            bench.stop_naive()
        bench.bench_mime()
        bench.bench_policyd()
        bench.other_benches()
        bench.summary()
    say(f"(bench took {time.monotonic() - started:.0f} s)")
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
