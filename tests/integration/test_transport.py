"""filtermail-transport (the pipe(8) delivery program) against real servers
on loopback: DNSSEC-signed zones served offline to libunbound, a test CA, a
real nginx with TLS answering /mxdeliv, a real Postfix with STARTTLS as the
remote MTA, and a scripted SMTP server that dies in the middle of DATA.

Every "MX host" is a 127.0.0.x address; nginx listens on each one's HTTPS
port and Postfix smtpd on its SMTP port (filtermail_transport_https_port and
filtermail_transport_smtp_port, test-only settings: production uses 443 and
25). The transport runs as `nobody`, as pipe(8) would run it, both directly
(argv + stdin) and through a second Postfix whose default_transport is a
pipe(8) service running it.
"""
import fcntl
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from harness import NOBODY, REPO, SANITIZER_MARKERS, Relay, free_ports, smtp_data, wait_until

sys.path.insert(0, str(REPO / "tests" / "support"))
from testca import TestCA  # noqa: E402
from transport_servers import Backend, Nginx, ScriptedSmtpd, wait_port  # noqa: E402

BUILD = REPO / os.environ.get("FILTERMAIL_BUILD", "build/san")
BINARY = (BUILD / "filtermail-transport").resolve()
CLIENT = (BUILD / "filtermail-transport-client").resolve()
DELIVERD = (BUILD / "filtermail-deliverd").resolve()
ZONE = "remote.test"
SENDER = "alice@example.org"

# name -> (address, nginx, smtp): what answers on each MX host.
#   nginx: None (nothing: connection refused), "ok" (proxied to the recording
#          backend), "slow", "400", "503", "413" (tiny client_max_body_size),
#          "wrongcert", "self" (self-signed)
#   smtp:  None, "tls" (Postfix, certificate from the test CA), "plain" (no
#          STARTTLS), "wrongcert", "self", "reject" (refuses bad@ recipients),
#          "scripted" (transport_servers.ScriptedSmtpd)
HOSTS = {
    "mx-ok": ("127.0.0.2", "ok", "tls"),
    "mx-400": ("127.0.0.3", "400", "tls"),
    "mx-smtp": ("127.0.0.4", None, "tls"),
    "mx-plain": ("127.0.0.5", None, "plain"),
    "mx-wrongcert": ("127.0.0.6", "wrongcert", "wrongcert"),
    "mx-dane": ("127.0.0.7", None, "self"),
    "mx-danebad": ("127.0.0.8", None, "tls"),
    "mx-reject": ("127.0.0.9", None, "reject"),
    "mx-down1": ("127.0.0.10", None, None),
    "mx-down2": ("127.0.0.11", None, None),
    "mx-slow": ("127.0.0.12", "slow", "tls"),
    "mx-503": ("127.0.0.13", "503", "tls"),
    "mx-413": ("127.0.0.14", "413", "tls"),
    "mx-kill": ("127.0.0.15", None, "scripted"),
    "mx-self": ("127.0.0.16", "self", "self"),
    "mx-he": ("127.0.0.17", "ok", "tls"),
}

# Recipient domain -> MX records (or a special zone entry).
DOMAINS = {
    "ok": ["10 mx-ok"],
    "xn--bcher-kva": ["10 mx-ok"],  # bücher: an internationalised domain
    "h400": ["10 mx-400"],
    "smtp": ["10 mx-smtp"],
    "plain": ["10 mx-plain"],
    "nauta": ["10 mx-plain"],
    "wrongcert": ["10 mx-wrongcert"],
    "dane": ["10 mx-dane"],
    "danebad": ["10 mx-danebad"],
    "reject": ["10 mx-reject"],
    "multi": ["10 mx-reject"],
    "down": ["10 mx-down1", "20 mx-down2"],
    "backup": ["10 mx-down1", "20 mx-smtp"],
    "slow": ["10 mx-slow"],
    "h503": ["10 mx-503"],
    "h413": ["10 mx-413"],
    "kill": ["10 mx-kill"],
    "_self": ["10 mx-self"],
    "self": ["10 mx-self"],
    "he": ["10 mx-he"],
    "viad": ["10 mx-ok"],          # through filtermail-deliverd
    "viadrej": ["10 mx-reject"],
}
RCPT_DOMAINS = [f"{d}.{ZONE}" for d in DOMAINS] + [f"implicit.{ZONE}"]

T = None          # the suite's state (see setup_module)


class Suite:
    pass


def d(name):
    return f"{name}.{ZONE}"


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, **kw)


# -- setup -------------------------------------------------------------------

def _zone(tmp, smtp_port, ca_certs):
    lines = [f"@ IN SOA ns.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 300",
             f"@ IN NS ns.{ZONE}.", "ns IN A 127.0.0.1"]
    for dom, mxs in DOMAINS.items():
        for mx in mxs:
            pref, host = mx.split()
            lines.append(f"{dom} IN MX {pref} {host}.{ZONE}.")
    lines.append(f"bogus IN MX 10 mx-ok.{ZONE}. ;UNSIGNED")
    lines.append("nullmx IN MX 0 .")
    lines.append("implicit IN A 127.0.0.4")
    for host, (addr, _, _) in HOSTS.items():
        lines.append(f"{host} IN A {addr}")
    lines.append("mx-he IN AAAA ::1")
    lines.append(f"_{smtp_port}._tcp.mx-dane IN TLSA 3 1 1 "
                 f"{TestCA.spki_sha256(ca_certs['mx-dane'])}")
    lines.append(f"_{smtp_port}._tcp.mx-danebad IN TLSA 3 1 1 {'ab' * 32}")
    path = tmp / f"{ZONE}.zone"
    path.write_text("\n".join(lines) + "\n")
    dns = tmp / "dns"
    sh("/usr/bin/python3", REPO / "tests" / "support" / "mkzone.py", dns, f"{ZONE}={path}")
    for p in dns.iterdir():
        p.chmod(0o644)
    dns.chmod(0o755)
    return dns


