"""Two chatmail relays as chatmail deploys them, switched to filtermail by
the real filtermail-postfix-setup: the infrastructure of the real-relay suite
(test_chatmail_relay.py) and of the Delta Chat part of `make demo`.

    from chatmail_relay_harness import ChatmailRelays

    with ChatmailRelays() as net:        # inside a private network namespace
        a, b = net.a, net.b
        a.create_account("alice@a.test", "password")   # as doveauth would

Each relay starts from one of the two rendered configurations in
chatmail-relay/ (chatmail's own main.cf and master.cf templates as its
deployment tool renders them; see chatmail-relay/README.md):

  * a.test from dualstack/ (OpenDKIM wiring, non_smtpd_milters);
  * b.test from ipv4-only/ (no OpenDKIM, self-signed certificate, myhostname
    from reverse DNS), its IP literal replaced by the name b.test so that the
    two relays can reach each other by MX as a Delta Chat user's mail does.

Only what ties the files to a machine is changed, before the setup runs
("the machine"): the domain, the paths of the maps and certificates, the
queue and data directories, the listening address (each relay has its own
127.0.0.x; its loopback services 127.0.0.1:10025/10026 move to that address
too), a log file, and chroot off (a private queue directory has no chroot
jail). Then the shipped setup script (packaging/filtermail-postfix-setup,
SBINDIR pointed at the build) wires it, with --no-services (there is no
systemd here; the harness starts the daemons in the order the script would:
milter and policy server before Postfix, mxdeliv after).

Around Postfix, as on a chatmail machine:
  * Dovecot (Debian's dovecot-imapd and dovecot-lmtpd), a private instance:
    IMAP over TLS on <addr>:993, LMTP delivery from Postfix's local_transport
    (unix:private/dovecot-lmtp) and SASL for submission and smtps
    (private/auth); mailboxes in <tmp>/vmail/mail/<domain>/<address>/, owned
    by the user `mail` (standing in for vmail) with mode 0700;
  * accounts made as chatmail's doveauth makes them on first login: as the
    mailboxes' owner with umask 077 (create_account());
  * filtermail-milter, filtermail-policyd, filtermail-transport (pipe(8), as
    the setup script wires it), filtermail-mxdeliv behind nginx on <addr>:443,
    all as `nobody` (filtermail_user);
  * one set of DNSSEC-signed zones (MX, A, TLSA for port 25, DKIM keys),
    written by tworelays_harness's zone code and served offline to libunbound.

The relays listen on their real ports (25, 465, 587, 993, 443), so the pair
must run in a private network namespace: enter_private_network() moves the
calling process into one (and leave_private_network() back).
"""
import ctypes
import ctypes.util
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import tempfile

from harness import (NOBODY, REPO, SANITIZER_MARKERS, STOP_TIMEOUT, Daemon, HarnessError,
                     forget_at_exit, pid_alive, postfix_tool, stop_at_exit, wait_until)
from mxdeliv_harness import Mxdeliv, Nginx, TestCA
from tworelays_harness import (SELECTOR, Deliverd, Policyd, TwoRelays, build_dir, program, read_text,
                               sh)

CONFIGS = REPO / "tests" / "integration" / "chatmail-relay"
SETUP = REPO / "packaging" / "filtermail-postfix-setup"
# The user the mailboxes belong to (vmail on a relay) and filtermail_user.
MAILBOX_OWNER = "mail"
START_TIMEOUT = 20
DH = pathlib.Path("/usr/share/dovecot/dh.pem")

# dovecot, runuser, ip, ss and the setup script's postconf live in sbin,
# which a test runner's PATH may lack.
for _d in ("/usr/sbin", "/sbin"):
    if _d not in os.environ.get("PATH", "").split(":"):
        os.environ["PATH"] = os.environ.get("PATH", "/usr/bin:/bin") + ":" + _d

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
_home_netns = None


def enter_private_network():
    """Moves this process into a new network namespace with its loopback up
    (the process must be single-threaded; Python's test runner is)."""
    global _home_netns
    if _home_netns is None:
        _home_netns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    if _libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET)")
    sh("ip", "link", "set", "lo", "up")


