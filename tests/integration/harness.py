"""A private Postfix (and filtermail-milter) on loopback, for integration tests.

Every test suite that needs a real Postfix imports this module: the E2EE
acceptance tests, the DKIM tests, the policy-server tests, the benchmarks.

    from harness import Relay, read_mail

    with Relay(max_message_size=4096) as relay:
        relay.add_user("two@example.org")                 # enforceE2EEincoming
        reply = relay.send_outgoing("one@example.org", ["two@example.org"],
                                    read_mail("encrypted.eml"))
        assert reply.code == 250, reply        # a Reply: (code, message)
        relay.wait_for_delivery("two@example.org")

A Relay owns a fresh temporary directory holding Postfix's configuration,
queue, log (maillog) and Maildirs, a chatmail.ini and the milter's socket and
stderr. Its SMTP services listen on free loopback ports chosen at start, so
several suites can run at once. Postfix runs as root (it must), the milter
drops to `nobody`; both are stopped, and the directory removed, when the
context ends, when stop() is called or at interpreter exit, whatever happened.
stop() fails (HarnessError) when the milter died unexpectedly or a sanitizer
reported anything on its stderr.

Mail layout:
  * local domains (Relay(domains=...), the first one is chatmail's mail_domain)
    are delivered by virtual(8) into the Maildir <tmp>/maildirs/inbox/;
  * every other domain goes to the "capture" transport, another virtual(8)
    writing into <tmp>/capture/inbox/, so tests see what left the relay;
  * mailbox flag files live in <tmp>/mailboxes/<mail_domain>/<address>/
    (chatmail's mailboxes_dir), see add_user() and set_flag().
virtual(8) prepends Return-Path: and Delivered-To:, so the envelope sender and
the recipient of each delivered message are visible (mailbox(addr) selects by
Delivered-To:). (virtual(8) refuses regexp substitutions, hence one Maildir.)

Services (relay.port(name)):
  * "smtp": the port-25 role, incoming policy ({daemon_name} INBOUND), no
    relaying to foreign domains;
  * "submission": the outgoing role ({daemon_name} ORIGINATING), relaying
    from loopback, XCLIENT allowed from 127.0.0.1 so that `XCLIENT LOGIN=`
    stands in for SASL authentication ({auth_authen});
  * any extra smtpd services given as smtpd_services={name: [-o lines]}.

Set FILTERMAIL_KEEP_TMP=1 to keep the temporary directory for inspection.
"""
import atexit
import email
import email.policy
import json
import os
import pathlib
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
MAIL_DATA = REPO / "tests" / "data" / "mail"

# uid/gid of the virtual(8) deliveries and of the milter (filtermail_user).
NOBODY = 65534

# What a sanitizer prints when it finds something (ASan, LSan, UBSan).
SANITIZER_MARKERS = (
    "ERROR: AddressSanitizer",
    "ERROR: LeakSanitizer",
    "AddressSanitizer:DEADLYSIGNAL",
    "SUMMARY: AddressSanitizer",
    "SUMMARY: UndefinedBehaviorSanitizer",
    "runtime error:",
    # LeakSanitizer could not run: leaks would go unnoticed.
    "LeakSanitizer has encountered a fatal error",
)

# Every wait in this module is bounded by one of these (seconds).
START_TIMEOUT = 20
STOP_TIMEOUT = 20
SMTP_TIMEOUT = 30
DELIVERY_TIMEOUT = 20


class HarnessError(Exception):
    """The harness could not do what was asked, or found the milter broken."""


# ---------------------------------------------------------------------------
# Small helpers, usable without a Relay.

def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate() until it returns something true, and returns that.
    Raises HarnessError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1. Another process may grab one
    before it is used; Relay.start() retries with new ports when a bind fails."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def read_mail(name):
    """The bytes of tests/data/mail/<name> (or of a path relative to the repo)."""
    path = MAIL_DATA / name
    if not path.exists():
        path = REPO / name
    return path.read_bytes()


