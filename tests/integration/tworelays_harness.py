"""Two complete chatmail relays, a.test and b.test, on one machine: the
infrastructure of the two-relay suite (test_two_relays.py), of the second
part of `make demo` (demo.py) and of bench/bench_two_relays.py.

    from tworelays_harness import TwoRelays

    with TwoRelays() as net:              # everything started, or an exception
        a, b = net.a, net.b                # Site objects
        reply = a.submit("alice@a.test", ["bob@b.test"], data)
        b.relay.wait_for_delivery("bob@b.test", marker)

Each Site is one relay as a chatmail machine runs it:

  * a private Postfix (harness.Relay) with filtermail-milter in every smtpd
    (DKIM verification on, signing with the relay's own RSA key, selector
    "opendkim"), the relay's domain delivered to a Maildir by virtual(8);
  * the port-25 role on the site's own address, <addr>:<net.smtp_port>, with
    STARTTLS (certificate from the test CA for mx.<domain>);
  * submission (127.0.0.1, a free port; XCLIENT LOGIN= stands in for SASL)
    asking filtermail-policyd, wired with postfix-conf/main.cf's
    filtermail_rate_limit line, socket unix:filtermail/policy.sock under
    queue_directory;
  * filtermail-transport as default_transport, a pipe(8) service taken from
    postfix-conf/master.cf.transport.snippet and main.cf.transport (binary,
    chatmail.ini and user=nobody substituted);
  * the reinjection smtpd of postfix-conf/master.cf.mxdeliv.snippet,
    filtermail-mxdeliv in front of it, and nginx with the shipped location
    block terminating TLS on <addr>:<net.https_port>.

Both relays share one chatmail.ini layout (the relay's own file: milter,
policy server and transport read it; mxdeliv gets its own because its ports
are known only once Postfix runs), one test CA, and one set of
DNSSEC-signed zones (tests/support/mkzone.py) served offline to libunbound:

    a.test.  MX 10 mx.a.test.     mx.a.test.  A 127.0.0.31
    b.test.  MX 10 mx.b.test.     mx.b.test.  A 127.0.0.32
    _<smtp_port>._tcp.mx.<d>  TLSA 3 1 1 <the certificate's key>
    opendkim._domainkey.<d>   TXT  <the relay's DKIM key>

The transport connects to filtermail_transport_smtp_port and
filtermail_transport_https_port of the MX address (test-only settings:
production uses 25 and 443), so both relays use the same two port numbers,
each on its own 127.0.0.x address.

With plain=True (the benchmark's baseline) each Postfix also gets services
that relay without filtermail: on a.test a submission service without milter
or policy check ("plain-submission") whose senders plain*@a.test are routed
by sender_dependent_default_transport_maps to Postfix's own smtp(8) client
(opportunistic STARTTLS), aimed at b.test's "plain-mx" smtpd on
<b addr>:<net.plain_port>, which has no milter either. Its senders
gate_senders (the "gate baseline": the gate's policy work without our
transport) submit through the ordinary "submission" service (milter signing,
policy check) and go by the same smtp(8) client to b.test's "gate-mx" smtpd
on <b addr>:<net.gate_port>, which has the milter verifying DKIM as the
port-25 role does, but neither nginx nor filtermail-mxdeliv.

Every process is stopped by stop() (also at interpreter exit, through the
harness and mxdeliv_harness), and check() fails when any of them died or a
sanitizer reported anything (milter, policy server, mxdeliv, and the
transport, whose stderr reaches Postfix's log through pipe(8)).
"""
import ctypes
import ctypes.util
import http.client
import os
import pathlib
import select
import shutil
import socket
import ssl
import struct
import subprocess
import tempfile

from harness import (NOBODY, REPO, SANITIZER_MARKERS, Daemon, HarnessError, Relay, free_ports,
                     pid_alive, read_mail, set_header, smtp_connect, smtp_data,
                     smtp_transaction, wait_until)
from mxdeliv_harness import Mxdeliv, Nginx, TestCA, reinject_service