def leave_private_network():
    """Back into the network namespace enter_private_network() left."""
    global _home_netns
    if _home_netns is None:
        return
    if _libc.setns(_home_netns, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")
    os.close(_home_netns)
    _home_netns = None


class Milter(Daemon):
    def __init__(self, binary, ini, log_path):
        super().__init__("filtermail-milter", log_path)
        self.binary = binary
        self.ini = ini

    def argv(self):
        return [self.binary, self.ini]


def as_user(user, *argv, **kw):
    return sh("runuser", "-u", user, "--", *argv, **kw)


def setup_script(tmp, default_build):
    """The installed setup script when the programs are the installed ones
    (FILTERMAIL_BUILD=/usr/sbin), else the script as `make install` writes
    it, SBINDIR the build."""
    sbin = (REPO / build_dir(default_build)).resolve()
    if (sbin / "filtermail-postfix-setup").exists():
        return sbin / "filtermail-postfix-setup"
    path = pathlib.Path(tmp) / "filtermail-postfix-setup"
    text = SETUP.read_text()
    text, n = re.subn(r"(?m)^SBINDIR=.*$", f"SBINDIR={sbin}", text)
    if n != 1:
        raise HarnessError(f"{SETUP}: no SBINDIR= line")
    path.write_text(text)
    path.chmod(0o755)
    return path


class Site:
    """One relay (see the module's docstring)."""

    def __init__(self, net, config, domain, addr, key, literal=None):
        self.net = net
        self.config = CONFIGS / config
        self.domain = domain
        self.addr = addr
        self.mx = f"mx.{domain}"
        self.key = key
        self.literal = literal          # the ini's mail_domain this replaces
        self.tmp = net.tmp / domain
        self.pf = self.tmp / "postfix"
        self.spool = self.tmp / "spool"
        self.mailboxes = self.tmp / "vmail" / "mail" / domain
        self.ini = self.tmp / "chatmail.ini"
        self.state = self.tmp / "setup-state"
        self.maillog_path = self.tmp / "maillog"
        self.transport_log = self.tmp / "transport.log"
        self.dovecot_dir = self.tmp / "dovecot"
        self.cert = None
        self.before = None              # main.cf, master.cf before the setup
        self.setup_output = ""
        self.milter = self.policyd = self.deliverd = self.mxdeliv = self.nginx = None
        self.postfix_running = False
        self.dovecot_running = False
        self.passwords = {}

    # -- the machine ------------------------------------------------------

    def _render(self, text):
        """The rendered file as on this machine (see the module's docstring)."""
        src_domain = (self.config / "chatmail.ini").read_text()
        src_domain = re.search(r"(?m)^mail_domain = (\S+)", src_domain).group(1)
        text = text.replace(f"[{src_domain}]", self.domain).replace(src_domain, self.domain)
        text = text.replace("/etc/postfix/", f"{self.pf}/")
        text = text.replace("127.0.0.1:1002", f"{self.addr}:1002")
        # A private queue directory has no chroot jail.
        out = []
        for line in text.splitlines(keepends=True):
            f = line.split()
            if len(f) >= 8 and not line[0].isspace() and not line.startswith("#") \
                    and f[1] in ("inet", "unix", "unix-dgram", "pass", "fifo"):
                f[4] = "n"
                line = " ".join(f) + "\n"
            out.append(line)
        return "".join(out)

    def _postconf(self, *args):
        return sh(postfix_tool("postconf"), "-c", self.pf, *args, text=True).stdout

    def _machine(self):
        cert, key = self.cert
        self.pf.mkdir(parents=True)
        for p in self.config.iterdir():
            if p.name in ("main.cf", "master.cf"):
                (self.pf / p.name).write_text(self._render(p.read_text()))
            elif p.name != "chatmail.ini":
                shutil.copy(p, self.pf / p.name)
        for d in (self.spool, self.tmp / "data"):
            d.mkdir()
        shutil.chown(self.tmp / "data", "postfix", "postfix")
        self._postconf("-e", f"queue_directory={self.spool}",
                       f"data_directory={self.tmp / 'data'}",
                       f"maillog_file={self.maillog_path}",
                       f"maillog_file_prefixes={self.tmp}",
                       f"inet_interfaces={self.addr}", "inet_protocols=ipv4",
                       "alias_maps=", "alias_database=",
                       f"smtpd_tls_cert_file={cert}", f"smtpd_tls_key_file={key}",
                       f"smtp_tls_CAfile={self.net.ca.cert}",
                       # Retry soon in a test (the relay's own values are hours).
                       "queue_run_delay=3s", "minimal_backoff_time=3s",
                       "maximal_backoff_time=6s")
        self.before = {f: (self.pf / f).read_bytes() for f in ("main.cf", "master.cf")}

        # The mailboxes: vmail's, mode 0700 all the way down.
        for d in (self.tmp / "vmail", self.mailboxes.parent, self.mailboxes):
            d.mkdir(exist_ok=True)
            shutil.chown(d, MAILBOX_OWNER, MAILBOX_OWNER)
            d.chmod(0o700)
        sock = self.spool / "filtermail"            # as tmpfiles.d makes it
        sock.mkdir()
        shutil.chown(sock, "nobody", "postfix")
        sock.chmod(0o750)
        for d in ("policyd-state", "transport-state", "rejected"):
            (self.tmp / d).mkdir(mode=0o700)
            os.chown(self.tmp / d, NOBODY, NOBODY)
        self.transport_log.touch()
        self.transport_log.chmod(0o666)
        d = self.dovecot_dir
        d.mkdir()
        d.chmod(0o755)
        (d / "passwd").touch()
        (d / "passwd").chmod(0o644)
        self.mxdeliv_port = self.net.mxdeliv_ports[self.domain]

        ini = (self.config / "chatmail.ini").read_text()
        if self.literal:
            ini = ini.replace(f"mail_domain = {self.literal}", f"mail_domain = {self.domain}")
        else:
            ini = re.sub(r"(?m)^mail_domain = .*$", f"mail_domain = {self.domain}", ini)
        net = self.net
        params = {
            "mailboxes_dir": self.mailboxes,
            "filtermail_user": "nobody",
            "filtermail_socket_group": "postfix",
            "filtermail_log_level": "debug",
            "filtermail_milter_socket": f"unix:{sock}/milter.sock",
            "filtermail_policy_socket": f"unix:{sock}/policy.sock",
            "filtermail_rejected_dir": self.tmp / "rejected",
            "filtermail_dkim_sign": "yes",
            "filtermail_dkim_key": self.key,
            "filtermail_dkim_selector": SELECTOR,
            "filtermail_unbound_config": net.dns / "unbound.conf",
            "filtermail_trust_anchor": net.dns / "trust-anchors",
            "filtermail_dns_timeout": "5",
            "filtermail_ratelimit_state": self.tmp / "policyd-state" / "ratelimit.state",
            "filtermail_tls_ca_file": net.ca.cert,
            "filtermail_transport_state": self.tmp / "transport-state",
            "filtermail_transport_log": self.transport_log,
            "filtermail_transport_socket": f"unix:{self.tmp}/deliverd.sock",
            "filtermail_transport_connect_timeout": "5",
            "filtermail_transport_deadline": "60",
            "filtermail_transport_down_time": "1",
            "postfix_host": self.addr,
            "filtermail_http_port_incoming": self.mxdeliv_port,
        }
        # Appended to its only section, [params] (a second [params] would
        # start over, as upstream's parser does).
        ini += "\n" + "".join(f"{k} = {v}\n" for k, v in params.items())
        self.ini.write_text(ini)
        self.ini.chmod(0o644)

    # -- the setup script ---------------------------------------------------

    def run_setup(self, *args, check=True):
        """Runs the shipped setup script on this relay; returns the process."""
        cmd = [self.net.setup, "-c", self.pf, "--state-dir", self.state,
               "--snippets", REPO / "postfix-conf", "--no-services", *args]
        r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)
        if check and r.returncode != 0:
            raise HarnessError(f"filtermail-postfix-setup {' '.join(map(str, args))} failed "
                               f"({r.returncode}):\n{r.stdout}{r.stderr}")
        return r

    # -- Dovecot ------------------------------------------------------------------

    def _dovecot_conf(self):
        d = self.dovecot_dir
        cert, key = self.cert
        return f"""# Written by tests/integration/chatmail_relay_harness.py
instance_name = dovecot-{self.domain}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap lmtp
listen = {self.addr}
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
{"ssl_dh = <" + str(DH) if DH.exists() else ""}
disable_plaintext_auth = yes
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:~
default_internal_user = dovecot
default_login_user = dovenull
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {d}/passwd
}}
userdb {{
  driver = static
  args = uid={MAILBOX_OWNER} gid={MAILBOX_OWNER} home={self.mailboxes}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = 993
    ssl = yes
  }}
}}
service lmtp {{
  unix_listener {self.spool}/private/dovecot-lmtp {{
    user = postfix
    group = postfix
    mode = 0600
  }}
}}
service auth {{
  unix_listener {self.spool}/private/auth {{
    user = postfix
    group = postfix
    mode = 0660
  }}
}}
"""

    def _start_dovecot(self):
        d = self.dovecot_dir
        (d / "dovecot.conf").write_text(self._dovecot_conf())
        # It forks into the background: no pipes it would keep open.
        with open(d / "start.log", "ab") as out:
            r = subprocess.run(["dovecot", "-c", str(d / "dovecot.conf")],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=30)
        if r.returncode != 0:
            raise HarnessError(f"{self.domain}: dovecot did not start:\n"
                               + read_text(d / "start.log") + self.dovecot_log())
        self.dovecot_running = True
        wait_until(lambda: (self.spool / "private" / "auth").exists()
                   and (self.spool / "private" / "dovecot-lmtp").exists(),
                   START_TIMEOUT, f"{self.domain}'s Dovecot sockets")

    def _stop_dovecot(self):
        if not self.dovecot_running:
            return
        self.dovecot_running = False
        try:
            pid = int(read_text(self.dovecot_dir / "run" / "master.pid").split()[0])
        except (ValueError, IndexError):
            raise HarnessError(f"{self.domain}: no Dovecot master.pid")
        os.kill(pid, signal.SIGTERM)
        try:
            wait_until(lambda: not pid_alive(pid), STOP_TIMEOUT, f"{self.domain}'s Dovecot to stop")
        except HarnessError:
            os.kill(pid, signal.SIGKILL)
            raise

    def dovecot_log(self):
        return read_text(self.dovecot_dir / "dovecot.log")

    # -- accounts ------------------------------------------------------------------

    def create_account(self, addr, password):
        """An account as chatmail's doveauth creates it on first login: its
        directory and password file made as the mailboxes' owner with umask
        077 (mkdir mode 0777), enforceE2EEincoming in it; then Dovecot's
        passdb learns the login."""
        d = self.mailboxes / addr
        as_user(MAILBOX_OWNER, "/usr/bin/python3", "-c",
                "import os, pathlib, sys\n"
                "os.umask(0o077)\n"
                "d = pathlib.Path(sys.argv[1])\n"
                "d.mkdir(exist_ok=True, parents=True)\n"
                "(d / 'password').write_text('set')\n"
                "(d / 'enforceE2EEincoming').touch()\n", d)
        self.passwords[addr] = password
        with open(self.dovecot_dir / "passwd", "a") as f:
            f.write(f"{addr}:{password}\n")
        return d

    # -- lifecycle --------------------------------------------------------------

    def start(self):
        self.tmp.mkdir()
        self.tmp.chmod(0o755)
        self._machine()
        for addr, password in self.net.early.items():
            if addr.endswith("@" + self.domain):
                self.create_account(addr, password)
        self.setup_output = self.run_setup(self.ini).stdout
        check = subprocess.run([postfix_tool("postfix"), "-c", str(self.pf), "check"],
                               capture_output=True, text=True, timeout=60)
        if check.returncode != 0 or (check.stdout + check.stderr).strip():
            raise HarnessError(f"postfix check on {self.domain}:\n{check.stdout}{check.stderr}")
        net = self.net
        # In the order the script starts units: milter and policy server
        # before Postfix uses them, mxdeliv once Postfix serves.
        self.milter = Milter(program("filtermail-milter", net.default_build), self.ini,
                             self.tmp / "milter.log").start()
        self.policyd = Policyd(program("filtermail-policyd", net.default_build), self.ini,
                               self.spool / "filtermail" / "policy.sock",
                               self.tmp / "policyd.log").start()
        self.deliverd = Deliverd(program("filtermail-deliverd", net.default_build), self.ini,
                                 self.transport_log).start()
        self._start_dovecot()
        with open(self.tmp / "postfix-start.log", "ab") as out:
            r = subprocess.run([postfix_tool("postfix"), "-c", str(self.pf), "start"],
                               stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=60)
        self.postfix_running = True
        if r.returncode != 0:
            raise HarnessError(f"{self.domain}: postfix start failed:\n"
                               + read_text(self.tmp / "postfix-start.log") + self.maillog())
        for port in (25, 465, 587):
            net.wait_port(self.addr, port, f"{self.domain}'s smtpd on port {port}")
        self.mxdeliv = Mxdeliv(self, filtermail_log_level="debug",
                               filtermail_http_port_incoming=self.mxdeliv_port,
                               postfix_host=self.addr, postfix_reinject_port_incoming=10026)
        self.mxdeliv.port = self.mxdeliv_port
        self.mxdeliv.start()
        self.nginx = Nginx(self.tmp / "nginx", self.cert, self.mxdeliv_port, host=self.addr,
                           port=443, server_name=self.mx).start()
        return self

    # What Mxdeliv asks of a relay.
    @property
    def mail_domain(self):
        return self.domain

    max_message_size = None

    def port(self, service):
        return 10026

    def stop(self, check=True):
        problems = []
        for part in (self.nginx, self.mxdeliv, self.deliverd, self.policyd, self.milter):
            if part is not None:
                try:
                    part.stop(check=check)
                except Exception as e:
                    problems.append(e)
        if self.postfix_running:
            self.postfix_running = False
            subprocess.run([postfix_tool("postfix"), "-c", str(self.pf), "stop"],
                           capture_output=True, timeout=60)
        try:
            self._stop_dovecot()
        except Exception as e:
            problems.append(e)
        if check:
            try:
                self.check_logs()
            except Exception as e:
                problems.append(e)
        if problems:
            raise problems[0]

    # -- checks and logs ---------------------------------------------------------

    def check(self):
        for part in (self.milter, self.policyd, self.deliverd, self.mxdeliv):
            part.check()
        if self.nginx.proc is not None and self.nginx.proc.poll() is not None:
            raise HarnessError(f"{self.domain}'s nginx died:\n" + self.nginx.logs())
        self.check_logs()

    def check_logs(self):
        for name, text in (("maillog", self.maillog()), ("transport log", self.transport_log_text())):
            for marker in SANITIZER_MARKERS:
                if marker in text:
                    i = text.find(marker)
                    raise HarnessError(f"sanitizer report in {self.domain}'s {name}:\n"
                                       + text[max(0, i - 2000):i + 4000])

    def maillog(self):
        return read_text(self.maillog_path)

    def transport_log_text(self):
        return read_text(self.transport_log)

    def milter_log(self):
        return self.milter.log() if self.milter else ""

    def diagnostics(self, lines=40):
        tail = lambda t: "\n".join(t.splitlines()[-lines:])
        out = f"=== {self.domain}\n--- maillog:\n" + tail(self.maillog())
        out += "\n--- milter:\n" + tail(self.milter_log())
        out += "\n--- transport:\n" + tail(self.transport_log_text())
        out += "\n--- dovecot:\n" + tail(self.dovecot_log())
        if self.mxdeliv is not None:
            out += "\n--- mxdeliv:\n" + tail(self.mxdeliv.log())
        return out