def _split_head(data):
    """(header block lines, separator + body) of a message, line ends kept."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        i = data.find(sep)
        if i >= 0:
            head_end = i + len(sep) // 2
            return data[:head_end], data[head_end:]
    return data, b""


def set_header(data, name, value):
    """Replaces the first `name:` field of the top-level header (with its
    continuation lines) by `name: value`, or prepends it when absent."""
    head, rest = _split_head(data)
    lines = head.splitlines(keepends=True)
    key = name.lower().encode() + b":"
    value = value.encode() if isinstance(value, str) else value
    for i, line in enumerate(lines):
        if line.lower().startswith(key):
            eol = b"\r\n" if line.endswith(b"\r\n") else b"\n"
            j = i + 1
            while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
                j += 1
            lines[i:j] = [name.encode() + b": " + value + eol]
            return b"".join(lines) + rest
    return add_header(data, name, value)


def add_header(data, name, value):
    """Prepends the field `name: value` to the message."""
    value = value.encode() if isinstance(value, str) else value
    return name.encode() + b": " + value + b"\r\n" + data


def smtp_data(data):
    """The DATA payload for a message: bare LF and bare CR become CRLF, lines
    starting with '.' are stuffed, a final CRLF is ensured. The terminating
    '.' line is not included."""
    data = data.encode() if isinstance(data, str) else data
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\r\n.", b"\r\n..")


class Reply(tuple):
    """An SMTP reply as (code, message): message is the reply text without the
    code, lines joined with '\\n'. `stage` names the command that got it
    ("connect", "MAIL", "RCPT <addr>", "DATA" or "end of data")."""

    def __new__(cls, code, message, stage):
        r = super().__new__(cls, (code, message))
        r.stage = stage
        return r

    code = property(lambda self: self[0])
    message = property(lambda self: self[1])

    def __str__(self):
        return f"{self[0]} {self[1]}"

    def __repr__(self):
        return f"Reply({self[0]}, {self[1]!r}, stage={self.stage!r})"


def _reply(code, msg, stage):
    if isinstance(msg, bytes):
        msg = msg.decode("utf-8", "replace")
    return Reply(code, msg, stage)


def smtp_connect(port, *, login=None, host="127.0.0.1", helo="client.test",
                 timeout=SMTP_TIMEOUT):
    """An smtplib.SMTP session after EHLO and, with login, `XCLIENT LOGIN=`
    (the service must allow XCLIENT from 127.0.0.1). Raises HarnessError when
    the server refuses either."""
    s = smtplib.SMTP(host, port, local_hostname=helo, timeout=timeout)
    try:
        code, msg = s.ehlo()
        if code != 250:
            raise HarnessError(f"EHLO refused: {code} {msg!r}")
        if login is not None:
            code, msg = s.docmd("XCLIENT", f"LOGIN={login}")
            if code != 220:
                raise HarnessError(f"XCLIENT LOGIN={login} refused: {code} {msg!r}")
            code, msg = s.ehlo()
            if code != 250:
                raise HarnessError(f"EHLO after XCLIENT refused: {code} {msg!r}")
        return s
    except BaseException:
        s.close()
        raise


def smtp_send(s, mail_from, rcpts, data):
    """Runs one mail transaction on an open session; mail_from "" is the null
    sender, data is sent through smtp_data(). Returns the first reply of class
    4 or 5 (to MAIL, any RCPT, DATA), else the reply to the end of data. A
    disconnect becomes Reply(421, "connection lost: ...")."""
    stage = "MAIL"
    try:
        # Raw commands: smtplib's address quoting mangles domain literals.
        code, msg = s.docmd("MAIL", f"FROM:<{mail_from}>")
        if code >= 400:
            return _reply(code, msg, stage)
        for rcpt in rcpts:
            stage = f"RCPT {rcpt}"
            code, msg = s.docmd("RCPT", f"TO:<{rcpt}>")
            if code >= 400:
                return _reply(code, msg, stage)
        stage = "DATA"
        s.putcmd("data")
        code, msg = s.getreply()
        if code != 354:
            return _reply(code, msg, stage)
        stage = "end of data"
        s.send(smtp_data(data) + b".\r\n")
        code, msg = s.getreply()
        return _reply(code, msg, stage)
    except smtplib.SMTPServerDisconnected as e:
        return _reply(421, f"connection lost: {e}", stage)


def smtp_transaction(port, mail_from, rcpts, data, *, login=None, host="127.0.0.1",
                     helo="client.test", timeout=SMTP_TIMEOUT):
    """Connects, (XCLIENT LOGIN=login,) runs one transaction (smtp_send) and
    quits. Returns a Reply; a greeting other than 220 is a Reply too. Raises
    OSError when nothing listens, HarnessError when EHLO or XCLIENT fails."""
    try:
        s = smtp_connect(port, login=login, host=host, helo=helo, timeout=timeout)
    except smtplib.SMTPConnectError as e:
        return _reply(e.smtp_code, e.smtp_error, "connect")
    try:
        return smtp_send(s, mail_from, rcpts, data)
    finally:
        try:
            s.quit()
        except (smtplib.SMTPException, OSError):
            s.close()


class Delivered:
    """One message file in a Maildir."""

    def __init__(self, path):
        self.path = path
        self.raw = path.read_bytes()
        self.message = email.message_from_bytes(self.raw, policy=email.policy.compat32)

    @property
    def delivered_to(self):
        """The recipient virtual(8) delivered it to, lowercased."""
        return (self.message.get("Delivered-To") or "").strip().lower()

    @property
    def return_path(self):
        """The envelope sender virtual(8) recorded, e.g. "<>" or "<a@b>"."""
        return (self.message.get("Return-Path") or "").strip()

    def __repr__(self):
        return f"Delivered({self.path.name}, Return-Path={self.return_path})"


# ---------------------------------------------------------------------------
# The relay.

_at_exit = {}  # what is running -> how to stop it, in start order


def stop_at_exit(obj, stop):
    """Interpreter exit calls stop() for obj unless forget_at_exit(obj) came
    first: a test that fails half-way leaves no Postfix, daemon or nginx."""
    _at_exit[obj] = stop


def forget_at_exit(obj):
    _at_exit.pop(obj, None)


def _stop_all_at_exit():
    for obj, stop in reversed(list(_at_exit.items())):  # the last started first
        try:
            stop()
        except Exception as e:  # at exit there is nobody left to raise to
            print(f"harness: at exit: {e}", flush=True)


atexit.register(_stop_all_at_exit)


def live_relays():
    """The relays created and not yet stopped (a test runner checks them)."""
    return [obj for obj in _at_exit if isinstance(obj, Relay)]


def milter_binary(default_build="build/san"):
    """The milter binary of $FILTERMAIL_BUILD (default_build when unset)."""
    build = os.environ.get("FILTERMAIL_BUILD", default_build)
    return (REPO / build / "filtermail-milter").resolve()


def _text_of(value, relay):
    """A hook's text: a string, or a callable taking the relay."""
    if value is None:
        return ""
    return value(relay) if callable(value) else value