def _blackhole(port):
    """[::1]:port accepts nothing: its accept queue is full, so SYNs are
    dropped and connects hang (Happy Eyeballs must not wait for it)."""
    ls = socket.socket(socket.AF_INET6)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("::1", port))
    ls.listen(0)
    fill = [ls]
    for _ in range(4):
        s = socket.socket(socket.AF_INET6)
        s.setblocking(False)
        try:
            s.connect(("::1", port))
        except BlockingIOError:
            pass
        fill.append(s)
    return fill


def write_ini(name, **over):
    params = {
        "mail_domain": "example.org",
        "max_message_size": "1000000",
        "filtermail_log_level": "debug",
        "filtermail_unbound_config": str(T.dns / "unbound.conf"),
        "filtermail_trust_anchor": str(T.dns / "trust-anchors"),
        "filtermail_dns_timeout": "5",
        "filtermail_tls_ca_file": str(T.ca.cert),
        "filtermail_transport_smtp_port": str(T.smtp_port),
        "filtermail_transport_https_port": str(T.https_port),
        "filtermail_transport_state": str(T.tmp / f"state-{name}"),
        "filtermail_transport_tls_policy": str(T.policy),
        "filtermail_transport_log": str(T.log),
        "filtermail_transport_connect_timeout": "10",
        "filtermail_transport_io_timeout": "20",
        "filtermail_transport_https_timeout": "3",
        "filtermail_transport_deadline": "60",
    }
    params.update(over)
    state = pathlib.Path(params["filtermail_transport_state"])
    if params["filtermail_transport_state"]:
        state.mkdir(exist_ok=True, mode=0o700)
        os.chown(state, NOBODY, NOBODY)
    path = T.tmp / f"{name}.ini"
    path.write_text("[params]\n" + "".join(f"{k} = {v}\n" for k, v in params.items()))
    path.chmod(0o644)
    return path