DKIMTOOL = REPO / "tests" / "support" / "dkimtool.py"
MKZONE = REPO / "tests" / "support" / "mkzone.py"
SNIPPET_TRANSPORT_MASTER = REPO / "postfix-conf" / "master.cf.transport.snippet"
SNIPPET_TRANSPORT_MAIN = REPO / "postfix-conf" / "main.cf.transport"
MAIN_CF = REPO / "postfix-conf" / "main.cf"

ADDRS = {"a.test": "127.0.0.31", "b.test": "127.0.0.32"}
SELECTOR = "opendkim"
START_TIMEOUT = 20
ENCRYPTION_NEEDED = "523 Encryption Needed: Invalid Unencrypted Mail"


def sh(*args, **kw):
    return subprocess.run([str(a) for a in args], check=True, capture_output=True, **kw)


def build_dir(default="build/san"):
    return (REPO / os.environ.get("FILTERMAIL_BUILD", default)).resolve()


def program(name, default_build="build/san"):
    path = build_dir(default_build) / name
    if not path.exists():
        raise HarnessError(f"{path} is not built (make all {default_build}/{name})")
    return path


def _snippet_lines(path):
    """The configuration lines of a shipped snippet (comments dropped)."""
    return [line for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def rate_limit_line():
    """The check_policy_service line of postfix-conf/main.cf, verbatim."""
    for line in MAIN_CF.read_text().splitlines():
        if line.startswith("filtermail_rate_limit ="):
            return line
    raise HarnessError(f"{MAIN_CF} has no filtermail_rate_limit line")


def transport_master_cf(binary, ini):
    """postfix-conf/master.cf.transport.snippet with the binary, the
    chatmail.ini and the user substituted (each must be found)."""
    text = "\n".join(_snippet_lines(SNIPPET_TRANSPORT_MASTER))
    for old, new in (("/usr/sbin/filtermail-transport-client", str(binary)),
                     ("/usr/local/lib/chatmaild/chatmail.ini", str(ini)),
                     ("user=filtermail", "user=nobody")):
        if old not in text:
            raise HarnessError(f"{SNIPPET_TRANSPORT_MASTER} no longer contains {old!r}")
        text = text.replace(old, new)
    return text + "\n"


def transport_main_cf():
    lines = _snippet_lines(SNIPPET_TRANSPORT_MAIN)
    if "default_transport = filtermail" not in lines:
        raise HarnessError(f"{SNIPPET_TRANSPORT_MAIN} does not set default_transport = filtermail")
    return "\n".join(lines) + "\n"


def scan_sanitizer(text, what):
    for marker in SANITIZER_MARKERS:
        i = text.find(marker)
        if i >= 0:
            raise HarnessError(f"sanitizer report in {what}:\n"
                               + text[max(0, i - 2000):i + 4000])


def read_text(path):
    try:
        return pathlib.Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


# ---------------------------------------------------------------------------
# Postfix

# ---------------------------------------------------------------------------
# filtermail-policyd

class Policyd(Daemon):
    """filtermail-policyd reading a relay's chatmail.ini; stderr in its own file."""

    def __init__(self, binary, ini, socket_path, log_path):
        super().__init__("filtermail-policyd", log_path)
        self.binary = binary
        self.ini = ini
        self.path = socket_path

    def argv(self):
        return [self.binary, self.ini]


# ---------------------------------------------------------------------------
# filtermail-deliverd

class Deliverd(Daemon):
    """filtermail-deliverd, the delivery daemon behind the pipe(8) client,
    reading a relay's chatmail.ini (filtermail_transport_socket). Started as
    root, it drops to filtermail_user; its log is the transport log, which
    it writes itself (filtermail_transport_log)."""

    def __init__(self, binary, ini, log_path):
        super().__init__("filtermail-deliverd", log_path)
        self.binary = binary
        self.ini = ini

    def argv(self):
        return [self.binary, self.ini]


# ---------------------------------------------------------------------------
# One relay

class Site:
    """One complete relay (see the module's docstring)."""

    def __init__(self, net, domain, key):
        self.net = net
        self.domain = domain
        self.addr = ADDRS[domain]
        self.mx = f"mx.{domain}"
        self.key = key
        self.cert = None               # (certificate, key) for mx.<domain>
        self.relay = None
        self.policyd = None
        self.deliverd = None
        self.mxdeliv = None
        self.nginx = None
        self.down = False

    # -- configuration ------------------------------------------------------

    def _master_cf(self, relay):
        net = self.net
        cert, key = self.cert
        text = transport_master_cf(program("filtermail-transport-client", net.default_build),
                                   relay.ini_path)
        text += (f"{self.addr}:{net.smtp_port} inet n - n - - smtpd\n"
                 "  -o syslog_name=postfix/mx\n"
                 "  -o milter_macro_daemon_name=INBOUND\n"
                 "  -o smtpd_relay_restrictions=reject_unauth_destination\n"
                 "  -o smtpd_tls_security_level=may\n"
                 f"  -o smtpd_tls_chain_files={key},{cert}\n"
                 "tlsmgr unix - - n 1000? 1 tlsmgr\n")
        if net.plain and self.domain == "b.test":
            text += (f"{self.addr}:{net.plain_port} inet n - n - - smtpd\n"
                     "  -o syslog_name=postfix/plain-mx\n"
                     "  -o smtpd_milters=\n"
                     "  -o smtpd_relay_restrictions=reject_unauth_destination\n"
                     "  -o smtpd_tls_security_level=may\n"
                     f"  -o smtpd_tls_chain_files={key},{cert}\n")
            text += (f"{self.addr}:{net.gate_port} inet n - n - - smtpd\n"
                     "  -o syslog_name=postfix/gate-mx\n"
                     "  -o milter_macro_daemon_name=INBOUND\n"
                     "  -o smtpd_relay_restrictions=reject_unauth_destination\n"
                     "  -o smtpd_tls_security_level=may\n"
                     f"  -o smtpd_tls_chain_files={key},{cert}\n")
        if net.plain and self.domain == "a.test":
            text += ("plainsmtp unix - - n - - smtp\n"
                     "  -o syslog_name=postfix/plainsmtp\n"
                     "  -o smtp_tls_security_level=may\n"
                     f"  -o smtp_tls_CAfile={net.ca.cert}\n")
        return text

    def _main_cf(self, relay):
        net = self.net
        text = transport_main_cf() + rate_limit_line() + "\n"
        # pipe(8) gives its commands a clean environment: the sanitizer
        # options come through export_environment, and the reports go to
        # files that check() reads (besides stderr, which pipe(8) puts into
        # the delivery status text).
        text += ("export_environment = TZ MAIL_CONFIG LANG "
                 f"ASAN_OPTIONS=log_path={self.sanitizer_dir}/transport-asan "
                 "UBSAN_OPTIONS=print_stacktrace=1:"
                 f"log_path={self.sanitizer_dir}/transport-ubsan\n")
        text += ("smtpd_tls_received_header = yes\n"
                 "smtpd_tls_loglevel = 1\n"
                 f"queue_run_delay = {net.retry}s\n"
                 f"minimal_backoff_time = {net.retry}s\n"
                 f"maximal_backoff_time = {2 * net.retry}s\n")
        if net.plain and self.domain == "a.test":
            other = net.b
            routes = ", ".join([f"{s}=plainsmtp:[{other.addr}]:{net.plain_port}"
                                for s in net.plain_senders]
                               + [f"{s}=plainsmtp:[{other.addr}]:{net.gate_port}"
                                  for s in net.gate_senders])
            text += f"sender_dependent_default_transport_maps = inline:{{ {routes} }}\n"
        return text + net.main_cf_extra

    def _services(self):
        services = {
            "submission": ["-o milter_macro_daemon_name=ORIGINATING",
                           "-o smtpd_authorized_xclient_hosts=127.0.0.1",
                           "-o smtpd_relay_restrictions=permit_mynetworks,reject",
                           "-o smtpd_sender_restrictions=$filtermail_rate_limit"],
            "mxdeliv": reinject_service(),
        }
        if self.net.plain and self.domain == "a.test":
            services["plain-submission"] = ["-o milter_macro_daemon_name=ORIGINATING",
                                            "-o smtpd_authorized_xclient_hosts=127.0.0.1",
                                            "-o smtpd_relay_restrictions=permit_mynetworks,reject",
                                            "-o smtpd_milters="]
        return services

    # -- lifecycle ------------------------------------------------------------

    def start(self):
        net = self.net
        self.relay = Relay(domains=(self.domain,), skip_dkim=False,
                           binary=program("filtermail-milter", net.default_build),
                           main_cf=self._main_cf, master_cf=self._master_cf,
                           smtpd_services=self._services())
        r = self.relay
        sockdir = r.spool / "filtermail"          # unix:filtermail/policy.sock
        sockdir.mkdir()
        statedir = r.tmp / "policyd"
        statedir.mkdir()
        shutil.chown(statedir, "nobody")
        tstate = r.tmp / "transport-state"
        tstate.mkdir(mode=0o700)
        os.chown(tstate, NOBODY, NOBODY)
        self.sanitizer_dir = r.tmp / "sanitizer"
        self.sanitizer_dir.mkdir()
        self.sanitizer_dir.chmod(0o1777)
        self.transport_log = r.tmp / "transport.log"
        self.transport_log.touch()
        self.transport_log.chmod(0o666)
        self.transport_state_dir = tstate
        r.extra_ini.update({
            "filtermail_log_level": net.log_level,
            "filtermail_dkim_sign": "yes",
            "filtermail_dkim_key": str(self.key),
            "filtermail_dkim_selector": SELECTOR,
            "filtermail_unbound_config": str(net.dns / "unbound.conf"),
            "filtermail_trust_anchor": str(net.dns / "trust-anchors"),
            "filtermail_dns_timeout": "5",
            "filtermail_policy_socket": f"unix:{sockdir}/policy.sock",
            "filtermail_ratelimit_state": str(statedir / "ratelimit.state"),
            "max_user_send_per_minute": str(net.per_minute),
            "max_user_send_burst_size": str(net.burst),
            "filtermail_tls_ca_file": str(net.ca.cert),
            "filtermail_transport_smtp_port": str(net.smtp_port),
            "filtermail_transport_https_port": str(net.https_port),
            "filtermail_transport_state": str(tstate),
            "filtermail_transport_log": str(self.transport_log),
            "filtermail_transport_socket": f"unix:{r.tmp}/deliverd.sock",
            "filtermail_transport_connect_timeout": "5",
            "filtermail_transport_io_timeout": "30",
            "filtermail_transport_https_timeout": "30",
            "filtermail_transport_deadline": "60",
            "filtermail_transport_down_time": "1",
        })
        r.start()
        self.policyd = Policyd(program("filtermail-policyd", net.default_build), r.ini_path,
                               sockdir / "policy.sock", r.tmp / "policyd.log").start()
        self.deliverd = Deliverd(program("filtermail-deliverd", net.default_build), r.ini_path,
                                 self.transport_log).start()
        self.mxdeliv = Mxdeliv(r, filtermail_log_level=net.log_level)
        self.mxdeliv.start()
        self.nginx = Nginx(r.tmp / "nginx", self.cert, self.mxdeliv.port, host=self.addr,
                           port=net.https_port, server_name=self.mx)
        self.nginx.start()
        self._wait_port(net.smtp_port)
        if net.plain and self.domain == "b.test":
            self._wait_port(net.plain_port)
            self._wait_port(net.gate_port)
        return self

    def _wait_port(self, port, host=None):
        host = host or self.addr

        def greets():
            try:
                with socket.create_connection((host, port), timeout=2) as s:
                    s.settimeout(5)
                    return s.recv(512).startswith(b"220")
            except OSError:
                return False
        wait_until(greets, START_TIMEOUT, f"{self.domain}'s smtpd on {host}:{port}")

    def stop(self, check=True):
        problems = []
        for part in (self.nginx, self.mxdeliv, self.deliverd, self.policyd):
            if part is None:
                continue
            try:
                part.stop(check=check)
            except Exception as e:
                problems.append(e)
        if self.relay is not None:
            if check:
                try:
                    self.check_transport()
                except Exception as e:
                    problems.append(e)
            try:
                self.relay.stop(check=check)
            except Exception as e:
                problems.append(e)
        if problems:
            raise problems[0]

    def take_down(self):
        """The whole relay goes away, as a machine that is switched off: nginx,
        mxdeliv, Postfix, the milter, the policy server and the delivery
        daemon stop (the queue and the Maildirs stay)."""
        self.nginx.stop()
        self.mxdeliv.stop()
        pid = self.relay.master_pid()
        self.relay.postfix_cmd("postfix", "stop")
        if pid is not None:
            wait_until(lambda: not pid_alive(pid), START_TIMEOUT, f"{self.domain}'s Postfix to stop")
        self.relay.stop_milter()
        self.policyd.stop()
        self.deliverd.stop()
        self.down = True

    def bring_up(self):
        """Starts again what take_down() stopped, and waits until it serves.
        Postfix comes last: it opens the port-25 role and the reinjection
        service at the same moment, so a sending relay never finds port 25
        open while HTTPS still fails (which would make it skip HTTPS for
        half an hour)."""
        self.relay.start_milter()
        self.policyd.start()
        self.deliverd.start()
        self.mxdeliv.start()
        self.nginx.start()
        self.relay.postfix_cmd("postfix", "start")
        for port in self.relay.ports.values():
            self._wait_port(port, "127.0.0.1")
        self._wait_port(self.net.smtp_port)
        self.down = False

    # -- checks -----------------------------------------------------------------

    def check_transport(self):
        scan_sanitizer(self.transport_log_text(), f"{self.domain}'s transport log")
        for report in sorted(self.sanitizer_dir.iterdir()):
            raise HarnessError(f"sanitizer report from {self.domain}'s transport ({report}):\n"
                               + read_text(report)[:6000])
        # pipe(8) puts the transport's stderr into the delivery status text.
        scan_sanitizer(self.relay.maillog(), f"{self.domain}'s maillog")

    def check(self):
        """Fails when a process of this relay died or a sanitizer spoke."""
        self.relay.check_milter()
        self.policyd.check()
        if not self.down:
            self.deliverd.check()
            self.mxdeliv.check()
            if self.nginx.proc is not None and self.nginx.proc.poll() is not None:
                raise HarnessError(f"{self.domain}'s nginx died:\n" + self.nginx.logs())
        self.check_transport()

    def diagnostics(self, lines=25):
        out = f"=== {self.domain}\n" + self.relay.diagnostics(lines)
        tail = lambda t: "\n".join(t.splitlines()[-lines:])
        out += "\n--- transport log:\n" + tail(self.transport_log_text())
        if self.mxdeliv is not None:
            out += "\n--- mxdeliv:\n" + tail(self.mxdeliv.log())
        if self.policyd is not None:
            out += "\n--- policyd:\n" + tail(self.policyd.log())
        return out

    # -- logs ---------------------------------------------------------------------

    def transport_log_text(self):
        return read_text(self.transport_log)

    def nginx_requests(self):
        """Lines of nginx's access log (combined format), one per request."""
        return read_text(self.nginx.dir / "access.log").splitlines()

    def milter_log(self):
        return self.relay.milter_log()

    def maillog(self):
        return self.relay.maillog()

    def transport_state(self):
        return read_text(self.transport_state_dir / "hosts")

    def forget_transport_state(self):
        """Deletes the transport's shared state (documented as harmless)."""
        for p in self.transport_state_dir.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()

    # -- sending ------------------------------------------------------------------

    def submit(self, sender, rcpts, data, login=None, service="submission"):
        """Submission as the user `login` (default: sender)."""
        return self.relay.send(service, sender, rcpts, data, login=login or sender)

    def session(self, login, service="submission"):
        return smtp_connect(self.relay.port(service), login=login)

    def inject_smtp(self, sender, rcpts, data):
        """Straight into the port-25 role at <addr>:<smtp_port>, as another MTA."""
        return smtp_transaction(self.net.smtp_port, sender, list(rcpts), data, host=self.addr,
                                helo="mx.elsewhere.test")

    def post(self, data, sender, rcpts):
        """POST https://mx.<domain>/mxdeliv (through nginx, certificate checked
        against the test CA); data is the message, sent SMTP-transparent.
        Returns (status, body)."""
        ctx = ssl.create_default_context(cafile=str(self.net.ca.cert))
        conn = http.client.HTTPSConnection(self.addr, self.net.https_port, timeout=30,
                                           context=ctx)
        try:
            body = smtp_data(data)
            conn.putrequest("POST", "/mxdeliv", skip_accept_encoding=True)
            conn.putheader("X-Mail-From", sender)
            for r in rcpts:
                conn.putheader("X-Mail-To", r)
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            resp = conn.getresponse()
            return resp.status, resp.read().decode("utf-8", "replace")
        finally:
            conn.close()


# ---------------------------------------------------------------------------
# The pair

class TwoRelays:
    """a.test and b.test with everything they need (see the module's docstring).

    default_build  the build used when FILTERMAIL_BUILD is not set
    per_minute, burst  the rate limit (max_user_send_per_minute, _burst_size)
    retry          Postfix's queue_run_delay and minimal_backoff_time (seconds)
    log_level      filtermail_log_level of every program
    plain          add the baseline services (see the module's docstring)
    plain_senders  the senders routed around filtermail when plain
    gate_senders   the senders of the gate baseline when plain (milter and
                   policy check, then smtp(8) to b.test's gate-mx)
    main_cf_extra  main.cf text appended to both relays
    """

    def __init__(self, *, default_build="build/san", per_minute=20, burst=10, retry=3,
                 log_level="debug", plain=False, plain_senders=(), gate_senders=(),
                 main_cf_extra=""):
        self.default_build = default_build
        self.per_minute = per_minute
        self.burst = burst
        self.retry = retry
        self.log_level = log_level
        self.plain = plain
        self.plain_senders = list(plain_senders)
        self.gate_senders = list(gate_senders)
        self.main_cf_extra = main_cf_extra
        self.tmp = None
        self.sites = []
        self.records = {}       # "<selector>._domainkey.<domain>." -> TXT text

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop(check=exc[0] is None)
        return False

    def start(self):
        try:
            self._start()
        except BaseException:
            self.stop(check=False)
            raise
        return self

    def _start(self):
        for tool in ("nginx", "openssl", "ldns-signzone", "ldns-keygen"):
            if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
                raise HarnessError(f"{tool} is not installed (tests/deps.sh)")
        for name in ("filtermail-milter", "filtermail-policyd", "filtermail-transport",
                     "filtermail-mxdeliv"):
            program(name, self.default_build)
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-tworelays-"))
        self.tmp.chmod(0o755)
        self.smtp_port, self.https_port, self.plain_port, self.gate_port = free_ports(4)
        self.ca = TestCA(self.tmp / "ca")
        (self.tmp / "ca").chmod(0o755)
        keys = {}
        for domain in ADDRS:
            keys[domain] = self.tmp / f"dkim-{domain}.pem"
            sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
               "-out", keys[domain])
            keys[domain].chmod(0o600)    # as /etc/dkimkeys: the milter reads it as root
        # Sites first (their certificates go into the TLSA records), then the zones.
        self.a = Site(self, "a.test", keys["a.test"])
        self.b = Site(self, "b.test", keys["b.test"])
        self.sites = [self.a, self.b]
        for site in self.sites:
            site.cert = self.ca.issue(site.mx, sans=[site.addr])
        self.dns = self._zones(keys)
        for site in self.sites:
            site.start()

    def _zones(self, keys):
        args = []
        for site in self.sites:
            d = site.domain
            record = sh("/usr/bin/python3", DKIMTOOL, "pubkey", keys[d], text=True).stdout.strip()
            self.records[f"{SELECTOR}._domainkey.{d}."] = record
            txt = " ".join(f'"{record[i:i + 200]}"' for i in range(0, len(record), 200))
            spki = TestCA.spki_sha256(site.cert[0])
            path = self.tmp / f"{d}.zone"
            path.write_text("\n".join([
                f"@ IN SOA ns.{d}. hostmaster.{d}. 1 3600 600 86400 300",
                f"@ IN NS ns.{d}.",
                "ns IN A 127.0.0.1",
                f"@ IN MX 10 mx.{d}.",
                f"mx IN A {site.addr}",
                f"_{self.smtp_port}._tcp.mx IN TLSA 3 1 1 {spki}",
                f"{SELECTOR}._domainkey 300 IN TXT {txt}",
            ]) + "\n")
            args.append(f"{d}={path}")
        dns = self.tmp / "dns"
        sh("/usr/bin/python3", MKZONE, dns, *args)
        for p in dns.iterdir():
            p.chmod(0o644)
        dns.chmod(0o755)
        return dns

    def stop(self, check=True):
        problems = []
        for site in reversed(self.sites):
            try:
                site.stop(check=check)
            except Exception as e:
                problems.append(e)
        self.sites = []
        if self.tmp is not None:
            if os.environ.get("FILTERMAIL_KEEP_TMP"):
                print(f"tworelays: kept {self.tmp}", flush=True)
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        if problems:
            raise problems[0]

    def check(self):
        for site in self.sites:
            site.check()

    def diagnostics(self, lines=25):
        return "\n".join(site.diagnostics(lines) for site in self.sites)

    # -- messages and DKIM ------------------------------------------------------------

    def message(self, sender, rcpt, kind="encrypted.eml", tag=None):
        """tests/data/mail/<kind> from sender to rcpt (To: may be a list),
        CRLF, with a unique Message-ID and Subject; returns (bytes, marker)."""
        marker = tag or os.urandom(12).hex()
        data = read_mail(kind).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        rcpts = [rcpt] if isinstance(rcpt, str) else list(rcpt)
        data = set_header(data, "From", f"<{sender}>")
        data = set_header(data, "To", ", ".join(f"<{r}>" for r in rcpts))
        data = set_header(data, "Subject", f"[...] {marker}")
        data = set_header(data, "Message-ID", f"<{marker}@{sender.split('@')[1]}>")
        return data, marker

    def dkim_sign(self, data, domain, key=None):
        """data signed by python3-dkim as <domain> (selector opendkim) with the
        relay's key, or with another key file."""
        key = key or (self.a.key if domain == "a.test" else self.b.key)
        return sh("/usr/bin/python3", DKIMTOOL, "sign", key, SELECTOR, domain, "rsa-sha256",
                  input=data).stdout

    def mallory_key(self):
        """An RSA key that is nobody's (made once per run)."""
        path = self.tmp / "dkim-mallory.pem"
        if not path.exists():
            sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
               "-out", path)
        return path

    def dkim_verify(self, raw):
        """python3-dkim's verdict on a delivered message, with the zones' keys."""
        import dkim

        def dnsfunc(name, timeout=5):
            rec = self.records.get(name.decode().rstrip(".") + ".")
            return rec.encode() if rec is not None else None
        return dkim.verify(raw, dnsfunc=dnsfunc)


