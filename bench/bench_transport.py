#!/usr/bin/python3
"""bench_transport: what one remote delivery by filtermail-transport costs.

    make bench            (bench/run.py runs build/bench/bench_transport)
    FILTERMAIL_BUILD=build /usr/bin/python3 bench/bench_transport.py [--runs N]

Everything on loopback, as root (the transport itself runs as nobody): a test
CA, a DNSSEC-signed zone served to libunbound from a file (the "DNS cache"),
and nginx with TLS answering /mxdeliv with 200 on 127.0.0.50 (the remote
relay).

 1. One delivery: the process started as pipe(8) starts it (argv, message on
    stdin, 2 KB), MX and address lookups, TLS handshake (resumed from the
    shared state after the first run), POST, exit. --runs (200) deliveries
    one after another; wall time and CPU time (user + system, from wait4)
    p50/p99, and the peak RSS of any one process. The same POST by the curl
    command line tool (the same libcurl, no DNS, no state) is the same-run
    baseline. Targets: p50 <= 15 ms, RSS <= 10 MiB.
 2. Fan-out: one message to 50 recipients of one remote relay, through a
    real Postfix whose transport is a pipe(8) service running
    filtermail-transport, with recipient limit 1 and with 50: the time from
    the end of the SMTP submission until the queue is empty, and the number
    of remote transactions (POSTs nginx logged).

 3. The same through filtermail-deliverd (started as root, as its unit starts
    it): the client filtermail-transport-client run the same way, its CPU
    (wait4) plus the daemon's CPU over the runs, beside /bin/true run the
    same way (pipe(8)'s floor per invocation; target <= 3 ms); 20 clients at
    once against the slow relay: RSS and PSS of each and the daemon's growth
    (targets RSS <= 8 MiB, PSS <= 2 MiB a delivery); one message to 1000
    recipients through Postfix with recipient limit 1, beside the same through
    a pipe(8) service running /bin/true (target: queue empty within 2 s).
    --only-daemon runs only these.

Prints figures; exits 1 only when something could not be measured.
"""
import argparse
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "integration"))
sys.path.insert(0, str(REPO / "tests" / "support"))

from harness import NOBODY, Relay, free_ports, wait_until  # noqa: E402
from testca import TestCA  # noqa: E402
from transport_servers import Backend, Nginx  # noqa: E402
from benchlib import pct, say  # noqa: E402

BUILD = REPO / os.environ.get("FILTERMAIL_BUILD", "build")
BINARY = (BUILD / "filtermail-transport").resolve()
CLIENT = (BUILD / "filtermail-transport-client").resolve()
DELIVERD = (BUILD / "filtermail-deliverd").resolve()
ADDR = "127.0.0.50"
HOST = "mx-bench.remote.test"
SLOW_ADDR = "127.0.0.51"  # answers after SLOW_SECONDS: deliveries stay alive together
SLOW_HOST = "mx-slow.remote.test"
SLOW_SECONDS = 3
CONCURRENT = 20
FANOUT = 50
FANOUT_BIG = 1000


RUNNER = (REPO / "build" / "bench" / "bench_transport").resolve()


def timed_runs(args, data, runs, tmp):
    """Runs args `runs` times as nobody with data on stdin, forked by the small
    C runner (build/bench/bench_transport --run): [(wall ms, cpu ms, maxrss
    KiB, exit status)]."""
    stdin = tmp / f"stdin-{len(data)}"
    stdin.write_bytes(data)
    stdin.chmod(0o644)
    r = subprocess.run([str(RUNNER), "--run", str(runs), str(NOBODY), str(stdin), "--", *args],
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"runner failed: {r.stderr}")
    out = []
    for line in r.stdout.splitlines():
        wall, cpu, rss, status = (int(x) for x in line.split())
        out.append((wall / 1000, cpu / 1000, rss, status))
    return out


