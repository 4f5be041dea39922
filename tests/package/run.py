"""The Debian package end to end: `make package-check`, or

    /usr/bin/python3 tests/package/run.py build/deb/filtermail_<version>_<arch>.changes

as root, after `make deb`. In order:

  1. lintian on the .changes: errors and warnings fail (justified ones are
     overridden in packaging/debian/filtermail.lintian-overrides);
  2. dpkg -i of the package;
  3. the installed files, the filtermail user, the directories and their
     owners and modes, the units (installed, not enabled, `systemd-analyze
     verify` silent, `systemd-analyze security --offline` scores printed);
  4. each daemon started the way its unit starts it: the unit's ExecStart,
     Environment and EnvironmentFile, as root with the unit's capability
     bounding set, no-new-privileges, umask and file limit (setpriv), its
     sd_notify messages read from a NOTIFY_SOCKET of our own (READY=1,
     WATCHDOG=1 with a short WATCHDOG_USEC, STOPPING=1 on SIGTERM); then what
     it serves is checked (socket owner and mode, who may connect, a policy
     request, an HTTP request), that it runs as filtermail with no
     capabilities, and that SIGTERM ends it cleanly. Where systemd is PID 1
     the units are also started with systemctl. The transport runs as pipe(8)
     would run it (user=filtermail) and refuses to run as root;
  5. filtermail-postfix-setup on a copy of a chatmail relay's Postfix
     configuration (tests/package/relay-postfix): dry run, wiring, a second
     run that changes nothing, --keep-opendkim and back, the systemd steps
     in an order with no gap (through a stand-in systemctl that notes whether
     Postfix is wired at each call), the mailboxes (mode 0700, another
     user's) searchable by filtermail, also a directory made later with
     umask 077, and --undo back to the original, byte for byte, ACLs too;
  6. the installed mtail program against tests/package/mtail-sample.log;
     the integration tests against the installed programs
     (FILTERMAIL_BUILD=/usr/sbin); FILTERMAIL_PACKAGE_E2E=0 skips them;
  7. dpkg -i again (the upgrade path keeps the state), dpkg -r (keeps the
     state), dpkg --purge, after which nothing of the package is left but the
     filtermail user (Debian keeps system users) and nothing runs.

Each step prints `ok <step> (<seconds>)` or fails the run with the reason;
the daemons are stopped and the package purged whatever happens
(FILTERMAIL_KEEP_PACKAGE=1 leaves it installed after a failure).
"""
import grp
import os
import pathlib
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
HERE = REPO / "tests" / "package"
PKG = "filtermail"
UNITS = ("filtermail-milter", "filtermail-policyd", "filtermail-mxdeliv", "filtermail-deliverd")
PROGRAMS = ("filtermail-milter", "filtermail-policyd", "filtermail-transport",
            "filtermail-mxdeliv", "filtermail-deliverd", "filtermail-transport-client")
UNIT_DIR = pathlib.Path("/lib/systemd/system")
DEFAULT_INI = "/usr/local/lib/chatmaild/chatmail.ini"
SOCK_DIR = pathlib.Path("/var/spool/postfix/filtermail")
STATE_DIR = pathlib.Path("/var/lib/filtermail")
# Every wait is bounded (seconds).
START_TIMEOUT = 20
STOP_TIMEOUT = 20
# The watchdog period asked of the daemons here (the units ask for 30 s).
WATCHDOG_USEC = 2_000_000
# Exposure scores above this fail (systemd-analyze security: 0 best, 10 worst).
MAX_EXPOSURE = 4.0


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def run(args, *, check_rc=True, timeout=600, **kw):
    """Runs a command; its output (stdout and stderr together) is returned."""
    p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=timeout, **kw)
    if check_rc and p.returncode != 0:
        raise Failure(f"{' '.join(map(str, args))} exited {p.returncode}:\n{p.stdout}")
    return p


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise Failure(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def installed():
    p = run(["dpkg-query", "-W", "-f=${Status}", PKG], check_rc=False)
    return p.returncode == 0 and "ok installed" in p.stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Units: the parts of a unit file that say how systemd starts the daemon.

def unit_settings(path):
    """{key: [values]} of the [Service] and [Unit] sections."""
    out = {}
    for line in pathlib.Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;[":
            continue
        k, _, v = line.partition("=")
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def unit_env(settings, overrides):
    """The environment systemd gives the service: Environment=, then
    EnvironmentFile= (which wins), then ours for the test."""
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "LANG": "C.UTF-8"}
    for v in settings.get("Environment", []):
        for item in v.split():
            k, _, val = item.partition("=")
            env[k] = val
    for v in settings.get("EnvironmentFile", []):
        f = pathlib.Path(v.lstrip("-"))
        if f.exists():
            for line in f.read_text().splitlines():
                if "=" in line and not line.lstrip().startswith("#"):
                    k, _, val = line.partition("=")
                    env[k.strip()] = val.strip().strip('"')
    env.update(overrides)
    return env


def exec_argv(settings, env):
    """ExecStart= with ${VAR} expanded from the unit's environment."""
    (cmd,) = settings["ExecStart"]
    return [re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), w) for w in cmd.split()]


def setpriv_args(settings):
    """setpriv arguments for the unit's CapabilityBoundingSet= and
    NoNewPrivileges=."""
    args = ["setpriv"]
    caps = settings.get("CapabilityBoundingSet")
    if caps:
        names = [c.lower().removeprefix("cap_") for c in caps[-1].split()]
        args.append("--bounding-set=-all," + ",".join("+" + n for n in names))
    if settings.get("NoNewPrivileges", ["no"])[-1] == "yes":
        args.append("--no-new-privs")
    return args + ["--"]