def start_deliverd(ini, sock):
    """filtermail-deliverd as a service manager starts it: as root, to drop
    privileges to filtermail_user itself; ready once its socket answers."""
    p = subprocess.Popen([str(DELIVERD), str(ini)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd="/")

    def ready():
        if p.poll() is not None:
            raise AssertionError(f"filtermail-deliverd exited {p.returncode}: "
                                 f"{p.stderr.read().decode(errors='replace')}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(sock))
            return True
        except OSError:
            return False
    wait_until(ready, 20, "filtermail-deliverd's socket")
    return p


def stop_deliverd(p):
    if p is None or p.poll() is not None:
        return
    p.terminate()
    assert p.wait(30) == 0, p.stderr.read()


def setup_module():
    global T
    if not BINARY.exists():
        raise AssertionError(f"{BINARY} is not built (make all sanitize)")
    for tool in ("nginx", "openssl", "ldns-signzone"):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            raise AssertionError(f"{tool} is not installed (tests/deps.sh)")
    T = Suite()
    T.tmp = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-transport-it-"))
    T.tmp.chmod(0o755)
    T.smtp_port, T.https_port = free_ports(2)
    T.ca = TestCA(T.tmp / "ca")
    (T.tmp / "ca").chmod(0o755)
    certs = {}
    for host, (addr, web, smtp) in HOSTS.items():
        if "self" in (web, smtp) or host == "mx-dane":
            certs[host] = T.ca.self_signed(f"{host}.{ZONE}")
        elif "wrongcert" in (web, smtp):
            certs[host] = T.ca.issue(f"other.{ZONE}", stem=host)
        else:
            sans = [f"implicit.{ZONE}"] if host == "mx-smtp" else []
            certs[host] = T.ca.issue(f"{host}.{ZONE}", sans=sans)
    T.certs = certs
    T.dns = _zone(T.tmp, T.smtp_port, {h: c for h, (c, k) in certs.items()})
    T.policy = T.tmp / "tls_policy"
    T.policy.write_text("# test policy\nnauta.remote.test  no-starttls\n")
    T.policy.chmod(0o644)
    T.log = T.tmp / "transport.log"
    T.log.touch()
    T.log.chmod(0o666)
    T.log_mark = 0
    T.ini = write_ini("main")

    # The recording backend and nginx.
    T.backend = Backend(slow_seconds=6)
    T.nginx = Nginx(T.tmp)
    for host, (addr, web, _) in HOSTS.items():
        if web is None:
            continue
        cert, key = certs[host]
        extra = ""
        body = {"ok": Nginx.proxy(T.backend.port), "self": Nginx.proxy(T.backend.port),
                "slow": Nginx.proxy(T.backend.port, "slow"),
                "wrongcert": Nginx.proxy(T.backend.port),
                "400": "return 400 '523 Encryption Needed: Invalid Unencrypted Mail';",
                "503": "return 503 'busy';",
                "413": Nginx.proxy(T.backend.port)}[web]
        if web == "413":
            extra = "client_max_body_size 1;"
        T.nginx.server(addr, T.https_port, cert, key, body, extra)
    T.nginx.start()
    T.blackhole = _blackhole(T.smtp_port) + _blackhole(T.https_port)

    # The remote MTA: one Postfix, one smtpd per MX host address.
    access = T.tmp / "reject-access"
    access.write_text(f"bad@reject.{ZONE} 550 5.1.1 User unknown\n"
                      f"bad@multi.{ZONE} 550 5.1.1 User unknown\n"
                      f"bad@viadrej.{ZONE} 550 5.1.1 User unknown\n")
    access.chmod(0o644)
    services = "tlsmgr unix - - n 1000? 1 tlsmgr\n"
    for host, (addr, _, smtp) in HOSTS.items():
        if smtp in (None, "scripted"):
            continue
        cert, key = certs[host]
        opts = [f"-o syslog_name=postfix/{host}"]
        if smtp == "plain":
            opts.append("-o smtpd_tls_security_level=none")
        else:
            opts += ["-o smtpd_tls_security_level=may",
                     f"-o smtpd_tls_chain_files={key},{cert}"]
        if smtp == "reject":
            opts.append(f"-o smtpd_recipient_restrictions=check_recipient_access,"
                        f"texthash:{access},permit_mynetworks,reject_unauth_destination")
        services += (f"{addr}:{T.smtp_port} inet n - n - - smtpd\n"
                     + "".join(f"  {o}\n" for o in opts))
    T.remote = Relay(milter=False, domains=RCPT_DOMAINS, master_cf=services,
                     main_cf="smtpd_tls_loglevel = 1\nsmtpd_tls_received_header = yes\n")
    T.remote.start()
    for host, (addr, _, smtp) in HOSTS.items():
        if smtp not in (None, "scripted"):
            wait_port(addr, T.smtp_port)
    T.scripted_spool = T.tmp / "scripted"
    T.scripted_spool.mkdir()
    T.scripted = None

    # The sending relay: Postfix with the transport as default_transport.
    argv = f"{BINARY} {T.ini} -q ${{queue_id}} -f ${{sender}} -- ${{recipient}}"
    # The delivery daemon and the pipe(8) client that hands deliveries to it.
    T.sock = T.tmp / "deliverd.sock"
    T.ini_d = write_ini("deliverd", filtermail_user="nobody", filtermail_socket_group="nogroup",
                        filtermail_transport_socket=f"unix:{T.sock}")
    T.deliverd = start_deliverd(T.ini_d, T.sock)
    argv_d = f"{CLIENT} {T.ini_d} -q ${{queue_id}} -f ${{sender}} -- ${{recipient}}"
    master = (f"filtermail unix - n n - 10 pipe\n"
              f"  flags=q eol=\\r\\n null_sender= user=nobody argv={argv}\n"
              f"filtermail50 unix - n n - 10 pipe\n"
              f"  flags=q eol=\\r\\n null_sender= user=nobody argv={argv}\n"
              f"filtermaild unix - n n - 10 pipe\n"
              f"  flags=q eol=\\r\\n null_sender= user=nobody argv={argv_d}\n")
    main = ("default_transport = filtermail\n"
            "filtermail_destination_recipient_limit = 1\n"
            "filtermail_time_limit = 120s\n"
            "filtermail50_destination_recipient_limit = 50\n"
            "filtermail50_time_limit = 120s\n"
            "filtermaild_destination_recipient_limit = 1\n"
            "filtermaild_time_limit = 120s\n"
            f"transport_maps = inline:{{ multi.{ZONE}=filtermail50, viad.{ZONE}=filtermaild, "
            f"viadrej.{ZONE}=filtermaild }}\n")
    T.relay = Relay(milter=False, domains=("example.org",), main_cf=main, master_cf=master)
    T.relay.start()


def teardown_module():
    if T is None:
        return
    problems = []
    for stop in (lambda: T.scripted and T.scripted.stop(), T.nginx.stop, T.backend.stop,
                 T.relay.stop, T.remote.stop, lambda: stop_deliverd(T.deliverd)):
        try:
            stop()
        except Exception as e:
            problems.append(e)
    for s in T.blackhole:
        s.close()
    if os.environ.get("FILTERMAIL_KEEP_TMP"):
        print(f"kept {T.tmp}")
    else:
        shutil.rmtree(T.tmp, ignore_errors=True)
    if problems:
        raise problems[0]


# -- helpers -----------------------------------------------------------------

class Result:
    def __init__(self, rc, out, err, elapsed, log):
        self.rc, self.out, self.err, self.elapsed, self.log = rc, out, err, elapsed, log

    def __repr__(self):
        return (f"exit {self.rc} after {self.elapsed:.2f}s, output {self.out!r}, "
                f"stderr {self.err!r}\n--- transport log:\n{self.log[-3000:]}")


def new_log():
    """The transport log written since the last call; fails on a sanitizer report."""
    text = T.log.read_text(errors="replace")
    part, T.log_mark = text[T.log_mark:], len(text)
    for marker in SANITIZER_MARKERS:
        assert marker not in part, f"sanitizer report in the transport log:\n{part[-6000:]}"
    return part


def message(rcpt="bob@example.net", extra=b""):
    """A message with a unique marker and a line starting with a dot."""
    mark = uuid.uuid4().hex
    data = (f"From: <{SENDER}>\r\nTo: <{rcpt}>\r\nSubject: transport test\r\n"
            f"Message-ID: <{mark}@example.org>\r\n\r\nHello {mark}\r\n.a line with a dot\r\n"
            ).encode() + extra
    return data, mark


def run(rcpts, data, *, sender=SENDER, ini=None, qid="4XYZ1", timeout=90, as_root=False,
        binary=None):
    new_log()
    args = [str(binary or BINARY), str(ini or T.ini)]
    if qid:
        args += ["-q", qid]
    args += ["-f", sender, "--", *rcpts]
    start = time.monotonic()
    kw = {} if as_root else {"user": NOBODY, "group": NOBODY, "extra_groups": []}
    p = subprocess.run(args, input=data, capture_output=True, timeout=timeout, cwd="/", **kw)
    r = Result(p.returncode, p.stdout.decode(errors="replace"),
               p.stderr.decode(errors="replace"), time.monotonic() - start, new_log())
    assert r.err == "", f"stderr must stay empty (it becomes DSN text): {r}"
    assert r.out.count("\n") == 1 and r.out.endswith("\n"), f"one output line: {r}"
    return r


def expect(r, rc, prefix):
    assert r.rc == rc and r.out.startswith(prefix), f"expected exit {rc} and {prefix!r}: {r}"


def delivered(addr, mark, timeout=10):
    return T.remote.wait_for_delivery(addr, mark, timeout=timeout)


def not_delivered(addr, mark, wait=1.0):
    """Nothing for addr with mark, once the remote Postfix has delivered
    whatever it accepted (a message still in its queue would be missed)."""
    time.sleep(wait)
    T.remote.wait_queue_empty()
    got = T.remote.find(addr, mark)
    assert not got, f"{addr} got the message ({mark}) though it must not"


def backend_requests():
    return T.backend.take()


# -- direct invocation: HTTPS ------------------------------------------------

def test_https_delivery():
    backend_requests()
    rcpts = [f"bob@{d('ok')}", f"carol@{d('ok')}"]
    data, mark = message(rcpts[0])
    r = run(rcpts, data)
    expect(r, 0, f"delivered via HTTPS to mx-ok.{ZONE}[127.0.0.2]")
    got = backend_requests()
    assert len(got) == 1, got
    headers = got[0]["headers"]
    assert ("x-mail-from", SENDER) in headers, headers
    assert [v for k, v in headers if k == "x-mail-to"] == rcpts, headers
    assert not any(k == "content-type" for k, _ in headers), headers
    # The body is the SMTP transparent form: CRLF, the dot doubled, no final ".".
    assert got[0]["body"] == smtp_data(data), got[0]["body"]
    assert b"\r\n..a line with a dot\r\n" in got[0]["body"]
    assert "status=sent" in r.log and "relay=mx-ok.remote.test[127.0.0.2]" in r.log, r
    assert not T.remote.find(rcpts[0], mark), "HTTPS worked: nothing may go over SMTP"


def test_internationalised_domain_is_looked_up_in_ascii():
    """An SMTPUTF8 recipient at bücher.remote.test: the MX is found under
    xn--bcher-kva (IDNA), and the address goes out as it was given."""
    backend_requests()
    rcpts = [f"j\u00f6rg@b\u00fccher.{ZONE}", f"eve@xn--bcher-kva.{ZONE}"]
    data, _ = message(f"eve@xn--bcher-kva.{ZONE}")
    r = run(rcpts, data)
    expect(r, 0, f"delivered via HTTPS to mx-ok.{ZONE}[127.0.0.2]")
    got = backend_requests()
    assert len(got) == 1, got
    to = [v.encode("latin-1").decode("utf-8") for k, v in got[0]["headers"] if k == "x-mail-to"]
    assert to == rcpts, to
    # Not a domain: refused as a bad address, permanently, with the reason.
    r = run([f"a@\u2603.{ZONE}"], data)
    expect(r, 69, "5.1.3")
    assert "bad internationalised domain" in r.out, r
    assert not backend_requests()


def test_https_null_sender_has_no_from_header():
    backend_requests()
    data, _ = message()
    r = run([f"bob@{d('ok')}"], data, sender="")
    expect(r, 0, "delivered via HTTPS")
    got = backend_requests()
    assert len(got) == 1 and not any(k == "x-mail-from" for k, _ in got[0]["headers"])
    # The TLS session of the previous delivery to mx-ok was resumed.
    assert T.nginx.requests("127.0.0.2")[-1].endswith(" r"), T.nginx.requests("127.0.0.2")


def test_https_400_falls_back_to_smtp_and_is_remembered():
    ini = write_ini("h400")
    rcpt = f"bob@{d('h400')}"
    before = len(T.nginx.requests("127.0.0.3"))
    data, mark = message(rcpt)
    r = run([rcpt], data, ini=ini)
    expect(r, 0, f"delivered via SMTP to mx-400.{ZONE}[127.0.0.3]")
    assert "HTTPS delivery to mx-400.remote.test failed: HTTP status 400" in r.log, r
    assert "TLSv1.3" in r.log and "verified" in r.log, r
    got = delivered(rcpt, mark)
    assert f"Return-Path: <{SENDER}>".encode() in got.raw
    assert b"\n..a line with a dot" not in got.raw and b"\n.a line with a dot" in got.raw
    assert T.nginx.requests("127.0.0.3")[before:] == [
        T.nginx.requests("127.0.0.3")[before]], "one POST"
    state = (T.tmp / "state-h400" / "hosts").read_text()
    assert re.search(rf"^https-refused mx-400\.remote\.test {T.https_port} \d+$", state, re.M), \
        state
    # A second message skips HTTPS (upstream: for 30 minutes) and resumes TLS.
    n = len(T.nginx.requests("127.0.0.3"))
    data, mark = message(rcpt)
    r = run([rcpt], data, ini=ini)
    expect(r, 0, "delivered via SMTP")
    assert "Skipping HTTP delivery to host that failed recently: mx-400" in r.log, r
    assert ", resumed" in r.log, f"the stored TLS session was not resumed: {r}"
    assert len(T.nginx.requests("127.0.0.3")) == n, "HTTPS must be skipped"
    delivered(rcpt, mark)


def test_stuck_state_lock_does_not_hold_up_a_delivery():
    """Another process holding the state lock: the delivery is reported as it
    went, the state update is skipped after a bounded wait."""
    ini = write_ini("h400-locked")
    state = T.tmp / "state-h400-locked"
    state.mkdir(mode=0o700, exist_ok=True)
    os.chown(state, NOBODY, NOBODY)
    lockfile = state / "hosts.lock"
    with open(lockfile, "a+") as held:
        os.chown(lockfile, NOBODY, NOBODY)
        fcntl.flock(held, fcntl.LOCK_EX)
        rcpt = f"bob@{d('h400')}"
        data, mark = message(rcpt)
        r = run([rcpt], data, ini=ini)
    expect(r, 0, "delivered via SMTP")
    assert "cannot update the transport state" in r.log and "held by another process" in r.log, r
    assert 2.0 <= r.elapsed < 20, r
    assert not (state / "hosts").exists()
    delivered(rcpt, mark)


def test_https_refused_falls_back_to_smtp():
    rcpt = f"bob@{d('smtp')}"
    data, mark = message(rcpt)
    r = run([rcpt], data)
    expect(r, 0, f"delivered via SMTP to mx-smtp.{ZONE}[127.0.0.4]")
    assert "Connection refused" in r.log or "Couldn't connect" in r.log, r
    delivered(rcpt, mark)


def test_https_503_413_and_slow_fall_back_to_smtp():
    for name, addr, extra in (("h503", "127.0.0.13", b""), ("h413", "127.0.0.14", b""),
                              ("slow", "127.0.0.12", b"")):
        backend_requests()
        rcpt = f"bob@{d(name)}"
        data, mark = message(rcpt, extra)
        r = run([rcpt], data, ini=write_ini(name))
        expect(r, 0, "delivered via SMTP")
        if name == "slow":
            assert "Operation timed out" in r.log or "timed out" in r.log, r
        else:
            code = name[1:]
            assert f"HTTP status {code}" in r.log, r
            assert any(f" {code} " in line for line in T.nginx.requests(addr)), \
                T.nginx.requests(addr)
        delivered(rcpt, mark)


# -- direct invocation: SMTP and TLS ------------------------------------------

def test_starttls_missing_is_temporary():
    rcpt = f"bob@{d('plain')}"
    data, mark = message(rcpt)
    r = run([rcpt], data)
    expect(r, 75, "4.7.5 STARTTLS not offered by mx-plain.remote.test[127.0.0.5]")
    not_delivered(rcpt, mark)


def test_no_starttls_policy_domain_is_sent_in_plain():
    rcpt = f"bob@{d('nauta')}"
    data, mark = message(rcpt)
    r = run([rcpt], data)
    expect(r, 0, "delivered via SMTP to mx-plain.remote.test[127.0.0.5]")
    assert "no TLS" in r.log, r
    delivered(rcpt, mark)


def test_wrong_certificate_is_temporary():
    backend_requests()
    rcpt = f"bob@{d('wrongcert')}"
    data, mark = message(rcpt)
    r = run([rcpt], data)
    expect(r, 75, "4.7.5 Failed to connect to any mail server for wrongcert.remote.test")
    assert "certificate verification failed" in r.out, r
    assert "SSL: no alternative certificate subject name matches" in r.log or \
        "certificate" in r.log, r
    assert backend_requests() == [], "HTTPS with a wrong certificate must not deliver"
    not_delivered(rcpt, mark)


def test_self_signed_refused_unless_underscore_domain():
    backend_requests()
    rcpt = f"bob@{d('self')}"
    data, mark = message(rcpt)
    r = run([rcpt], data)
    expect(r, 75, "4.7.5 ")
    assert backend_requests() == []
    not_delivered(rcpt, mark, wait=0)
    # A `_`-prefixed test domain skips verification, on both channels.
    rcpt = f"bob@{d('_self')}"
    data, mark = message(rcpt)
    r = run([rcpt], data)
    expect(r, 0, "delivered via HTTPS to mx-self.remote.test[127.0.0.16]")
    assert len(backend_requests()) == 1


def test_dane_match_replaces_the_ca_check():
    rcpt = f"bob@{d('dane')}"
    data, mark = message(rcpt)
    r = run([rcpt], data)
    expect(r, 0, f"delivered via SMTP to mx-dane.{ZONE}[127.0.0.7]")
    assert "verified by DANE" in r.log, r
    delivered(rcpt, mark)


def test_dane_mismatch_is_temporary():
    rcpt = f"bob@{d('danebad')}"
    data, mark = message(rcpt)
    r = run([rcpt], data)
    expect(r, 75, "4.7.5 ")
    assert "certificate verification failed" in r.out and "(DANE)" in r.out, r
    not_delivered(rcpt, mark)


def test_remote_550_bounces_with_its_text():
    rcpt = f"bad@{d('reject')}"
    data, _ = message(rcpt)
    r = run([rcpt], data)
    expect(r, 69, "5.1.1 host mx-reject.remote.test[127.0.0.9] said: 550 5.1.1 "
                  f"<bad@{d('reject')}>: Recipient address rejected: User unknown")
    assert "(in reply to RCPT TO)" in r.out, r


def test_mixed_recipients_send_nothing():
    ok, bad = f"ok@{d('reject')}", f"bad@{d('reject')}"
    mark_log = len(T.remote.maillog())
    data, mark = message(ok)
    r = run([ok, bad], data)
    expect(r, 75, "4.1.1 1 of 2 recipients refused by mx-reject.remote.test[127.0.0.9]")
    not_delivered(ok, mark)
    log = T.remote.maillog()[mark_log:]
    disc = [line for line in log.splitlines() if "postfix/mx-reject/smtpd" in line
            and "disconnect from" in line]
    assert disc and "rcpt=1/2" in disc[-1] and "data=" not in disc[-1], log


def test_all_mx_down_is_temporary_and_remembered():
    ini = write_ini("down")
    data, _ = message()
    r = run([f"bob@{d('down')}"], data, ini=ini)
    expect(r, 75, "4.4.1 Failed to connect to any mail server for down.remote.test")
    assert "mail server mx-down1.remote.test" in r.log, r
    assert "mail server mx-down2.remote.test" in r.log, "the second MX must be tried"
    state = (T.tmp / "state-down" / "hosts").read_text()
    assert "down mx-down1.remote.test" in state and "down mx-down2.remote.test" in state
    r = run([f"bob@{d('down')}"], data, ini=ini)
    expect(r, 75, "4.4.1 every mail server of down.remote.test failed to answer")
    assert "Connection error" not in r.log, "a host known to be down is not tried again"


def test_second_mx_is_tried():
    rcpt = f"bob@{d('backup')}"
    data, mark = message(rcpt)
    r = run([rcpt], data, ini=write_ini("backup"))
    expect(r, 0, f"delivered via SMTP to mx-smtp.{ZONE}[127.0.0.4]")
    assert "Connection error relaying to mail server mx-down1.remote.test" in r.log, r
    delivered(rcpt, mark)


def test_happy_eyeballs_does_not_wait_for_a_dead_family():
    backend_requests()
    rcpt = f"bob@{d('he')}"
    data, _ = message(rcpt)
    r = run([rcpt], data, ini=write_ini("he", filtermail_transport_connect_timeout="20"))
    expect(r, 0, "delivered via HTTPS to mx-he.remote.test[127.0.0.17]")
    assert r.elapsed < 5, f"IPv4 must win while [::1] hangs: {r}"
    assert len(backend_requests()) == 1
    # SMTP races the same way (HTTPS refused: nothing listens on another port).
    ini = write_ini("he-smtp", filtermail_transport_connect_timeout="20",
                    filtermail_transport_https_port=str(free_ports(1)[0]))
    data, mark = message(rcpt)
    r = run([rcpt], data, ini=ini)
    expect(r, 0, "delivered via SMTP to mx-he.remote.test[127.0.0.17]")
    assert r.elapsed < 5, r
    delivered(rcpt, mark)


# -- direct invocation: DNS ----------------------------------------------------

def test_null_mx_bounces():
    r = run([f"bob@{d('nullmx')}"], message()[0])
    expect(r, 69, "5.1.10 Permanent failure: Recipient address has null MX")


def test_nxdomain_bounces():
    r = run([f"bob@{d('nonexistent')}"], message()[0])
    expect(r, 68, "5.1.2 Domain nonexistent.remote.test does not exist")


def test_bogus_dnssec_is_temporary_and_sends_nothing():
    backend_requests()
    before = len(T.nginx.requests("127.0.0.2"))
    r = run([f"bob@{d('bogus')}"], message()[0])
    expect(r, 75, "4.4.3 DNS resolution failed for bogus.remote.test")
    assert "bogus" in r.out.lower(), r
    assert backend_requests() == [] and len(T.nginx.requests("127.0.0.2")) == before


def test_implicit_mx():
    rcpt = f"bob@{d('implicit')}"
    data, mark = message(rcpt)
    r = run([rcpt], data)
    expect(r, 0, f"delivered via SMTP to implicit.{ZONE}[127.0.0.4]")
    delivered(rcpt, mark)


def test_ip_literal_is_not_verified():
    backend_requests()
    r = run(["bob@[127.0.0.2]"], message()[0])
    expect(r, 0, "delivered via HTTPS to 127.0.0.2[127.0.0.2]")
    got = backend_requests()
    assert len(got) == 1 and ("x-mail-to", "bob@[127.0.0.2]") in got[0]["headers"]


# -- direct invocation: the remote dies in DATA ---------------------------------

def _scripted(mode):
    if T.scripted is not None:
        T.scripted.stop()
    cert, key = T.certs["mx-kill"]
    T.scripted = ScriptedSmtpd("127.0.0.15", T.smtp_port, cert, key, T.scripted_spool,
                               mode).start()


def test_remote_killed_mid_data_then_retry_delivers_once():
    rcpt = f"bob@{d('kill')}"
    data, mark = message(rcpt, b"x" * 200000 + b"\r\n")
    _scripted("kill")
    r = run([rcpt], data)
    expect(r, 75, "4.4.2 ")
    assert T.scripted.proc.wait(10) == -9, "the server must have died by SIGKILL"
    assert list(T.scripted_spool.iterdir()) == []
    _scripted("normal")
    r = run([rcpt], data)
    expect(r, 0, f"delivered via SMTP to mx-kill.{ZONE}[127.0.0.15]")
    files = [p for p in T.scripted_spool.iterdir() if mark.encode() in p.read_bytes()]
    assert len(files) == 1, files
    T.scripted.stop()
    T.scripted = None


# -- direct invocation: local errors -------------------------------------------

def test_local_errors_defer_never_bounce():
    data, _ = message()
    r = run([f"a@{d('ok')}", f"b@{d('smtp')}"], data)
    expect(r, 75, "4.3.5 recipients of different domains")
    r = run([f"a@{d('ok')}"], data, as_root=True)
    expect(r, 75, "4.3.5 filtermail-transport refuses to run as root")
    r = run([f"a@{d('ok')}"], data, ini=T.tmp / "missing.ini")
    expect(r, 75, "4.3.5 Failed to read config:")
    p = subprocess.run([str(BINARY), str(T.ini), "-f"], capture_output=True, user=NOBODY,
                       group=NOBODY, extra_groups=[], input=b"")
    assert p.returncode == 75 and p.stdout.startswith(b"4.3.5 usage:"), p
    r = run(["no-at-sign"], data)
    expect(r, 69, "5.1.3 bad recipient address syntax")


def test_message_too_big_bounces():
    ini = write_ini("small", max_message_size="1000")
    r = run([f"a@{d('ok')}"], b"x" * 400000, ini=ini)
    expect(r, 69, "5.3.4 Message too big for system")


def test_state_survives_concurrent_writers():
    ini = write_ini("concurrent")
    procs = []
    for _ in range(8):
        procs.append(subprocess.Popen([str(BINARY), str(ini), "-f", SENDER, "--",
                                       f"bob@{d('down')}"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, user=NOBODY, group=NOBODY,
                                      extra_groups=[]))
    for p in procs:
        out, _ = p.communicate(b"Subject: x\r\n\r\nx\r\n", timeout=60)
        assert p.returncode == 75 and out.startswith(b"4.4.1"), out
    new_log()
    text = (T.tmp / "state-concurrent" / "hosts").read_text()
    lines = text.splitlines()
    assert lines[0] == "filtermail-transport-state 1", text
    assert sorted(lines[1:]) == sorted(set(lines[1:])) and len(lines) == 3, text
    assert not [p for p in (T.tmp / "state-concurrent").iterdir() if p.suffix == ".tmp"]
    # Harmless to delete: the next delivery starts afresh.
    shutil.rmtree(T.tmp / "state-concurrent")
    r = run([f"bob@{d('down')}"], message()[0], ini=ini)
    expect(r, 75, "4.4.1 Failed to connect")


# -- through Postfix's pipe(8) ------------------------------------------------

def relay_send(rcpts, data, sender=SENDER):
    reply = T.relay.send("submission", sender, rcpts, data)
    assert reply.code == 250, reply


def relay_log_wait(pattern, mark, timeout=30):
    def find():
        m = re.search(pattern, T.relay.maillog()[mark:])
        return m
    try:
        return wait_until(find, timeout, f"{pattern!r} in the relay's log")
    except Exception as e:
        raise AssertionError(f"{e}\n{T.relay.maillog()[mark:][-4000:]}\n{new_log()[-3000:]}")


def test_postfix_pipe_delivers_and_bounces():
    backend_requests()
    mark = len(T.relay.maillog())
    data, tid = message()
    relay_send([f"bob@{d('ok')}", f"bad@{d('reject')}", f"bob@{d('nullmx')}"], data)
    relay_log_wait(r"to=<bob@ok\.remote\.test>, relay=filtermail, .*status=sent "
                   r"\(delivered via filtermail service \(delivered via HTTPS", mark)
    relay_log_wait(r"to=<bad@reject\.remote\.test>, relay=filtermail, .*dsn=5\.1\.1, "
                   r"status=bounced \(host mx-reject\.remote\.test\[127\.0\.0\.9\] said: 550 "
                   r"5\.1\.1 <bad@reject\.remote\.test>: Recipient address rejected: User "
                   r"unknown", mark)
    relay_log_wait(r"to=<bob@nullmx\.remote\.test>, relay=filtermail, .*dsn=5\.1\.10, "
                   r"status=bounced \(Permanent failure: Recipient address has null MX", mark)
    got = backend_requests()
    assert len(got) == 1 and got[0]["body"].endswith(smtp_data(data)), got
    # The bounce reaches the (local) sender.
    bounce = T.relay.wait_for_delivery(SENDER, "User unknown")
    assert b"Recipient address rejected" in bounce.raw
    new_log()


def test_postfix_pipe_batch_is_all_or_nothing():
    mark = len(T.relay.maillog())
    ok, bad = f"ok@{d('multi')}", f"bad@{d('multi')}"
    data, tid = message(ok)
    relay_send([ok, bad], data)
    relay_log_wait(r"to=<ok@multi\.remote\.test>, relay=filtermail50, .*status=deferred \(1 of 2 "
                   r"recipients refused", mark)
    relay_log_wait(r"to=<bad@multi\.remote\.test>, relay=filtermail50, .*status=deferred", mark)
    not_delivered(ok, tid)
    qid = re.search(r"postfix/\w+\[\d+\]: (\w+): to=<ok@multi", T.relay.maillog()[mark:]).group(1)
    T.relay.postfix_cmd("postsuper", "-d", qid)
    new_log()


def test_postfix_pipe_retry_after_kill_delivers_once():
    rcpt = f"bob@{d('kill')}"
    data, tid = message(rcpt, b"y" * 200000 + b"\r\n")
    _scripted("kill")
    mark = len(T.relay.maillog())
    relay_send([rcpt], data)
    relay_log_wait(r"to=<bob@kill\.remote\.test>, relay=filtermail, .*dsn=4\.4\.2, "
                   r"status=deferred \(", mark)
    assert T.scripted.proc.wait(10) == -9
    _scripted("normal")
    T.relay.postfix_cmd("postqueue", "-f")
    relay_log_wait(r"to=<bob@kill\.remote\.test>, relay=filtermail, .*status=sent", mark)
    T.relay.wait_queue_empty()
    files = [p for p in T.scripted_spool.iterdir() if tid.encode() in p.read_bytes()]
    assert len(files) == 1, files
    T.scripted.stop()
    T.scripted = None
    new_log()


# -- through filtermail-deliverd ------------------------------------------------

def via_daemon(rcpts, data, **kw):
    return run(rcpts, data, ini=T.ini_d, binary=CLIENT, **kw)


def test_deliverd_client_links_only_libc():
    out = subprocess.run(["ldd", str(CLIENT)], capture_output=True, text=True).stdout
    for lib in ("libcurl", "libssl", "libunbound", "libidn2", "libsystemd"):
        assert lib not in out, out


def test_deliverd_https_delivery_keeps_the_connection_and_resumes_tls():
    backend_requests()
    rcpts = [f"bob@{d('ok')}", f"carol@{d('ok')}"]
    data, mark = message(rcpts[0])
    r = via_daemon(rcpts, data)
    expect(r, 0, f"delivered via HTTPS to mx-ok.{ZONE}[127.0.0.2]")
    got = backend_requests()
    assert len(got) == 1 and got[0]["body"] == smtp_data(data), got
    assert [v for k, v in got[0]["headers"] if k == "x-mail-to"] == rcpts, got
    assert "to=<bob@ok.remote.test> and others, relay=mx-ok.remote.test[127.0.0.2]:" in r.log, r
    # The next one goes over the same connection: its second request.
    r = via_daemon([f"dave@{d('ok')}"], data, sender="")
    expect(r, 0, "delivered via HTTPS")
    got = backend_requests()
    assert len(got) == 1 and not any(k == "x-mail-from" for k, _ in got[0]["headers"])
    last = T.nginx.requests("127.0.0.2")[-1].split()
    assert int(last[-2]) >= 2, T.nginx.requests("127.0.0.2")
    assert not T.remote.find(rcpts[0], mark)
    # A restarted daemon connects anew and resumes the TLS session it stored.
    stop_deliverd(T.deliverd)
    T.deliverd = start_deliverd(T.ini_d, T.sock)
    r = via_daemon([f"erin@{d('ok')}"], data)
    expect(r, 0, "delivered via HTTPS")
    last = T.nginx.requests("127.0.0.2")[-1].split()
    assert last[-2:] == ["1", "r"], T.nginx.requests("127.0.0.2")
    assert len(backend_requests()) == 1


def test_deliverd_outcomes_keep_their_codes_and_texts():
    data, mark = message()
    r = via_daemon([f"bad@{d('reject')}"], data)
    expect(r, 69, "5.1.1 host mx-reject.remote.test[127.0.0.9] said: 550 5.1.1")
    assert "(in reply to RCPT TO)" in r.out, r
    r = via_daemon([f"bob@{d('bogus')}"], data)
    expect(r, 75, "4.4.3 DNS resolution failed for bogus.remote.test")
    assert not backend_requests()
    r = via_daemon([f"bob@{d('nothere')}"], data)
    expect(r, 68, "5.1.2 Domain nothere.remote.test does not exist")
    r = via_daemon([f"bob@{d('nullmx')}"], data)
    expect(r, 69, "5.1.10 Permanent failure: Recipient address has null MX")
    r = via_daemon([f"a@\u2603.{ZONE}"], data)
    expect(r, 69, "5.1.3")
    r = via_daemon([f"bob@{d('smtp')}"], data)
    expect(r, 0, "")
    assert delivered(f"bob@{d('smtp')}", mark)
    r = via_daemon([f"bob@{d('ok')}"], data, as_root=True)
    expect(r, 75, "4.3.5 filtermail-transport-client refuses to run as root")


def test_deliverd_not_running_defers():
    ini = write_ini("nodaemon", filtermail_transport_socket=f"unix:{T.tmp}/nobody-here.sock")
    data, _ = message()
    r = run([f"bob@{d('ok')}"], data, ini=ini, binary=CLIENT)
    expect(r, 75, "4.3.0 filtermail-deliverd is not reachable")
    assert not backend_requests()


def test_deliverd_bad_request_is_answered_and_logged():
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(T.sock))
        s.sendall(b"filtermail-handoff 1\nqueue Q\nsender s\n.\n")
        reply = s.makefile("rb").readline()
    assert reply.startswith(b"4.3.0 filtermail-deliverd: bad request: no recipient"), reply
    wait_until(lambda: "bad request from a client" in T.log.read_text(), 5, "the log line")
    new_log()


def test_deliverd_through_postfix_delivers_and_bounces():
    backend_requests()
    mark = len(T.relay.maillog())
    data, tid = message()
    relay_send([f"bob@{d('viad')}", f"bad@{d('viadrej')}"], data)
    relay_log_wait(r"to=<bob@viad\.remote\.test>, relay=filtermaild, .*status=sent "
                   r"\(delivered via filtermaild service \(delivered via HTTPS", mark)
    relay_log_wait(r"to=<bad@viadrej\.remote\.test>, relay=filtermaild, .*dsn=5\.1\.1, "
                   r"status=bounced \(host mx-reject\.remote\.test\[127\.0\.0\.9\] said: 550 "
                   r"5\.1\.1 <bad@viadrej\.remote\.test>: Recipient address rejected", mark)
    got = backend_requests()
    assert len(got) == 1 and got[0]["body"].endswith(smtp_data(data)), got
    T.relay.wait_for_delivery(SENDER, "bad@viadrej")
    new_log()


def test_deliverd_second_daemon_does_not_steal_the_socket():
    p = subprocess.run([str(DELIVERD), str(T.ini_d)], capture_output=True, timeout=30, cwd="/")
    assert p.returncode == 1 and b"Server error" in p.stderr, p
    data, _ = message()
    expect(via_daemon([f"bob@{d('ok')}"], data), 0, "delivered via HTTPS")
    backend_requests()


def test_deliverd_fan_out_batches_with_exact_status_per_recipient():
    """One message to 30 recipients at one relay through Postfix (recipient
    limit 1): deliveries that arrive together go out together; the relay
    refuses bad@ for good, so that batch delivers nothing and each of its
    recipients goes alone: bad@ bounces alone with the remote reply, every
    other recipient gets the message exactly once, nothing is deferred."""
    mark = len(T.relay.maillog())
    tmark = len(T.log.read_text())
    good = [f"u{i:02d}@{d('viadrej')}" for i in range(29)]
    bad = f"bad@{d('viadrej')}"
    data, tid = message(good[0])
    relay_send(good[:15] + [bad] + good[15:], data)
    relay_log_wait(r"to=<bad@viadrej\.remote\.test>, relay=filtermaild, .*dsn=5\.1\.1, "
                   r"status=bounced \(host mx-reject\.remote\.test\[127\.0\.0\.9\] said: 550 "
                   r"5\.1\.1 <bad@viadrej\.remote\.test>: Recipient address rejected", mark)
    T.relay.wait_queue_empty(timeout=60)
    T.remote.wait_queue_empty()
    log = T.relay.maillog()[mark:]
    for addr in good:
        got = T.remote.find(addr, tid)
        assert len(got) == 1, f"{addr} got {len(got)} copies"
        assert len(re.findall(rf"to=<{re.escape(addr)}>, relay=filtermaild, .*status=sent",
                              log)) == 1, addr
    assert "status=deferred" not in log, log[-3000:]
    assert len(re.findall(r"relay=filtermaild, .*status=bounced", log)) == 1, log[-3000:]
    tlog = T.log.read_text()[tmark:]
    together = re.findall(r"(\d+) recipients at viadrej\.remote\.test together", tlog)
    assert together, f"no batch was sent:\n{tlog[-3000:]}"
    T.relay.wait_for_delivery(SENDER, "bad@viadrej")
    new_log()


def test_deliverd_limits_deliveries_at_once_per_domain():
    """filtermail_transport_destination_concurrency = 2, three deliveries at
    once to one relay that answers after 6 s: at most two POSTs reach it at a
    time, the third waits its turn (logged) and all three are delivered."""
    sock = T.tmp / "deliverd-limit.sock"
    ini = write_ini("deliverd-limit", filtermail_user="nobody", filtermail_socket_group="nogroup",
                    filtermail_transport_socket=f"unix:{sock}",
                    filtermail_transport_destination_concurrency="2",
                    filtermail_transport_https_timeout="30")
    daemon = start_deliverd(ini, sock)
    try:
        new_log()
        T.backend.take_most()
        data, _ = message()
        procs = []
        for i in range(3):
            p = subprocess.Popen([str(CLIENT), str(ini), "-q", f"4LIM{i}", "-f", SENDER, "--",
                                  f"u{i}@{d('slow')}"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, user=NOBODY,
                                 group=NOBODY, extra_groups=[], cwd="/")
            p.stdin.write(data)
            p.stdin.close()
            procs.append(p)
        outs = [(p.wait(60), p.stdout.read().decode()) for p in procs]
        for rc, out in outs:
            assert rc == 0 and out.startswith("delivered via HTTPS"), outs
        assert T.backend.take_most() == 2
        log = new_log()
        assert len(re.findall(r"waited for one of the 2 deliveries at once to "
                              r"slow\.remote\.test", log)) == 1, log
    finally:
        daemon.terminate()
        daemon.wait(30)
    backend_requests()


def test_deliverd_gone_mid_delivery_defers():
    """The daemon killed while a delivery waits for the relay's answer: the
    client says 4.3.0 and exits 75 (deferred, retried later), never a
    bounce or a success; a restarted daemon delivers."""
    data, _ = message()
    args = [str(CLIENT), str(T.ini_d), "-q", "4KILL1", "-f", SENDER, "--", f"bob@{d('slow')}"]
    p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, user=NOBODY, group=NOBODY, extra_groups=[],
                         cwd="/")
    p.stdin.write(data)
    p.stdin.close()
    time.sleep(1.5)  # the POST is out; the slow relay answers after 6 s
    T.deliverd.kill()
    T.deliverd.wait(10)
    out = p.stdout.read().decode()
    assert p.wait(30) == 75, out
    assert out.startswith("4.3.0 filtermail-deliverd: the connection ended without a result"), out
    T.deliverd = start_deliverd(T.ini_d, T.sock)
    expect(via_daemon([f"bob@{d('ok')}"], data), 0, "delivered via HTTPS")
    backend_requests()
    new_log()