# Postfix warns "overriding earlier entry" for a parameter set twice, in
# every process it starts, and these warnings can hang a whole instance at
# start: postlogd logs its own start-up warnings through its own unix-dgram
# socket, whose queue holds net.unix.max_dgram_qlen (10) messages; once master
# and the first daemons have filled it, postlogd blocks writing to itself and
# every process blocks in its next log call. So main.cf sets each parameter
# once, by its last assignment (the main_cf hook's lines win).
def keep_last_settings(text):
    """main.cf text in which every parameter is set once, by its last
    assignment (continuation lines kept with their parameter)."""
    entries = []            # [name or None, lines]
    for line in text.splitlines(keepends=True):
        if line[:1] in (" ", "\t") and entries and line.strip():
            entries[-1][1].append(line)
            continue
        m = re.match(r"([A-Za-z0-9_]+)\s*=", line)
        entries.append([m.group(1) if m else None, [line]])
    last = {name: i for i, (name, _) in enumerate(entries) if name}
    return "".join("".join(lines) for i, (name, lines) in enumerate(entries)
                   if name is None or last[name] == i)


class Daemon:
    """A filtermail daemon other than the milter (policy server, /mxdeliv
    receiver) run by a test: stderr in its own file, started until it logs
    "entering serving loop", stopped (also at interpreter exit) with a check
    for sanitizer reports and an unclean exit. Subclasses set argv()."""

    def __init__(self, name, log_path):
        self.name = name
        self.log_path = pathlib.Path(log_path)
        self.proc = None
        self._logfile = None

    def argv(self):
        raise NotImplementedError

    def start(self):
        self._logfile = open(self.log_path, "ab")
        mark = self.log_path.stat().st_size
        env = dict(os.environ)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen([str(a) for a in self.argv()], stdin=subprocess.DEVNULL,
                                     stdout=self._logfile, stderr=self._logfile, env=env,
                                     start_new_session=True)
        stop_at_exit(self, lambda: self.stop(check=False))

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"{self.name} exited ({self.proc.returncode}):\n"
                                   + self.log()[mark:])
            return "entering serving loop" in self.log()[mark:]
        wait_until(ready, START_TIMEOUT, f"{self.name}'s 'entering serving loop'")
        return self

    def stop(self, check=True, sig=signal.SIGTERM):
        """Sends sig (SIGTERM: a clean exit 0 is expected when check is set),
        kills after STOP_TIMEOUT; with check, fails on a sanitizer report."""
        forget_at_exit(self)
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                if check:
                    raise HarnessError(f"{self.name} did not stop on signal {sig}")
        self._logfile.close()
        if check:
            self.check()
            if sig == signal.SIGTERM and proc.returncode != 0:
                raise HarnessError(f"{self.name} exited {proc.returncode}:\n"
                                   + self.log()[-3000:])

    def check(self):
        """Fails when a sanitizer reported anything, or the process died."""
        log = self.log()
        for marker in SANITIZER_MARKERS:
            if marker in log:
                raise HarnessError(f"sanitizer report from {self.name}:\n"
                                   + log[max(0, log.find(marker) - 2000):][:6000])
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(f"{self.name} died ({self.proc.returncode}):\n" + log[-3000:])

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