def setup(tmp):
    smtp_port, https_port = free_ports(2)
    ca = TestCA(tmp / "ca")
    (tmp / "ca").chmod(0o755)
    cert, key = ca.issue(HOST)
    zone = tmp / "remote.test.zone"
    zone.write_text("\n".join([
        "@ IN SOA ns.remote.test. hostmaster.remote.test. 1 3600 600 86400 300",
        "@ IN NS ns.remote.test.", "ns IN A 127.0.0.1",
        f"mx-bench IN A {ADDR}",
        "bench IN MX 10 mx-bench.remote.test.",
        "fan1 IN MX 10 mx-bench.remote.test.",
        "fan50 IN MX 10 mx-bench.remote.test.",
        "fanbig IN MX 10 mx-bench.remote.test.",
        f"mx-slow IN A {SLOW_ADDR}",
        "slow IN MX 10 mx-slow.remote.test.",
    ]) + "\n")
    dns = tmp / "dns"
    subprocess.run(["/usr/bin/python3", str(REPO / "tests" / "support" / "mkzone.py"), str(dns),
                    f"remote.test={zone}"], check=True, capture_output=True)
    for p in dns.iterdir():
        p.chmod(0o644)
    dns.chmod(0o755)
    state = tmp / "state"
    state.mkdir(mode=0o700)
    os.chown(state, NOBODY, NOBODY)
    log = tmp / "transport.log"
    log.touch()
    log.chmod(0o666)
    ini = tmp / "transport.ini"
    ini.write_text("[params]\n" + "".join(f"{k} = {v}\n" for k, v in {
        "mail_domain": "example.org",
        "filtermail_log_level": "info",
        "filtermail_unbound_config": dns / "unbound.conf",
        "filtermail_trust_anchor": dns / "trust-anchors",
        "filtermail_tls_ca_file": ca.cert,
        "filtermail_transport_smtp_port": smtp_port,
        "filtermail_transport_https_port": https_port,
        "filtermail_transport_state": state,
        "filtermail_transport_log": log,
    }.items()))
    ini.chmod(0o644)
    # The same settings for filtermail-deliverd and its client.
    dini = tmp / "deliverd.ini"
    dini.write_text(ini.read_text() + f"filtermail_user = nobody\n"
                    f"filtermail_socket_group = nogroup\n"
                    f"filtermail_transport_socket = unix:{tmp}/deliverd.sock\n")
    dini.chmod(0o644)
    nginx = Nginx(tmp)
    nginx.server(ADDR, https_port, cert, key, "return 200 '250 OK';",
                 "keepalive_timeout 5s; ssl_session_tickets on;")
    backend = Backend(slow_seconds=SLOW_SECONDS)
    slow_cert, slow_key = ca.issue(SLOW_HOST)
    nginx.server(SLOW_ADDR, https_port, slow_cert, slow_key, Nginx.proxy(backend.port, "slow"))
    nginx.start()
    return {"ini": ini, "dini": dini, "sock": tmp / "deliverd.sock", "ca": ca,
            "https_port": https_port, "nginx": nginx, "log": log, "backend": backend}