# ---------------------------------------------------------------------------
# Watching a Maildir without polling (for latency figures)

class MaildirWatch:
    """inotify on <maildir>/new: wait() returns the names of the files that
    arrived (moved or created) since the last call, as soon as there are any."""

    IN_CREATE = 0x100
    IN_MOVED_TO = 0x80

    def __init__(self, maildir):
        """maildir: the Maildir's root; a missing one is made as virtual(8)
        would make it (owned by its uid, nobody)."""
        root = pathlib.Path(maildir)
        for sub in ("", "tmp", "new", "cur"):
            d = root / sub
            if not d.exists():
                d.mkdir(mode=0o700)
                os.chown(d, NOBODY, NOBODY)
        path = root / "new"
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        wd = libc.inotify_add_watch(self.fd, str(path).encode(),
                                    self.IN_CREATE | self.IN_MOVED_TO)
        if wd < 0:
            raise OSError(ctypes.get_errno(), f"inotify_add_watch {path}")

    def wait(self, timeout):
        """Names arrived since the last call; [] after timeout seconds."""
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return []
        names = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            i = 0
            while i < len(buf):
                _, _, _, length = struct.unpack_from("iIII", buf, i)
                name = buf[i + 16:i + 16 + length].rstrip(b"\0").decode()
                names.append(name)
                i += 16 + length
        return names

    def close(self):
        os.close(self.fd)