class ChatmailRelays(TwoRelays):
    """a.test (dualstack/) and b.test (ipv4-only/); see the module's docstring.
    The zones, stop(), check() and diagnostics() are TwoRelays'."""

    ADDRS = {"a.test": "127.0.0.41", "b.test": "127.0.0.42"}
    smtp_port = 25                       # the TLSA records' port

    def __init__(self, *, default_build="build/san", early=None):
        """early: {address: password} of accounts made before the setup runs."""
        self.default_build = default_build
        self.early = dict(early or {})
        self.tmp = None
        self.sites = []
        self.records = {}

    def start(self):
        stop_at_exit(self, lambda: self.stop(check=False))
        return super().start()

    def _start(self):
        for tool in ("dovecot", "setfacl", "getfacl", "runuser", "ip", "ss", "unshare",
                     "nginx", "ldns-signzone"):
            if shutil.which(tool) is None:
                raise HarnessError(f"{tool} is not installed (tests/deps.sh)")
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-chatmail-"))
        self.tmp.chmod(0o755)
        self.setup = setup_script(self.tmp, self.default_build)
        self.ca = TestCA(self.tmp / "ca")
        (self.tmp / "ca").chmod(0o755)
        self.mxdeliv_ports = {"a.test": 10082, "b.test": 10182}
        keys = {}
        for domain in self.ADDRS:
            keys[domain] = self.tmp / f"dkim-{domain}.pem"
            sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
               "-out", keys[domain])
            keys[domain].chmod(0o600)
        self.a = Site(self, "dualstack", "a.test", self.ADDRS["a.test"], keys["a.test"])
        self.b = Site(self, "ipv4-only", "b.test", self.ADDRS["b.test"], keys["b.test"],
                      literal="203.0.113.5")
        self.sites = [self.a, self.b]
        for site in self.sites:
            # Postfix's inet_interfaces wants an interface's own address.
            sh("ip", "addr", "replace", f"{site.addr}/32", "dev", "lo")
            site.cert = self.ca.issue(site.mx, sans=[site.addr])
        self.dns = self._zones(keys)
        for site in self.sites:
            site.start()

    def wait_port(self, host, port, what):
        def listens():
            try:
                socket.create_connection((host, port), timeout=2).close()
                return True
            except OSError:
                return False
        wait_until(listens, START_TIMEOUT, what)

    def stop(self, check=True):
        forget_at_exit(self)
        super().stop(check=check)