class Relay:
    """A private Postfix (+ filtermail-milter) on loopback.

    domains          local domains (Maildir delivery); domains[0] is mail_domain
    milter           True: start the milter and wire it into every smtpd;
                     False: Postfix without any milter (e.g. a baseline benchmark)
    binary           the milter binary (default: milter_binary())
    skip_dkim        run the milter with FILTERMAIL_SKIP_DKIM=1
    env              extra environment for the milter
    ini              extra chatmail.ini [params] keys (dict; they win)
    max_message_size chatmail.ini max_message_size (None: the milter's default)
    main_cf          extra main.cf text appended last (str or callable(relay))
    master_cf        extra master.cf text appended (str or callable(relay))
    smtpd_services   {name: [option, ...]} extra loopback smtpd services, each
                     on its own free port, options like
                     "-o milter_macro_daemon_name=INBOUND"
    policy_service   a check_policy_service endpoint ("unix:/path" or
                     "inet:127.0.0.1:port") put in the smtpd_recipient_restrictions
                     of the services named in policy_on
    policy_default_action, policy_on  its default_action and services
    """

    def __init__(self, *, domains=("example.org",), milter=True, binary=None,
                 skip_dkim=True, env=None, ini=None, max_message_size=None,
                 main_cf=None, master_cf=None, smtpd_services=None,
                 policy_service=None, policy_default_action="DUNNO",
                 policy_on=("submission",)):
        self.domains = [d.lower() for d in domains]
        self.mail_domain = self.domains[0]
        self.use_milter = milter
        self.binary = pathlib.Path(binary) if binary else milter_binary()
        self.skip_dkim = skip_dkim
        self.extra_env = dict(env or {})
        self.extra_ini = dict(ini or {})
        self.max_message_size = max_message_size
        self.extra_main_cf = main_cf
        self.extra_master_cf = master_cf
        self.services = {"smtp": ["-o milter_macro_daemon_name=INBOUND",
                                  "-o smtpd_relay_restrictions=reject_unauth_destination"],
                         "submission": ["-o milter_macro_daemon_name=ORIGINATING",
                                        "-o smtpd_authorized_xclient_hosts=127.0.0.1",
                                        "-o smtpd_relay_restrictions=permit_mynetworks,reject"]}
        for name, opts in (smtpd_services or {}).items():
            self.services[name] = list(opts)
        self.policy_service = policy_service
        self.policy_default_action = policy_default_action
        self.policy_on = tuple(policy_on)

        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-it-"))
        # Postfix's daemons and the milter (nobody) must traverse it.
        self.tmp.chmod(0o755)
        self.etc = self.tmp / "etc"
        self.spool = self.tmp / "spool"
        self.data_dir = self.tmp / "data"
        self.maildirs = self.tmp / "maildirs"
        self.capture = self.tmp / "capture"
        self.mailboxes_dir = self.tmp / "mailboxes" / self.mail_domain
        self.run_dir = self.tmp / "run"
        self.maillog_path = self.tmp / "maillog"
        self.milter_log_path = self.tmp / "milter.log"
        self.ini_path = self.tmp / "chatmail.ini"
        self.milter_socket = self.run_dir / "milter.sock"
        for d in (self.etc, self.spool, self.data_dir, self.maildirs, self.capture,
                  self.mailboxes_dir.parent, self.mailboxes_dir, self.run_dir):
            d.mkdir(exist_ok=True)
            d.chmod(0o755)   # whatever our umask
        # Pitfalls of postfix-integration.md section 8: data_directory must be
        # Postfix's, Maildir roots writable by virtual_uid.
        shutil.chown(self.data_dir, "postfix", "postfix")
        for d in (self.maildirs, self.capture):
            os.chown(d, NOBODY, NOBODY)
        self.ports = {}
        self._delivered = {}   # Maildir file -> Delivered, parsed once
        self.milter_proc = None
        self._milter_log = None
        self._milter_expected_dead = False
        self.postfix_running = False
        self._stopped = False
        stop_at_exit(self, self.stop)   # from here on, interpreter exit cleans up

    # -- lifecycle ---------------------------------------------------------

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        self.stop()
        return False

    def start(self):
        """Writes the configuration, starts the milter (when enabled) and
        Postfix, and waits until every SMTP service greets."""
        if self._stopped:
            raise HarnessError("a stopped Relay cannot start again")
        try:
            if self.use_milter:
                self._write_ini()
                self.start_milter()
            for _ in range(3):
                self.ports = dict(zip(self.services, free_ports(len(self.services))))
                self._write_postfix_config()
                if self._start_postfix():
                    return self
                # A port was taken between choosing and binding: new ports.
                self._stop_postfix()
            raise HarnessError("Postfix did not start\n" + self.diagnostics())
        except BaseException:
            self.stop(check=False)
            raise

    def stop(self, check=True):
        """Stops Postfix and the milter and removes the temporary directory.
        With check, raises HarnessError when the milter had died unexpectedly or
        its stderr holds a sanitizer report (after cleaning up). Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        forget_at_exit(self)
        problems = []
        if check and self.use_milter:
            try:
                self.check_milter()
            except HarnessError as e:
                problems.append(e)
        # Each step runs even when an earlier one failed.
        for step in (self._stop_postfix, self.stop_milter):
            try:
                step()
            except Exception as e:
                problems.append(e)
        if check and self.use_milter and not problems:
            # Exit-time reports (LeakSanitizer) appear only now.
            problems.append(self._sanitizer_problem())
        if os.environ.get("FILTERMAIL_KEEP_TMP"):
            print(f"harness: kept {self.tmp}", flush=True)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        problems = [p for p in problems if p is not None]
        if problems:
            raise problems[0]

    def port(self, service):
        """The TCP port of an smtpd service ("smtp", "submission", ...)."""
        return self.ports[service]

    # -- the milter --------------------------------------------------------

    def _write_ini(self):
        params = {
            "mail_domain": self.mail_domain,
            "mailboxes_dir": str(self.mailboxes_dir),
            "filtermail_milter_socket": f"unix:{self.milter_socket}",
            "filtermail_outgoing_daemon_names": "ORIGINATING",
            "filtermail_user": "nobody",
            "filtermail_socket_group": "postfix",
            "filtermail_log_level": "debug",
            "filtermail_dkim_sign": "no",
            "filtermail_rejected_dir": str(self.tmp / "rejected"),
        }
        if self.max_message_size is not None:
            params["max_message_size"] = str(self.max_message_size)
        params.update(self.extra_ini)
        text = "[params]\n" + "".join(f"{k} = {v}\n" for k, v in params.items())
        self.ini_path.write_text(text)
        self.ini_path.chmod(0o644)

    def start_milter(self):
        """Starts the milter (again) and waits until it serves."""
        if self.milter_proc is not None and self.milter_proc.poll() is None:
            raise HarnessError("the milter is already running")
        if not self.binary.exists():
            raise HarnessError(f"milter binary {self.binary} not built "
                               "(make all build/san/filtermail-milter)")
        env = dict(os.environ)
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        if self.skip_dkim:
            env["FILTERMAIL_SKIP_DKIM"] = "1"
        env.update(self.extra_env)
        if self.milter_socket.exists():
            self.milter_socket.unlink()
        # One log across restarts: a sanitizer report must not be lost.
        self._milter_log = open(self.milter_log_path, "ab")
        mark = len(self.milter_log())
        self.milter_proc = subprocess.Popen(
            [str(self.binary), str(self.ini_path)], stdin=subprocess.DEVNULL,
            stdout=self._milter_log, stderr=self._milter_log, env=env,
            start_new_session=True)
        self._milter_expected_dead = False

        def ready():
            if self.milter_proc.poll() is not None:
                raise HarnessError(f"the milter exited with status "
                                   f"{self.milter_proc.returncode} at start-up:\n"
                                   + self.milter_log()[mark:])
            return (self.milter_socket.exists()
                    and "entering serving loop" in self.milter_log()[mark:])
        wait_until(ready, START_TIMEOUT, "the milter's 'entering serving loop'")

    def stop_milter(self):
        """Stops the milter (SIGTERM, then SIGKILL after STOP_TIMEOUT)."""
        proc = self.milter_proc
        if proc is not None and proc.poll() is None:
            self._milter_expected_dead = True
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        if self._milter_log is not None:
            self._milter_log.close()
            self._milter_log = None

    def kill_milter(self, sig=signal.SIGKILL):
        """Kills the milter with sig, as a crash would, and reaps it."""
        proc = self.milter_proc
        if proc is None or proc.poll() is not None:
            raise HarnessError("the milter is not running")
        self._milter_expected_dead = True
        proc.send_signal(sig)
        proc.wait(STOP_TIMEOUT)

    def milter_log(self):
        """The milter's stderr so far."""
        try:
            return self.milter_log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _sanitizer_problem(self):
        log = self.milter_log()
        for marker in SANITIZER_MARKERS:
            i = log.find(marker)
            if i >= 0:
                start = log.rfind("\n", 0, max(0, i - 2000)) + 1
                return HarnessError("sanitizer report in the milter's stderr:\n"
                                    + log[start:i + 4000])
        return None

    def check_milter(self):
        """Raises HarnessError when the milter died without being asked to, or
        a sanitizer reported anything on its stderr."""
        if not self.use_milter or self.milter_proc is None:
            return
        problem = self._sanitizer_problem()
        if problem is not None:
            raise problem
        rc = self.milter_proc.poll()
        if rc is not None and not self._milter_expected_dead:
            raise HarnessError(f"the milter died (status {rc}):\n" + self._tail(self.milter_log()))

    # -- Postfix -----------------------------------------------------------

    def _write_postfix_config(self):
        t = self.tmp
        milter_lines = ""
        if self.use_milter:
            # As postfix-conf/main.cf, with an absolute socket path (nothing
            # here is chrooted).
            milter_lines = f"""
smtpd_milters = {{ unix:{self.milter_socket}, default_action=tempfail,
    connect_timeout=10s, command_timeout=30s, content_timeout=60s }}
milter_default_action = tempfail
milter_protocol = 6
milter_macro_daemon_name = INBOUND
milter_mail_macros = i {{auth_type}} {{auth_authen}} {{auth_author}} {{mail_addr}}
    {{mail_host}} {{mail_mailer}} {{daemon_name}}
"""
        policy_lines = ""
        if self.policy_service:
            policy_lines = (f"harness_policy_restrictions = check_policy_service "
                            f"{{ {self.policy_service}, "
                            f"default_action={self.policy_default_action}, timeout=10s }}\n")
        main_cf = f"""# Written by tests/integration/harness.py
compatibility_level = 3.6
queue_directory = {self.spool}
data_directory = {self.data_dir}
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.{self.mail_domain}
mydomain = {self.mail_domain}
myorigin = $myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
relay_domains =
local_recipient_maps =
alias_maps =
alias_database =
smtputf8_enable = no
biff = no
smtpd_peername_lookup = no
smtpd_banner = $myhostname ESMTP
# Clients are remote as on a relay: Postfix adds no missing From:/Date: and
# rewrites no header, so the milter sees what the client sent.
local_header_rewrite_clients =
virtual_mailbox_domains = {" ".join(self.domains)}
virtual_mailbox_base = {self.maildirs}
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{NOBODY}
virtual_gid_maps = static:{NOBODY}
virtual_minimum_uid = 100
default_transport = capture
maillog_file = {self.maillog_path}
maillog_file_prefixes = {t}
queue_run_delay = 10s
minimal_backoff_time = 10s
maximal_backoff_time = 30s
{milter_lines}{policy_lines}"""
        main_cf += _text_of(self.extra_main_cf, self) + "\n"
        (self.etc / "main.cf").write_text(keep_last_settings(main_cf))

        services = ""
        for name, opts in self.services.items():
            opts = list(opts)
            if self.policy_service and name in self.policy_on:
                opts.append("-o smtpd_recipient_restrictions=$harness_policy_restrictions")
            services += (f"127.0.0.1:{self.ports[name]} inet n - n - - smtpd\n"
                         f"  -o syslog_name=postfix/{name}\n"
                         + "".join(f"  {o}\n" for o in opts))
        master_cf = f"""# Written by tests/integration/harness.py; nothing is chrooted.
{services}pickup    unix  n - n 60   1 pickup
cleanup   unix  n - n -    0 cleanup
qmgr      unix  n - n 300  1 qmgr
rewrite   unix  - - n -    - trivial-rewrite
bounce    unix  - - n -    0 bounce
defer     unix  - - n -    0 bounce
trace     unix  - - n -    0 bounce
verify    unix  - - n -    1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -    - proxymap
proxywrite unix - - n -    1 proxymap
showq     unix  n - n -    - showq
error     unix  - - n -    - error
retry     unix  - - n -    - error
discard   unix  - - n -    - discard
anvil     unix  - - n -    1 anvil
scache    unix  - - n -    1 scache
postlog   unix-dgram n - n - 1 postlogd
virtual   unix  - n n -    - virtual
capture   unix  - n n -    - virtual
  -o virtual_mailbox_base={self.capture}
"""
        master_cf += _text_of(self.extra_master_cf, self) + "\n"
        (self.etc / "master.cf").write_text(master_cf)

    def postfix_cmd(self, *args, check=True, timeout=60):
        """Runs a Postfix command (postfix, postqueue, postsuper, postcat, ...)
        on this instance: `relay.postfix_cmd("postqueue", "-f")`."""
        cmd = [postfix_tool(args[0]), "-c", str(self.etc), *args[1:]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise HarnessError(f"{' '.join(cmd)} failed ({r.returncode}):\n"
                               f"{r.stdout}{r.stderr}\n" + self.diagnostics())
        return r

    def _greets(self, port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.settimeout(5)
                return s.recv(512).startswith(b"220")
        except OSError:
            return False

    def _start_postfix(self):
        """True when Postfix started and every service greets; False when a
        listener could not bind (then the caller retries with new ports)."""
        # "postfix start" also checks the installation and creates the
        # queue's subdirectories; it returns once master is initialised.
        mark = len(self.maillog())
        r = self.postfix_cmd("postfix", "start", check=False)
        self.postfix_running = True
        if "Address already in use" in self.maillog()[mark:]:
            return False
        if r.returncode != 0:
            raise HarnessError(f"postfix start failed:\n{r.stdout}{r.stderr}\n"
                               + self.diagnostics())
        deadline = time.monotonic() + START_TIMEOUT
        pending = set(self.ports.values())
        while pending:
            pending = {p for p in pending if not self._greets(p)}
            if pending and time.monotonic() >= deadline:
                raise HarnessError(f"Postfix services on ports {sorted(pending)} did not "
                                   "greet\n" + self.diagnostics())
            if pending:
                time.sleep(0.1)
        return True

    def master_pid(self):
        """The Postfix master's pid, or None when it is not running."""
        try:
            return int((self.spool / "pid" / "master.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _stop_postfix(self):
        if not self.postfix_running:
            return
        pid = self.master_pid()
        self.postfix_cmd("postfix", "stop", check=False)
        if pid is not None:
            try:
                wait_until(lambda: not pid_alive(pid), STOP_TIMEOUT, "Postfix to stop")
            except HarnessError:
                # master is its own process group leader (postfix start).
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.postfix_running = False

    # -- mailboxes and flags -----------------------------------------------

    def set_flag(self, addr, flag, present=True):
        """Creates (or removes) <mailboxes_dir>/<addr>/<flag>, e.g. flag
        "enforceE2EEincoming" or "DISABLED". The mailbox directory is created."""
        d = self.mailboxes_dir / addr
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(0o755)   # the milter (nobody) looks inside, whatever our umask
        path = d / flag
        if present:
            path.touch()
        elif path.exists():
            path.unlink()

    def add_user(self, addr, enforce=True, disabled=False):
        """A relay user: the mailbox directory exists; enforceE2EEincoming as
        the relay creates it with the password; DISABLED when asked."""
        self.set_flag(addr, "enforceE2EEincoming", enforce)
        self.set_flag(addr, "DISABLED", disabled)

    def maildir(self, addr):
        """The Maildir a recipient's mail lands in: the local one, or the
        capture of mail that left the relay."""
        domain = addr.rsplit("@", 1)[-1].lower()
        return (self.maildirs if domain in self.domains else self.capture) / "inbox"

    def mailbox(self, addr):
        """Every message delivered to addr so far (by its Delivered-To:),
        oldest first."""
        new = self.maildir(addr) / "new"
        if not new.is_dir():
            return []
        files = sorted(new.iterdir(), key=lambda p: (p.stat().st_mtime, p.name))
        for path in files:
            if path not in self._delivered:
                self._delivered[path] = Delivered(path)
        return [self._delivered[p] for p in files
                if self._delivered[p].delivered_to == addr.lower()]

    def find(self, addr, marker=None):
        """The messages of addr containing marker (bytes or str; None: all)."""
        if isinstance(marker, str):
            marker = marker.encode()
        return [m for m in self.mailbox(addr) if marker is None or marker in m.raw]

    def wait_for_delivery(self, addr, marker=None, timeout=DELIVERY_TIMEOUT):
        """Waits until a message containing marker reaches addr; returns it
        (a Delivered)."""
        try:
            return wait_until(lambda: self.find(addr, marker), timeout,
                              f"delivery to {addr} of {marker!r}")[-1]
        except HarnessError as e:
            raise HarnessError(f"{e}\n" + self.diagnostics()) from None

    # -- queue -------------------------------------------------------------

    def queue(self):
        """The queue as `postqueue -j` lists it: one dict per message."""
        out = self.postfix_cmd("postqueue", "-j").stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def wait_queue_empty(self, timeout=DELIVERY_TIMEOUT):
        """Waits until every accepted message has been delivered (or bounced)."""
        try:
            wait_until(lambda: not self.queue(), timeout, "an empty mail queue", interval=0.1)
        except HarnessError as e:
            raise HarnessError(f"{e}; queue: {self.queue()}\n" + self.diagnostics()) from None

    # -- sending -----------------------------------------------------------

    def connect(self, service, login=None):
        """An open smtplib session to a service, after EHLO (and XCLIENT)."""
        return smtp_connect(self.port(service), login=login)

    def send(self, service, mail_from, rcpts, data, login=None):
        """One transaction on a service; returns a Reply (see smtp_send)."""
        return smtp_transaction(self.port(service), mail_from, list(rcpts), data, login=login)

    def send_outgoing(self, mail_from, rcpts, data, login=None):
        """Submission, authenticated as login (default: mail_from; the null
        sender "" alone means unauthenticated)."""
        return self.send("submission", mail_from, rcpts, data,
                         login=login if login is not None else (mail_from or None))

    def send_incoming(self, mail_from, rcpts, data):
        """The port-25 role, unauthenticated."""
        return self.send("smtp", mail_from, rcpts, data)

    # -- diagnostics -------------------------------------------------------

    def maillog(self):
        """Postfix's log so far."""
        try:
            return self.maillog_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    @staticmethod
    def _tail(text, lines=30):
        return "\n".join(text.splitlines()[-lines:])

    def diagnostics(self, lines=30):
        """The tails of Postfix's and the milter's logs, for failure messages."""
        out = f"--- maillog ({self.maillog_path}), last {lines} lines:\n"
        out += self._tail(self.maillog(), lines)
        if self.use_milter:
            out += f"\n--- milter stderr ({self.milter_log_path}), last {lines} lines:\n"
            out += self._tail(self.milter_log(), lines)
        return out


def postfix_tool(name):
    """The path of a Postfix command (they live in /usr/sbin)."""
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin")
    if path is None:
        raise HarnessError(f"{name} is not installed (tests/deps.sh installs postfix)")
    return path


def pid_alive(pid):
    """True when process pid exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes (its parent reaps it).
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