def start_deliverd(env):
    p = subprocess.Popen([str(DELIVERD), str(env["dini"])], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_until(lambda: env["sock"].exists() or p.poll() is not None, 20, "deliverd's socket")
    if p.poll() is not None:
        raise RuntimeError(f"filtermail-deliverd exited: {p.stderr.read()}")
    return p


def cpu_busy_s():
    """Seconds the machine's CPUs have been busy (all processes, /proc/stat)."""
    with open("/proc/stat") as f:
        t = [int(x) for x in f.readline().split()[1:]]
    return (sum(t) - t[3] - t[4]) / os.sysconf("SC_CLK_TCK")


def proc_cpu_ms(pid):
    """User + system CPU of a process and all its threads so far, in ms."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def one_delivery_daemon(env, runs, tmp, daemon):
    """The same delivery through filtermail-deliverd: the client's own CPU
    (wait4) plus the daemon's CPU over the runs divided by their number."""
    data = message()
    args = [str(CLIENT), str(env["dini"]), "-q", "BENCH3", "-f", "alice@example.org", "--",
            "bob@bench.remote.test"]
    for *_, status in timed_runs(args, data, 5, tmp):
        if status != 0:
            raise RuntimeError(f"delivery through deliverd failed (exit {status}):\n"
                               + env["log"].read_text()[-2000:])
    before = len(env["nginx"].requests(ADDR))
    c0 = proc_cpu_ms(daemon.pid)
    results = timed_runs(args, data, runs, tmp)
    dcpu = (proc_cpu_ms(daemon.pid) - c0) / runs
    if any(s != 0 for *_, s in results):
        raise RuntimeError("deliveries through deliverd failed:\n" + env["log"].read_text()[-2000:])
    walls = [w for w, *_ in results]
    cpus = [c for _, c, *_ in results]
    rss = max(r for _, _, r, _ in results)
    lines = env["nginx"].requests(ADDR)[before:]
    reused = sum(1 for line in lines if line.endswith(" r"))
    kept = sum(1 for line in lines if int(line.split()[-2]) > 1)
    # The floor: pipe(8)'s own cost per invocation, a process that does nothing.
    noop = timed_runs(["/bin/true"], b"", runs, tmp)
    ncpu = statistics.median(c for _, c, *_ in noop)
    total = statistics.median(cpus) + dcpu
    say(f"== One delivery over HTTPS through filtermail-deliverd ({runs} runs, one after another)")
    say(f"  client (filtermail-transport-client): wall p50 {statistics.median(walls):.1f} ms, "
        f"p99 {pct(walls, 99):.1f} ms; CPU p50 {statistics.median(cpus):.2f} ms; peak RSS "
        f"{rss / 1024:.1f} MiB")
    say(f"  daemon CPU per delivery (mean over the runs): {dcpu:.2f} ms; of {len(lines)} POSTs, "
        f"{kept} went over a connection kept from an earlier one, {reused} over a resumed TLS "
        f"session")
    say(f"  CPU per delivery, client p50 + daemon mean: {total:.2f} ms "
        f"(floor: a no-op process forked and reaped the same way, /bin/true: {ncpu:.2f} ms)")
    say(f"  target CPU per delivery p50 <= 3 ms: {'PASS' if total <= 3 else 'MISS'}")
    say()
    return total


def message(size=2048):
    body = ("x" * 76 + "\r\n") * (size // 78)
    return (f"From: <alice@example.org>\r\nTo: <bob@bench.remote.test>\r\n"
            f"Subject: bench\r\nMessage-ID: <bench@example.org>\r\n\r\n{body}").encode()


def one_delivery(env, runs, tmp):
    data = message()
    args = [str(BINARY), str(env["ini"]), "-q", "BENCH1", "-f", "alice@example.org", "--",
            "bob@bench.remote.test"]
    # Warm-up: page cache, and the first TLS session stored.
    for *_, status in timed_runs(args, data, 5, tmp):
        if status != 0:
            raise RuntimeError(f"delivery failed (exit {status}):\n"
                               + env["log"].read_text()[-2000:])
    results = timed_runs(args, data, runs, tmp)
    bad = [s for *_, s in results if s != 0]
    if bad:
        raise RuntimeError(f"{len(bad)} deliveries failed:\n" + env["log"].read_text()[-2000:])
    walls = [w for w, *_ in results]
    cpus = [c for _, c, *_ in results]
    rss = max(r for _, _, r, _ in results)
    reused = sum(1 for line in env["nginx"].requests(ADDR)[-runs:] if line.endswith(" r"))
    # Baselines: the curl tool (the same POST, the same libcurl and OpenSSL;
    # no DNS, no state) and the dynamic linking alone (the transport run
    # without arguments: it loads its libraries, prints its usage, exits).
    body = tmp / "body"
    body.write_bytes(data)
    body.chmod(0o644)
    cargs = ["/usr/bin/curl", "-s", "-o", "/dev/null", "--cacert", str(env["ca"].cert),
             "--resolve", f"{HOST}:{env['https_port']}:{ADDR}", "-H", "Content-Type:", "-H",
             "X-Mail-From: alice@example.org", "-H", "X-Mail-To: bob@bench.remote.test",
             "--data-binary", f"@{body}", f"https://{HOST}:{env['https_port']}/mxdeliv"]
    cres = timed_runs(cargs, b"", runs, tmp)
    if any(s != 0 for *_, s in cres):
        raise RuntimeError("curl failed")
    cwalls = [w for w, *_ in cres]
    ccpus = [c for _, c, *_ in cres]
    # Private memory, from the transport's own debug line (/proc/self/status).
    dini = pathlib.Path(str(env["ini"]).replace(".ini", "-debug.ini"))
    dini.write_text(env["ini"].read_text().replace("filtermail_log_level = info",
                                                   "filtermail_log_level = debug"))
    dini.chmod(0o644)
    mark = len(env["log"].read_text())
    timed_runs([str(BINARY), str(dini), *args[2:]], data, 3, tmp)
    mem = re.findall(r"memory: peak RSS (\d+) KiB, private \(RssAnon\) (\d+) KiB",
                     env["log"].read_text()[mark:])
    anon = max((int(a) for _, a in mem), default=-1)
    lres = timed_runs([str(BINARY)], b"", runs, tmp)
    lwalls = [w for w, *_ in lres]
    p50 = statistics.median(walls)
    say(f"== One delivery over HTTPS (2 KB message, {runs} runs, one after another)")
    say(f"  filtermail-transport: wall p50 {p50:.1f} ms, p99 {pct(walls, 99):.1f} ms; "
        f"CPU p50 {statistics.median(cpus):.1f} ms, p99 {pct(cpus, 99):.1f} ms; "
        f"peak RSS {rss / 1024:.1f} MiB, of it private {anon / 1024:.1f} MiB (the rest: "
        f"shared library pages); TLS resumed in {reused} of {runs}")
    say(f"  curl tool, same POST: wall p50 {statistics.median(cwalls):.1f} ms, p99 "
        f"{pct(cwalls, 99):.1f} ms; CPU p50 {statistics.median(ccpus):.1f} ms; peak RSS "
        f"{max(r for _, _, r, _ in cres) / 1024:.1f} MiB")
    say(f"  start-up alone (libraries loaded, usage printed): wall p50 "
        f"{statistics.median(lwalls):.1f} ms")
    say(f"  ratio transport / curl tool (wall p50): {p50 / statistics.median(cwalls):.2f}")
    say(f"  target p50 <= 15 ms: {'PASS' if p50 <= 15 else 'MISS'}; "
        f"peak RSS <= 10 MiB: {'PASS' if rss <= 10 * 1024 else 'MISS'} "
        f"(private memory <= 10 MiB: {'PASS' if 0 <= anon <= 10 * 1024 else 'MISS'})")
    say()


def smaps_rollup(pid):
    """{field: KiB} from /proc/<pid>/smaps_rollup."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[2] == "kB":
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def hold_together(argvs, stdin, env, also=None):
    """Runs every argv at once as nobody, message from stdin, against the
    slow relay; once all wait for its answer, their smaps_rollup (and also(),
    if given). Returns (rolls, also's value); fails when one did not deliver."""
    procs = []
    try:
        for args in argvs:
            with open(stdin, "rb") as f:
                procs.append(subprocess.Popen(args, stdin=f, stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL, user=NOBODY,
                                              group=NOBODY, extra_groups=[]))
        time.sleep(SLOW_SECONDS / 2)  # every one is now waiting for its answer
        rolls = [smaps_rollup(p.pid) for p in procs if p.poll() is None]
        extra = also() if also is not None else None
        if len(rolls) != len(argvs):
            raise RuntimeError(f"only {len(rolls)} of {len(argvs)} deliveries were alive")
        for p in procs:
            if p.wait(timeout=60) != 0:
                raise RuntimeError(f"a slow delivery failed (exit {p.returncode}):\n"
                                   + env["log"].read_text()[-2000:])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return rolls, extra


def concurrent_memory(env, tmp):
    """CONCURRENT deliveries at once, each waiting for the slow relay's answer
    (libraries loaded, TLS done, POST sent): what each one holds. RSS counts
    every shared library page in every process; PSS divides a shared page
    among the processes mapping it, so the sum of PSS is what the group
    really occupies, and private memory is what one more delivery adds."""
    data = message()
    stdin = tmp / "stdin-concurrent"
    stdin.write_bytes(data)
    stdin.chmod(0o644)
    args = [str(BINARY), str(env["ini"]), "-q", "BENCH2", "-f", "alice@example.org", "--",
            "bob@slow.remote.test"]
    rolls, _ = hold_together([args] * CONCURRENT, stdin, env)
    rss = statistics.median(r["Rss"] for r in rolls)
    pss = statistics.median(r["Pss"] for r in rolls)
    priv = statistics.median(r["Private_Clean"] + r["Private_Dirty"] for r in rolls)
    total = sum(r["Pss"] for r in rolls)
    say(f"== {CONCURRENT} deliveries at once (each waiting {SLOW_SECONDS} s for the relay's answer)")
    say(f"  per process (median): RSS {rss / 1024:.1f} MiB, PSS {pss / 1024:.1f} MiB, "
        f"private {priv / 1024:.1f} MiB")
    say(f"  all {CONCURRENT} together (sum of PSS): {total / 1024:.1f} MiB, "
        f"{total / 1024 / CONCURRENT:.1f} MiB per delivery")
    say(f"  PSS per process <= 10 MiB: {'PASS' if pss <= 10 * 1024 else 'MISS'}")
    say()


def concurrent_memory_daemon(env, tmp, daemon):
    """CONCURRENT clients at once waiting for the slow relay through the
    daemon: each client's RSS and PSS, and what the daemon grew by, shared
    among them."""
    data = message()
    stdin = tmp / "stdin-concurrent"
    stdin.write_bytes(data)
    stdin.chmod(0o644)
    d0 = smaps_rollup(daemon.pid)["Pss"]
    # Each its own queue id: twenty deliveries, not one batch.
    argvs = [[str(CLIENT), str(env["dini"]), "-q", f"BENCH4x{i}", "-f", "alice@example.org",
              "--", "bob@slow.remote.test"] for i in range(CONCURRENT)]
    rolls, d1 = hold_together(argvs, stdin, env, lambda: smaps_rollup(daemon.pid)["Pss"])
    rss = statistics.median(r["Rss"] for r in rolls)
    pss = statistics.median(r["Pss"] for r in rolls)
    grow = max(0, d1 - d0) / CONCURRENT
    say(f"== {CONCURRENT} deliveries at once through filtermail-deliverd")
    say(f"  per client process (median): RSS {rss / 1024:.2f} MiB, PSS {pss / 1024:.2f} MiB; "
        f"the daemon's PSS grew {grow / 1024:.2f} MiB per delivery under way "
        f"(daemon PSS {d1 / 1024:.1f} MiB in all)")
    per = pss + grow
    say(f"  targets RSS <= 8 MiB: {'PASS' if rss <= 8 * 1024 else 'MISS'}; PSS per delivery "
        f"(client + daemon's growth) {per / 1024:.2f} MiB <= 2 MiB: "
        f"{'PASS' if per <= 2 * 1024 else 'MISS'}")
    say()


def fan_out_daemon(env, tmp):
    """FANOUT_BIG recipients at one relay through filtermail-deliverd with
    recipient limit 1 (each recipient its own status), some refused for good
    by the relay: the time until the queue is empty, and every status."""
    argv = (f"{CLIENT} {env['dini']} -q ${{queue_id}} -f ${{sender}} -- ${{recipient}}")
    # The floor: the same fan-out to a pipe(8) service whose command does
    # nothing (/bin/true: every recipient "delivered" at once).
    master = (f"ftd unix - n n - 100 pipe\n"
              f"  flags=q eol=\\r\\n null_sender= user=nobody argv={argv}\n"
              f"ftnoop unix - n n - 100 pipe\n"
              f"  flags=q eol=\\r\\n null_sender= user=nobody argv=/bin/true\n")
    main = ("ftd_destination_recipient_limit = 1\n"
            "ftd_destination_concurrency_limit = 100\n"
            "ftnoop_destination_recipient_limit = 1\n"
            "ftnoop_destination_concurrency_limit = 100\n"
            "default_destination_concurrency_limit = 100\n"
            "transport_maps = inline:{ fanbig.remote.test=ftd, fannoop.remote.test=ftnoop }\n"
            "in_flow_delay = 0\n")
    say(f"== Fan-out through filtermail-deliverd: one message to {FANOUT_BIG} recipients at one "
        f"relay, recipient limit 1")
    with Relay(milter=False, domains=("example.org",), main_cf=main, master_cf=master) as relay:
        before = len(env["nginx"].requests(ADDR))
        rcpts = [f"user{i}@fanbig.remote.test" for i in range(FANOUT_BIG)]
        t0 = time.monotonic()
        reply = relay.send("submission", "alice@example.org", rcpts, message())
        if reply.code != 250:
            raise RuntimeError(f"submission refused: {reply}")
        t1 = time.monotonic()
        busy0 = cpu_busy_s()
        wait_until(lambda: not relay.queue(), 300, "an empty queue", interval=0.02)
        took = time.monotonic() - t1
        busy = cpu_busy_s() - busy0
        lines = env["nginx"].requests(ADDR)[before:]
        posts = len(lines)
        fresh = sum(1 for line in lines if line.split()[-2] == "1")
        log = relay.maillog()
        sent = len(set(re.findall(r"to=<(user\d+)@fanbig\.remote\.test>, relay=ftd, .*status=sent",
                                  log)))
        other = len(re.findall(r"@fanbig\.remote\.test>, relay=ftd, .*status=(?:deferred|bounced)",
                               log))
        say(f"  {took * 1000:7.0f} ms until the queue is empty (+{(t1 - t0) * 1000:.0f} ms "
            f"submission), {posts} remote transactions, {sent} recipients sent exactly, "
            f"{other} deferred or bounced; {fresh} new connections; the machine's CPUs were "
            f"busy {busy:.1f} s (of {took * os.cpu_count():.1f} s)")
        rcpts = [f"user{i}@fannoop.remote.test" for i in range(FANOUT_BIG)]
        reply = relay.send("submission", "alice@example.org", rcpts, message())
        if reply.code != 250:
            raise RuntimeError(f"submission refused: {reply}")
        t2 = time.monotonic()
        busy0 = cpu_busy_s()
        wait_until(lambda: not relay.queue(), 300, "an empty queue", interval=0.02)
        floor = time.monotonic() - t2
        busy = cpu_busy_s() - busy0
        say(f"  floor, the same through pipe(8) running /bin/true: {floor * 1000:7.0f} ms until "
            f"the queue is empty; CPUs busy {busy:.1f} s")
        say(f"  target queue empty within 2 s: {'PASS' if took <= 2 else 'MISS'}"
            f"{'' if took <= 2 or floor < 2 else ' (pipe(8) alone does not reach it)'}")
    say()


def fan_out(env, tmp):
    argv = (f"{BINARY} {env['ini']} -q ${{queue_id}} -f ${{sender}} -- ${{recipient}}")
    master = "".join(f"ft{n} unix - n n - 100 pipe\n"
                     f"  flags=q eol=\\r\\n null_sender= user=nobody argv={argv}\n"
                     for n in (1, FANOUT))
    main = (f"ft1_destination_recipient_limit = 1\n"
            f"ft{FANOUT}_destination_recipient_limit = {FANOUT}\n"
            "ft1_destination_concurrency_limit = 20\n"
            f"ft{FANOUT}_destination_concurrency_limit = 20\n"
            "default_destination_concurrency_limit = 20\n"
            f"transport_maps = inline:{{ fan1.remote.test=ft1, fan50.remote.test=ft{FANOUT} }}\n"
            "in_flow_delay = 0\n")
    say(f"== Fan-out: one message to {FANOUT} recipients at one remote relay, through Postfix")
    with Relay(milter=False, domains=("example.org",), main_cf=main, master_cf=master) as relay:
        for limit, domain in ((1, "fan1.remote.test"), (FANOUT, "fan50.remote.test")):
            before = len(env["nginx"].requests(ADDR))
            rcpts = [f"user{i}@{domain}" for i in range(FANOUT)]
            t0 = time.monotonic()
            reply = relay.send("submission", "alice@example.org", rcpts, message())
            if reply.code != 250:
                raise RuntimeError(f"submission refused: {reply}")
            t1 = time.monotonic()
            wait_until(lambda: not relay.queue(), 120, "an empty queue", interval=0.02)
            took = time.monotonic() - t1
            posts = len(env["nginx"].requests(ADDR)) - before
            sent = relay.maillog().count(f"@{domain}>, relay=ft{limit}")
            say(f"  recipient limit {limit:>2}: {took * 1000:7.0f} ms until the queue is empty "
                f"(+{(t1 - t0) * 1000:.0f} ms submission), {posts} remote transactions, "
                f"{sent} recipients logged sent")
    say("  (limit 1: exact status per recipient; limit 50: one status for all, deferred as a "
        "whole if any recipient is refused)")
    say()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_TRANSPORT_RUNS", 200)))
    ap.add_argument("--only-daemon", action="store_true",
                    help="only the filtermail-deliverd figures")
    args = ap.parse_args()
    if os.geteuid() != 0:
        say("bench_transport: run as root (Postfix and nginx need it)")
        return 1
    # A terminated run still stops its nginx and Postfix (finally, with-blocks).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    for path in (BINARY, CLIENT, DELIVERD, RUNNER):
        if not path.exists():
            say(f"bench_transport: {path} not built (make all build/bench/bench_transport)")
            return 1
    for tool in ("nginx", "curl", "ldns-signzone"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            say(f"bench_transport: {tool} missing (tests/deps.sh)")
            return 1
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-bench-transport-"))
    tmp.chmod(0o755)
    env = None
    try:
        env = setup(tmp)
        if not args.only_daemon:
            one_delivery(env, args.runs, tmp)
            concurrent_memory(env, tmp)
            fan_out(env, tmp)
        daemon = start_deliverd(env)
        try:
            one_delivery_daemon(env, args.runs, tmp, daemon)
            concurrent_memory_daemon(env, tmp, daemon)
            fan_out_daemon(env, tmp)
        finally:
            daemon.terminate()
            daemon.wait(30)
        return 0
    except Exception as e:
        say(f"bench_transport: {e}")
        return 1
    finally:
        if env is not None:
            env["nginx"].stop()
            env["backend"].stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