def seconds(value):
    m = re.fullmatch(r"(\d+)(s|min)?", value)
    check(m, f"cannot read the time span {value}")
    return int(m.group(1)) * (60 if m.group(2) == "min" else 1)


class Notify:
    """A NOTIFY_SOCKET of our own: what a daemon tells systemd."""

    def __init__(self, tmp):
        self.path = str(tmp / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o777)  # as systemd's: the daemon drops root
        self.sock.settimeout(0.1)
        self.messages = []

    def drain(self):
        while True:
            try:
                data = self.sock.recv(4096)
            except (socket.timeout, BlockingIOError):
                return
            self.messages.append(data.decode(errors="replace"))

    def wait_for(self, line, timeout, what):
        def seen():
            self.drain()
            return any(line in m.split("\n") for m in self.messages)
        wait_until(seen, timeout, what)

    def close(self):
        self.sock.close()


class Daemon:
    """One daemon started as its unit starts it."""

    def __init__(self, name, tmp, ini, notify):
        self.name = name
        self.settings = unit_settings(UNIT_DIR / f"{name}.service")
        self.notify = notify
        overrides = {"FILTERMAIL_CONFIG": str(ini), "NOTIFY_SOCKET": notify.path}
        self.watchdog = "WatchdogSec" in self.settings
        if self.watchdog:
            overrides["WATCHDOG_USEC"] = str(WATCHDOG_USEC)
        self.env = unit_env(self.settings, overrides)
        self.argv = exec_argv(self.settings, self.env)
        check(self.argv[-1] == str(ini), f"{name}: ExecStart does not take ${{FILTERMAIL_CONFIG}}")
        self.log_path = tmp / f"{name}.log"
        self.proc = None

    def start(self):
        umask = int(self.settings.get("UMask", ["0022"])[-1], 8)
        nofile = int(self.settings.get("LimitNOFILE", ["1024"])[-1])

        def pre():
            import resource
            os.umask(umask)
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
            os.setsid()
        # RuntimeDirectory=, as systemd makes it (root's, the unit's mode).
        for name in self.settings.get("RuntimeDirectory", []):
            rd = pathlib.Path("/run") / name
            rd.mkdir(exist_ok=True)
            rd.chmod(int(self.settings.get("RuntimeDirectoryMode", ["0755"])[-1], 8))
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(setpriv_args(self.settings) + self.argv, env=self.env,
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     preexec_fn=pre)
        log.close()
        # WATCHDOG_PID is not set: sd_watchdog_enabled() then accepts any pid.

    def log(self):
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self):
        if self.settings["Type"][-1] == "notify":
            try:
                self.notify.wait_for("READY=1", START_TIMEOUT, f"{self.name}: READY=1")
            except Failure:
                raise Failure(f"{self.name} sent no READY=1; its log:\n{self.log()}")
        else:
            wait_until(lambda: "entering serving loop" in self.log() or not self.alive(),
                       START_TIMEOUT, f"{self.name} to serve")
        check(self.alive(), f"{self.name} exited {self.proc.returncode}:\n{self.log()}")

    def status(self):
        """/proc/<pid>/status as a dict."""
        out = {}
        for line in pathlib.Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            k, _, v = line.partition(":")
            out[k] = v.strip()
        return out

    def check_unprivileged(self, user):
        pw = pwd.getpwnam(user)
        st = self.status()
        uids = set(map(int, st["Uid"].split()))
        gids = set(map(int, st["Gid"].split()))
        check(uids == {pw.pw_uid}, f"{self.name} runs with uids {uids}, not {user}'s")
        check(gids == {pw.pw_gid}, f"{self.name} runs with gids {gids}, not {user}'s")
        groups = set(map(int, st["Groups"].split()))
        check(groups <= {pw.pw_gid}, f"{self.name} keeps supplementary groups {groups}")
        for k in ("CapPrm", "CapEff", "CapAmb"):
            check(int(st[k], 16) == 0, f"{self.name}: {k} {st[k]} after dropping root")
        check(st.get("NoNewPrivs") == "1", f"{self.name}: no-new-privileges not set")

    def stop(self, check_exit=True):
        if not self.alive():
            if check_exit and self.proc is not None:
                raise Failure(f"{self.name} died ({self.proc.returncode}):\n{self.log()}")
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure(f"{self.name} ignored SIGTERM for {STOP_TIMEOUT}s")
        if check_exit:
            check(rc == 0, f"{self.name} exited {rc} on SIGTERM:\n{self.log()}")
            if self.settings["Type"][-1] == "notify":
                self.notify.wait_for("STOPPING=1", 1, f"{self.name}: STOPPING=1")


def as_user(user, code, *args):
    """Runs a Python snippet as user (e.g. connecting as Postfix would)."""
    return run(["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--",
                sys.executable, "-c", code, *args], check_rc=False, timeout=30)


CONNECT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print(e.strerror); sys.exit(1)
print("connected")
"""

POLICY = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(10)
req = ("request=smtpd_access_policy\\nprotocol_state=RCPT\\nprotocol_name=ESMTP\\n"
       "instance=abc.1\\nsender=user@chat.example.org\\nsasl_username=user@chat.example.org\\n"
       "recipient=friend@example.org\\nclient_address=192.0.2.1\\n\\n")
s.sendall(req.encode())
data = b""
while not data.endswith(b"\\n\\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode().strip())
"""


# ---------------------------------------------------------------------------
# The steps.

class PackageCheck:
    def __init__(self, changes):
        self.changes = pathlib.Path(changes).resolve()
        arch = run(["dpkg-architecture", "-qDEB_HOST_ARCH"]).stdout.strip()
        version = self.changes.name.split("_")[1]
        self.deb = self.changes.parent / f"{PKG}_{version}_{arch}.deb"
        # Under /run, not /tmp: the units' PrivateTmp= would hide /tmp from
        # the daemons started by systemd.
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="fm-package-", dir="/run"))
        os.chmod(self.tmp, 0o755)  # the daemons read the test files after dropping root
        self.daemons = []
        self.files = []
        self.skipped = []
        self.user_existed = self.has_user()

    @staticmethod
    def has_user():
        try:
            pwd.getpwnam("filtermail")
            return True
        except KeyError:
            return False

    def step(self, name, fn):
        """Runs one step. A step that cannot run here returns the reason;
        it is reported as SKIP, never as ok, and listed again at the end."""
        t = time.monotonic()
        skipped = fn()
        if skipped:
            self.skipped.append(f"{name}: {skipped}")
            print(f"SKIP {name}: {skipped}", flush=True)
        else:
            print(f"ok {name} ({time.monotonic() - t:.1f}s)", flush=True)

    # 1 -----------------------------------------------------------------
    def lintian(self):
        check(self.changes.exists(), f"{self.changes} is missing (make deb)")
        p = run(["lintian", "--display-info", "--fail-on", "error,warning", str(self.changes)],
                check_rc=False)
        out = "\n".join(l for l in p.stdout.splitlines()
                        if l != "running with root privileges is not recommended!")
        if out:
            print(out)
        check(p.returncode == 0, f"lintian failed ({p.returncode})")

    # 2 -----------------------------------------------------------------
    def install(self):
        check(not STATE_DIR.exists() and not SOCK_DIR.exists(),
              f"{STATE_DIR} or {SOCK_DIR} exists without the package: not touching it")
        run(["dpkg", "-i", str(self.deb)], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        check(installed(), "dpkg -i did not leave the package installed")
        self.files = [l for l in run(["dpkg", "-L", PKG]).stdout.splitlines() if l.strip()]

    # 3 -----------------------------------------------------------------
    def installed_files(self):
        for p in PROGRAMS + ("filtermail-postfix-setup",):
            f = pathlib.Path("/usr/sbin") / p
            check(f.exists() and os.access(f, os.X_OK), f"{f} is not installed")
            page = run(["man", "-w", "8", p], check_rc=False)
            check(page.returncode == 0, f"no manual page {p}(8)")
        check(run(["man", "-w", "5", "filtermail.ini"], check_rc=False).returncode == 0,
              "no manual page filtermail.ini(5)")
        for f in (REPO / "postfix-conf").iterdir():
            inst = pathlib.Path("/usr/share/filtermail/postfix-conf") / f.name
            check(inst.exists() and inst.read_bytes() == f.read_bytes(),
                  f"{inst} is not postfix-conf/{f.name}")
        mt = pathlib.Path("/usr/share/filtermail/mtail/filtermail.mtail")
        check(mt.exists() and mt.read_bytes() == MTAIL_PROG.read_bytes(),
              f"{mt} is not packaging/mtail/filtermail.mtail")
        setup = pathlib.Path("/usr/sbin/filtermail-postfix-setup").read_text()
        check("DATADIR=/usr/share/filtermail\n" in setup and "SBINDIR=/usr/sbin\n" in setup,
              "filtermail-postfix-setup does not name the installed paths")
        for u in UNITS:
            check((UNIT_DIR / f"{u}.service").exists(), f"{u}.service is not installed")
        check(pathlib.Path("/usr/lib/sysusers.d/filtermail.conf").exists(), "no sysusers.d file")
        check(pathlib.Path("/usr/lib/tmpfiles.d/filtermail.conf").exists(), "no tmpfiles.d file")

        pw = pwd.getpwnam("filtermail")
        check(pw.pw_uid < 1000, f"filtermail has uid {pw.pw_uid}, not a system uid")
        check(pw.pw_dir == "/nonexistent", f"filtermail's home is {pw.pw_dir}")
        check(pw.pw_shell in ("/usr/sbin/nologin", "/sbin/nologin"),
              f"filtermail's shell is {pw.pw_shell}")
        check(grp.getgrgid(pw.pw_gid).gr_name == "filtermail", "filtermail's group")
        for path, owner, group, mode in (
                (STATE_DIR, "filtermail", "filtermail", 0o750),
                (STATE_DIR / "transport", "filtermail", "filtermail", 0o700),
                (SOCK_DIR, "filtermail", "postfix", 0o750)):
            check(path.is_dir(), f"{path} was not made")
            st = path.stat()
            got = (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
                   stat.S_IMODE(st.st_mode))
            check(got == (owner, group, mode),
                  f"{path}: {got[0]}:{got[1]} {got[2]:o}, want {owner}:{group} {mode:o}")

    def units(self):
        for u in UNITS:
            path = UNIT_DIR / f"{u}.service"
            p = run(["systemd-analyze", "verify", str(path)], check_rc=False)
            check(p.returncode == 0 and not p.stdout.strip(),
                  f"systemd-analyze verify {u}:\n{p.stdout}")
            en = run(["systemctl", "is-enabled", f"{u}.service"], check_rc=False).stdout.strip()
            check(en == "disabled", f"{u} is {en!r} after installation, not disabled")
            s = unit_settings(path)
            check(s["ExecStart"][0].startswith(f"/usr/sbin/{u} "), f"{u}: ExecStart")
            check(f"FILTERMAIL_CONFIG={DEFAULT_INI}" in s.get("Environment", []),
                  f"{u}: FILTERMAIL_CONFIG does not default to {DEFAULT_INI}")
            p = run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(path)],
                    check_rc=False)
            m = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", p.stdout)
            check(m, f"systemd-analyze security {u}: no score:\n{p.stdout}")
            print(f"   {u}.service: exposure {m.group(1)} {m.group(2)} "
                  "(systemd-analyze security --offline)")
            check(float(m.group(1)) <= MAX_EXPOSURE,
                  f"{u}: exposure {m.group(1)} above {MAX_EXPOSURE}")
        wants = pathlib.Path("/etc/systemd/system/multi-user.target.wants")
        check(not any(wants.glob("filtermail*")), "a filtermail unit was enabled on install")

    # 4 -----------------------------------------------------------------
    def test_ini(self):
        """A chatmail.ini for the daemons; sockets and state at their
        defaults (the package's directories)."""
        keydir = self.tmp / "dkimkeys"
        keydir.mkdir()
        key = keydir / "opendkim.private"
        run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)])
        # As chatmail keeps it: readable by its owner (opendkim there) only;
        # the milter reads it as root before dropping privileges.
        nobody = pwd.getpwnam("nobody")
        os.chown(key, nobody.pw_uid, nobody.pw_gid)
        os.chmod(key, 0o600)
        os.chown(keydir, nobody.pw_uid, nobody.pw_gid)
        os.chmod(keydir, 0o700)
        (self.tmp / "mailboxes").mkdir(mode=0o755)
        self.http_port = free_port()
        ini = self.tmp / "chatmail.ini"
        ini.write_text(
            "[params]\n"
            "mail_domain = chat.example.org\n"
            f"mailboxes_dir = {self.tmp}/mailboxes\n"
            f"filtermail_http_port_incoming = {self.http_port}\n"
            f"postfix_reinject_port_incoming = {free_port()}\n"
            f"filtermail_dkim_key = {key}\n"
            "filtermail_dns_timeout = 2\n"
            "filtermail_transport_connect_timeout = 2\n"
            "filtermail_transport_deadline = 20\n")
        os.chmod(ini, 0o644)
        return ini

    def daemons_as_units(self):
        ini = self.test_ini()
        notify = Notify(self.tmp)
        try:
            self._milter(ini, notify)
            self._policyd(ini, notify)
            self._mxdeliv(ini, notify)
            self._deliverd(ini, notify)
        finally:
            notify.close()

    def _start(self, name, ini, notify):
        notify.messages.clear()
        d = Daemon(name, self.tmp, ini, notify)
        self.daemons.append(d)
        d.start()
        d.wait_ready()
        d.check_unprivileged("filtermail")
        if d.watchdog:
            notify.messages.clear()
            notify.wait_for("WATCHDOG=1", 3 * WATCHDOG_USEC / 1e6, f"{name}: WATCHDOG=1")
        return d

    def _socket(self, path):
        st = os.stat(path)
        check(stat.S_ISSOCK(st.st_mode), f"{path} is not a socket")
        got = (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
               stat.S_IMODE(st.st_mode))
        check(got == ("filtermail", "postfix", 0o660),
              f"{path}: {got[0]}:{got[1]} {got[2]:o}, want filtermail:postfix 660")
        p = as_user("postfix", CONNECT, str(path))
        check(p.returncode == 0, f"postfix cannot connect to {path}: {p.stdout}")
        p = as_user("nobody", CONNECT, str(path))
        check(p.returncode != 0, f"nobody can connect to {path}")

    def _milter(self, ini, notify):
        d = self._start("filtermail-milter", ini, notify)
        self._socket(SOCK_DIR / "milter.sock")
        check(d.alive(), f"filtermail-milter died:\n{d.log()}")
        d.stop()

    def _policyd(self, ini, notify):
        d = self._start("filtermail-policyd", ini, notify)
        sock = SOCK_DIR / "policy.sock"
        self._socket(sock)
        p = as_user("postfix", POLICY, str(sock))
        check(p.returncode == 0 and p.stdout.strip() == "action=DUNNO",
              f"policy request: {p.stdout!r}")
        d.stop()
        snap = STATE_DIR / "ratelimit.state"
        check(snap.exists(), f"{snap} was not written on SIGTERM:\n{d.log()}")
        check(pwd.getpwuid(snap.stat().st_uid).pw_name == "filtermail", f"{snap} owner")

    def _mxdeliv(self, ini, notify):
        import http.client
        d = self._start("filtermail-mxdeliv", ini, notify)
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=10)
        c.request("POST", "/mxdeliv", body=b"Subject: x\r\n\r\nx\r\n")
        r = c.getresponse()
        body = r.read().decode(errors="replace").strip()
        check((r.status, body) == (200, "250 OK"), f"POST without X-Mail-To: {r.status} {body}")
        c.request("GET", "/mxdeliv")
        r = c.getresponse()
        r.read()
        check(r.status == 405, f"GET /mxdeliv: {r.status}")
        c.close()
        d.stop()

    def _deliverd(self, ini, notify):
        d = self._start("filtermail-deliverd", ini, notify)
        self._socket(pathlib.Path("/run/filtermail-deliverd/deliverd.sock"))
        # The client as pipe(8) runs it: .invalid has no MX, so a bounce or
        # (no DNS here) a deferral, answered by the daemon.
        msg = b"From: user@chat.example.org\r\nTo: a@nowhere.invalid\r\n\r\nx\r\n"
        p = subprocess.run(["setpriv", "--reuid=filtermail", "--regid=filtermail",
                            "--init-groups", "--", "/usr/sbin/filtermail-transport-client",
                            str(ini), "-q", "TESTQ2", "-f", "user@chat.example.org", "--",
                            "a@nowhere.invalid"], input=msg, capture_output=True, timeout=120,
                           env={"PATH": "/usr/bin:/bin"}, cwd="/")
        out = p.stdout.decode(errors="replace")
        check(p.returncode in (75, 68, 69) and re.match(r"[45]\.\d+\.\d+ ", out)
              and "not reachable" not in out,
              f"client as filtermail: exit {p.returncode}, {out!r} {p.stderr!r}")
        print(f"   client to a@nowhere.invalid: exit {p.returncode}, {out.splitlines()[0]}")
        check(d.alive(), f"filtermail-deliverd died:\n{d.log()}")
        d.stop()

    def transport(self):
        ini = self.tmp / "chatmail.ini"
        msg = b"From: user@chat.example.org\r\nTo: a@nowhere.invalid\r\n\r\nx\r\n"
        argv = ["/usr/sbin/filtermail-transport", str(ini), "-q", "TESTQ1",
                "-f", "user@chat.example.org", "--", "a@nowhere.invalid"]
        # As root: refused, deferred.
        p = subprocess.run(argv, input=msg, capture_output=True, timeout=60)
        out = p.stdout.decode(errors="replace")
        check(p.returncode == 75 and out.startswith("4.") and "root" in out,
              f"transport as root: exit {p.returncode}, {out!r}")
        # As pipe(8) runs it: user=filtermail, PATH reset. .invalid has no
        # MX: a bounce (no such domain) or a deferral (no DNS here), never a
        # crash or a success.
        p = subprocess.run(["setpriv", "--reuid=filtermail", "--regid=filtermail",
                            "--init-groups", "--"] + argv, input=msg, capture_output=True,
                           timeout=120, env={"PATH": "/usr/bin:/bin"}, cwd="/")
        out = p.stdout.decode(errors="replace")
        check(p.returncode in (75, 67, 68, 69) and re.match(r"[45]\.\d+\.\d+ ", out),
              f"transport as filtermail: exit {p.returncode}, {out!r} {p.stderr!r}")
        print(f"   transport to a@nowhere.invalid: exit {p.returncode}, {out.splitlines()[0]}")

    def systemd_units(self):
        """Where systemd runs: the units themselves, with the test ini."""
        if not pathlib.Path("/run/systemd/system").is_dir():
            return ("systemd is not PID 1 here: the units were not started with systemctl "
                    "(the previous step imitated them)")
        ini = self.tmp / "chatmail.ini"
        dropins = []
        try:
            for u in UNITS:
                d = pathlib.Path(f"/run/systemd/system/{u}.service.d")
                d.mkdir(parents=True, exist_ok=True)
                (d / "package-check.conf").write_text(
                    f"[Service]\nEnvironment=FILTERMAIL_CONFIG={ini}\n")
                dropins.append(d)
            run(["systemctl", "daemon-reload"])
            for u in UNITS:
                p = run(["systemctl", "start", f"{u}.service"], check_rc=False, timeout=60)
                if p.returncode != 0:
                    log = run(["journalctl", "-u", f"{u}.service", "-n", "30", "--no-pager"],
                              check_rc=False).stdout
                    raise Failure(f"systemctl start {u}: {p.stdout}\n{log}")
                check(run(["systemctl", "is-active", f"{u}.service"],
                          check_rc=False).stdout.strip() == "active", f"{u} is not active")
        finally:
            for u in UNITS:
                run(["systemctl", "stop", f"{u}.service"], check_rc=False, timeout=60)
            for d in dropins:
                shutil.rmtree(d, ignore_errors=True)
            run(["systemctl", "daemon-reload"], check_rc=False)

    # 5 -----------------------------------------------------------------
    def setup_script(self):
        pf = self.tmp / "postfix"
        pf.mkdir()
        for f in ("main.cf", "master.cf"):
            shutil.copy(HERE / "relay-postfix" / f, pf / f)
        # The mailboxes as on a relay: another user's, mode 0700.
        mb = self.tmp / "vmail" / "chat.example.org"
        (mb / "old@chat.example.org").mkdir(parents=True)
        mail = pwd.getpwnam("mail")
        for d in (mb.parent, mb, mb / "old@chat.example.org"):
            os.chown(d, mail.pw_uid, mail.pw_gid)
            os.chmod(d, 0o700)
        ini = self.tmp / "relay.ini"
        ini.write_text("[params]\nmail_domain = chat.example.org\n"
                       f"mailboxes_dir = {mb}\nfiltermail_dkim_sign = no\n")
        state = self.tmp / "setup-state"
        units = self.tmp / "units"
        units.mkdir()
        fake = self.tmp / "systemctl"
        fake.write_text(FAKE_SYSTEMCTL)
        fake.chmod(0o755)
        # Upstream's units are running, filtermail's are not.
        for u in ("filtermail", "filtermail-incoming", "filtermail-transport"):
            (units / f"{u}.service.enabled").touch()
            (units / f"{u}.service.active").touch()
        for u in UNITS:
            (units / f"{u}.service").touch()
        env = {**os.environ, "FILTERMAIL_SETUP_SYSTEMCTL": str(fake), "FAKE_UNITS": str(units),
               "FAKE_PFDIR": str(pf)}
        base = ["/usr/sbin/filtermail-postfix-setup", "-c", str(pf), "--state-dir", str(state)]

        def setup(*args):
            return run(base + list(args), env=env)

        def files():
            return {f: (pf / f).read_bytes() for f in ("main.cf", "master.cf")}

        def settings():
            main = sorted(l for l in (pf / "main.cf").read_text().splitlines()
                          if l.strip() and not l.lstrip().startswith("#"))
            master = run(["postconf", "-c", str(pf), "-M"]).stdout
            params = run(["postconf", "-c", str(pf), "-P"]).stdout
            return main, sorted(master.splitlines()), sorted(params.splitlines())

        def pc(*args):
            p = run(["postconf", "-c", str(pf)] + list(args))
            check("warning" not in p.stdout, f"postconf {' '.join(args)}: {p.stdout}")
            return p.stdout

        original, original_settings = files(), settings()
        unit_states = sorted(os.listdir(units))

        out = setup("--dry-run", str(ini)).stdout
        check("would run: postconf" in out, f"dry run printed no commands:\n{out}")
        check(files() == original and not state.exists(), "--dry-run changed something")
        check(not (units / "log").exists(), "--dry-run touched units")

        out = setup(str(ini)).stdout
        main = pc("-n")
        for want in ("smtpd_milters = { unix:filtermail/milter.sock,",
                     "default_transport = filtermail\n",
                     "mua_sender_restrictions = reject_sender_login_mismatch, "
                     "$filtermail_rate_limit, permit_sasl_authenticated, reject\n",
                     "filtermail_rate_limit = check_policy_service { unix:filtermail/policy.sock,",
                     "milter_macro_daemon_name = INBOUND\n"):
            check(want in main, f"main.cf lacks {want.strip()!r}:\n{main}")
        params = pc("-P")
        for want in ("smtp/inet/milter_macro_daemon_name = INBOUND",
                     "submission/inet/milter_macro_daemon_name = ORIGINATING",
                     "smtps/inet/milter_macro_daemon_name = ORIGINATING",
                     "submission/inet/cleanup_service_name = authclean",
                     "127.0.0.1:10026/inet/milter_macro_daemon_name = INBOUND",
                     "127.0.0.1:10026/inet/mynetworks =",
                     "127.0.0.1:10026/inet/smtpd_relay_restrictions = reject_unauth_destination"):
            check(want in params.splitlines(), f"master.cf lacks {want}")
        check("smtpd_proxy_filter" not in params, "upstream's smtpd_proxy_filter is still there")
        pipe = pc("-M", "filtermail/unix").strip()
        check(f"user=filtermail argv=/usr/sbin/filtermail-transport-client {ini} -q ${{queue_id}}"
              in pipe and "eol=\\r\\n" in pipe, f"the pipe service: {pipe}")
        # Every setting of the snippets is there (main.cf.transport's too).
        for name in ("milter_default_action", "milter_protocol", "milter_mail_macros",
                     "filtermail_destination_recipient_limit", "filtermail_time_limit"):
            check(f"\n{name} = " in "\n" + main, f"main.cf lacks {name}")
        log = (units / "log").read_text().split("\n")
        # No gap: filtermail's milter, policy server and delivery daemon start before
        # Postfix points at them, upstream's daemons stop only after.
        want_order = ["enable --now filtermail-milter.service",
                      "enable --now filtermail-policyd.service",
                      "enable --now filtermail-deliverd.service",
                      "disable --now filtermail-incoming.service (wired)",
                      "enable --now filtermail-mxdeliv.service (wired)",
                      "disable --now filtermail.service (wired)",
                      "disable --now filtermail-transport.service (wired)"]
        check([l for l in log if l] == want_order, f"systemctl calls: {log}")
        master = pc("-M")
        check("127.0.0.1:10025" not in master and "lmtp-filtermail" not in master
              and "lmtp-filtermail" not in main, "upstream's 10025 or lmtp-filtermail stayed")
        # The mailboxes are open to filtermail for searching, also an
        # account made later as doveauth makes it (umask 077).
        new = mb / "new@chat.example.org"
        run(["runuser", "-u", "mail", "--", "sh", "-c", f"umask 077 && mkdir {new}"])
        for d in (mb, mb / "old@chat.example.org", new):
            check(run(["runuser", "-u", "filtermail", "--", "test", "-x", str(d)],
                      check_rc=False).returncode == 0, f"filtermail cannot search {d}")
            check(run(["runuser", "-u", "filtermail", "--", "ls", str(d)],
                      check_rc=False).returncode != 0, f"filtermail can list {d}")
        for u in UNITS:
            check((units / f"{u}.service.active").exists(), f"{u} was not started")
        check(not (units / "filtermail-incoming.service.active").exists(),
              "upstream's filtermail-incoming still runs")

        wired = files()
        out = setup(str(ini)).stdout
        check(files() == wired, "a second run changed the files")
        check("0 setting(s) changed" in out, f"a second run changed settings:\n{out}")

        setup("--keep-opendkim", str(ini))
        main = pc("-n")
        check("filtermail_submission_milters = { unix:filtermail/milter.sock," in main
              and main.rstrip().count("unix:opendkim/opendkim.sock") >= 1,
              "--keep-opendkim: no filtermail_submission_milters")
        check("submission/inet/smtpd_milters = $filtermail_submission_milters" in pc("-P"),
              "--keep-opendkim: submission keeps no OpenDKIM")
        setup(str(ini))
        check(files() == wired, "running without --keep-opendkim again did not go back")

        out = setup("--dry-run", "--undo").stdout
        check(files() == wired, "--undo --dry-run changed something")
        (units / "log").unlink()
        setup("--undo")
        check(files() == original, "--undo did not restore main.cf and master.cf byte for byte")
        check(settings() == original_settings, "--undo did not restore the configuration")
        log = [l for l in (units / "log").read_text().split("\n") if l]
        check(log == ["start filtermail.service (wired)", "enable filtermail.service (wired)",
                      "start filtermail-transport.service (wired)",
                      "enable filtermail-transport.service (wired)",
                      "stop filtermail-mxdeliv.service (wired)",
                      "disable filtermail-mxdeliv.service (wired)",
                      "start filtermail-incoming.service (wired)",
                      "enable filtermail-incoming.service (wired)",
                      "stop filtermail-milter.service", "disable filtermail-milter.service",
                      "stop filtermail-policyd.service", "disable filtermail-policyd.service",
                      "stop filtermail-deliverd.service", "disable filtermail-deliverd.service"],
              f"--undo: systemctl calls: {log}")
        acl = run(["getfacl", "-p", "-R", str(mb)]).stdout
        check("filtermail" not in acl, f"--undo left ACL entries:\n{acl}")
        check(not state.exists(), "--undo left its state behind")
        check(sorted(x for x in os.listdir(units) if x != "log") == unit_states,
              f"--undo did not restore the units: {sorted(os.listdir(units))}")
        out = setup("--undo").stdout
        check("nothing to undo" in out, "a second --undo did something")

    def mtail(self):
        """The installed mtail program compiles and counts the sample
        journal lines as MTAIL_WANT says."""
        progs = self.tmp / "mtail"
        progs.mkdir()
        shutil.copy("/usr/share/filtermail/mtail/filtermail.mtail", progs)
        p = run(["mtail", "--one_shot", "--one_shot_format=prometheus", "--logtostderr",
                 "--progs", str(progs), "--logs", str(MTAIL_SAMPLE)], check_rc=False, timeout=60)
        check(p.returncode == 0 and "compile failed" not in p.stdout, f"mtail:\n{p.stdout}")
        got = {}
        for line in p.stdout.splitlines():
            m = re.match(r'(filtermail_\w+)\{(.*)\} (\S+)$', line)
            if m:
                labels = ",".join(sorted(l for l in m.group(2).split(",")
                                         if not l.startswith("prog=")))
                got[f"{m.group(1)}{{{labels}}}"] = float(m.group(3))
        for key, want in MTAIL_WANT.items():
            check(got.get(key) == want, f"mtail: {key} is {got.get(key)}, want {want}")
        print(f"   {len(got)} series from {MTAIL_SAMPLE.name}, {len(MTAIL_WANT)} checked")

    # 6 -----------------------------------------------------------------
    def e2e(self):
        if os.environ.get("FILTERMAIL_PACKAGE_E2E", "1") == "0":
            return "FILTERMAIL_PACKAGE_E2E=0"
        p = subprocess.run([sys.executable, str(REPO / "tests" / "integration" / "run.py")],
                           env={**os.environ, "FILTERMAIL_BUILD": "/usr/sbin"}, cwd=REPO,
                           timeout=1800)
        check(p.returncode == 0, "the integration tests failed against the installed programs")

    def reinstall(self):
        """dpkg -i over the installed package (an upgrade's path): the state
        stays, the directories keep their owners."""
        marker = STATE_DIR / "ratelimit.state"
        check(marker.exists(), f"{marker} is missing before the reinstall")
        run(["dpkg", "-i", str(self.deb)], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        check(marker.exists(), f"reinstalling removed {marker}")
        self.installed_files()

    # 7 -----------------------------------------------------------------
    def purge(self):
        # Removal keeps the state; purge removes it.
        run(["dpkg", "-r", PKG])
        check(not pathlib.Path("/usr/sbin/filtermail-milter").exists(), "dpkg -r left binaries")
        check((STATE_DIR / "ratelimit.state").exists(), "dpkg -r removed the state")
        run(["dpkg", "--purge", PKG])
        check(not installed(), "the package is still installed")
        left = [f for f in self.files
                if os.path.lexists(f) and not os.path.isdir(f)]
        check(not left, f"left after purge: {left}")
        for d in (STATE_DIR, SOCK_DIR, pathlib.Path("/usr/share/filtermail"),
                  pathlib.Path("/usr/share/doc/filtermail")):
            check(not d.exists(), f"{d} left after purge")
        for pattern in ("/etc/systemd/system/*/filtermail*",
                        "/var/lib/systemd/deb-systemd-helper-enabled/**/filtermail*"):
            found = list(pathlib.Path("/").glob(pattern.lstrip("/")))
            check(not found, f"left after purge: {found}")
        running = [pid for pid in os.listdir("/proc") if pid.isdigit()
                   and self._exe(pid).startswith("/usr/sbin/filtermail-")]
        check(not running, f"filtermail processes still run: {running}")
        # Documented state: Debian never deletes system users.
        check(self.has_user(), "the filtermail user is gone (expected to stay)")

    @staticmethod
    def _exe(pid):
        try:
            return os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return ""

    def cleanup(self, failed):
        for d in self.daemons:
            if d.alive():
                d.proc.kill()
                d.proc.wait()
        if installed() and not (failed and os.environ.get("FILTERMAIL_KEEP_PACKAGE") == "1"):
            run(["dpkg", "--purge", PKG], check_rc=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


MTAIL_PROG = REPO / "packaging" / "mtail" / "filtermail.mtail"
MTAIL_SAMPLE = HERE / "mtail-sample.log"
# What the sample's lines add up to (labels sorted, without mtail's prog=).
MTAIL_WANT = {
    'filtermail_messages_total{direction="outgoing",kind="encrypted"}': 2,
    'filtermail_messages_total{direction="outgoing",kind="unencrypted"}': 1,
    'filtermail_messages_total{direction="incoming",kind="encrypted"}': 1,
    'filtermail_messages_total{direction="incoming",kind="unencrypted"}': 1,
    'filtermail_messages_total{direction="incoming",kind="mailer_daemon"}': 1,
    'filtermail_outbound_drop_total{reason="unencrypted"}': 1,
    'filtermail_outbound_drop_total{reason="sender_disabled"}': 1,
    'filtermail_outbound_drop_total{reason="all_recipients_disabled"}': 1,
    'filtermail_inbound_drop_total{reason="unencrypted"}': 1,
    'filtermail_dkim_failures_total{result="fail"}': 1,
    'filtermail_dkim_results_total{result="pass"}': 1,
    'filtermail_dkim_results_total{result="fail"}': 1,
    'filtermail_dkim_results_total{result="temporary"}': 1,
    'filtermail_verdicts_total{action="accept",direction="incoming",kind="securejoin",reason="none"}': 1,
    'filtermail_verdicts_total{action="reject",direction="incoming",kind="encrypted",reason="dkim"}': 1,
    'filtermail_dkim_failures_total{result="temporary"}': 1,
    'filtermail_rejected_total{reason="unencrypted"}': 1,
    'filtermail_rejected_total{reason="dkim"}': 2,
    'filtermail_rejected_total{reason="dkim_tempfail"}': 1,
    'filtermail_rejected_total{reason="from_mismatch"}': 2,
    'filtermail_rejected_total{reason="size"}': 1,
    'filtermail_rejected_total{reason="malformed"}': 1,
    'filtermail_rejected_total{reason="milter_error"}': 1,
    'filtermail_rejected_total{reason="milter_unavailable"}': 2,
    'filtermail_rejected_total{reason="rate_limit"}': 1,
    'filtermail_rejected_total{reason="policy_unavailable"}': 1,
    'filtermail_ratelimited_total{}': 1,
    'filtermail_deliveries_total{channel="https",status="sent"}': 1,
    'filtermail_deliveries_total{channel="smtp",status="deferred"}': 1,
    'filtermail_deliveries_total{channel="none",status="bounced"}': 1,
    'filtermail_delivery_seconds_sum{channel="smtp",status="deferred"}': 12.5,
    'filtermail_delivery_seconds_bucket{channel="https",le="0.25",status="sent"}': 1,
    'filtermail_delivery_seconds_bucket{channel="https",le="0.1",status="sent"}': 0,
    'filtermail_transport_error_total{reason="connection_timeout"}': 1,
    'filtermail_transport_error_total{reason="tls_cert_not_verified"}': 1,
    'filtermail_transport_local_errors_total{}': 1,
    'filtermail_mxdeliv_requests_total{status="200"}': 1,
    'filtermail_mxdeliv_requests_total{status="400"}': 1,
    'filtermail_mxdeliv_requests_total{status="503"}': 1,
    'filtermail_reinject_error_total{direction="inbound"}': 1,
}

# A stand-in for systemctl: unit state as files in $FAKE_UNITS (NAME exists:
# installed; NAME.enabled, NAME.active), changes logged to $FAKE_UNITS/log.
FAKE_SYSTEMCTL = r"""#!/bin/sh
set -eu
d=$FAKE_UNITS
cmd=$1; shift
now=0
if [ "${1:-}" = --now ]; then now=1; shift; fi
u=$1
case $cmd in
cat) [ -e "$d/$u" ] || [ -e "$d/$u.enabled" ] ;;
is-enabled) if [ -e "$d/$u.enabled" ]; then echo enabled; else echo disabled; exit 1; fi ;;
is-active) if [ -e "$d/$u.active" ]; then echo active; else echo inactive; exit 3; fi ;;
enable|disable|start|stop)
    # Whether Postfix is wired to filtermail at that moment.
    w=; grep -q '^default_transport = filtermail$' "$FAKE_PFDIR/main.cf" && w=" (wired)"
    [ $now = 1 ] && echo "$cmd --now $u$w" >>"$d/log" || echo "$cmd $u$w" >>"$d/log"
    case $cmd in
    enable) touch "$d/$u.enabled"; [ $now = 0 ] || touch "$d/$u.active" ;;
    disable) rm -f "$d/$u.enabled"; [ $now = 0 ] || rm -f "$d/$u.active" ;;
    start) touch "$d/$u.active" ;;
    stop) rm -f "$d/$u.active" ;;
    esac ;;
*) echo "fake systemctl: $cmd" >&2; exit 1 ;;
esac
"""


def main():
    if len(sys.argv) != 2:
        print(__doc__.split("\n\n")[0], file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("package-check: must run as root (dpkg -i, daemons that start as root)",
              file=sys.stderr)
        return 1
    t0 = time.monotonic()
    pc = PackageCheck(sys.argv[1])
    failed = True
    try:
        if installed():
            run(["dpkg", "--purge", PKG])
        pc.step("lintian", pc.lintian)
        pc.step("dpkg -i", pc.install)
        pc.step("installed files, user, directories", pc.installed_files)
        pc.step("units", pc.units)
        pc.step("daemons started as their units start them", pc.daemons_as_units)
        pc.step("transport run as pipe(8) runs it", pc.transport)
        pc.step("units under systemd", pc.systemd_units)
        pc.step("filtermail-postfix-setup", pc.setup_script)
        pc.step("mtail program", pc.mtail)
        pc.step("integration tests against /usr/sbin", pc.e2e)
        pc.step("dpkg -i again (upgrade path)", pc.reinstall)
        pc.step("dpkg --purge", pc.purge)
        failed = False
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        for d in pc.daemons:
            if d.log():
                print(f"--- {d.name} log:\n{d.log()}", file=sys.stderr)
    finally:
        pc.cleanup(failed)
    for s in pc.skipped:
        print(f"package-check: SKIPPED {s}")
    print(f"package-check: {'FAILED' if failed else 'passed'} in {time.monotonic() - t0:.0f}s"
          + (f", {len(pc.skipped)} step(s) skipped (above)" if pc.skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
