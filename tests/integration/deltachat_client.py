"""Delta Chat's core as a test client: the real program, driven over its
JSON-RPC (one JSON object a line on stdin/stdout).

    from deltachat_client import DeltaChat

    with DeltaChat(tmpdir) as dc:                 # one rpc server, many accounts
        alice = dc.account("alice@a.test", "password", "127.0.0.41")
        bob = dc.account("bob@b.test", "password", "127.0.0.42")
        qr = alice.call("get_chat_securejoin_qr_code", None)
        chat = bob.call("secure_join", qr)
        bob.wait_event("SecurejoinJoinerProgress", lambda e: e["progress"] == 1000)

The binary is @deltachat/stdio-rpc-server-linux-x64 from npm, pinned to
DC_VERSION; tests/deps.sh installs it into /var/cache/filtermail-tests/ (or
$FILTERMAIL_DELTACHAT_CACHE). $FILTERMAIL_DELTACHAT_RPC_SERVER names another
binary. Accounts use IMAP over TLS (993) and SMTP submission over TLS (465)
of the given server address, accepting the test CA's certificates (core
trusts only its built-in roots).

Events are collected by a thread that keeps one get_next_event_batch request
open; wait_event() looks through what arrived for an account. Every wait is
bounded.
"""
import json
import os
import pathlib
import subprocess
import threading
import time

from harness import HarnessError

DC_VERSION = "2.62.0"
CALL_TIMEOUT = 60


def rpc_server_binary():
    path = os.environ.get("FILTERMAIL_DELTACHAT_RPC_SERVER")
    if not path:
        cache = os.environ.get("FILTERMAIL_DELTACHAT_CACHE",
                               f"/var/cache/filtermail-tests/deltachat-{DC_VERSION}")
        path = (f"{cache}/node_modules/@deltachat/stdio-rpc-server-linux-x64/"
                "deltachat-rpc-server")
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is missing: tests/deps.sh installs Delta Chat's "
                           f"core {DC_VERSION} from npm")
    return path


class RpcError(HarnessError):
    pass


class DeltaChat:
    """One deltachat-rpc-server process (its data under directory)."""

    def __init__(self, directory):
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = None
        self._lock = threading.Condition()
        self._next_id = 0
        self._replies = {}
        self.events = []            # (account id, event dict), in arrival order
        self._stderr = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def start(self):
        self._stderr = open(self.dir / "rpc-server.log", "ab")
        env = dict(os.environ, DC_ACCOUNTS_PATH=str(self.dir / "accounts"), RUST_LOG="warn")
        self.proc = subprocess.Popen([rpc_server_binary()], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                                     start_new_session=True)
        threading.Thread(target=self._read, daemon=True).start()
        version = self.call("get_system_info")["deltachat_core_version"]
        if version != f"v{DC_VERSION}":
            raise HarnessError(f"Delta Chat core {version}, expected v{DC_VERSION}")
        threading.Thread(target=self._pump_events, daemon=True).start()
        return self

    def stop(self):
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        try:
            self._send("stop_io_for_all_accounts", [])
        except Exception:
            pass
        proc.stdin.close()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._stderr.close()

    # -- the wire -------------------------------------------------------------

    def _read(self):
        for line in self.proc.stdout:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self._replies[msg.get("id")] = msg
                self._lock.notify_all()
        with self._lock:
            self._replies[None] = {"error": {"message": "rpc server closed its output"}}
            self._lock.notify_all()

    def _send(self, method, params):
        with self._lock:
            self._next_id += 1
            rid = self._next_id
        line = json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        proc = self.proc
        if proc is None:
            raise HarnessError("the rpc server is stopped")
        with self._lock:
            proc.stdin.write(line.encode() + b"\n")
            proc.stdin.flush()
        return rid

    def call(self, method, *params, timeout=CALL_TIMEOUT):
        rid = self._send(method, list(params))
        deadline = time.monotonic() + timeout
        with self._lock:
            while rid not in self._replies:
                if None in self._replies:
                    raise RpcError(f"{method}: the rpc server went away")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(f"{method}: no answer in {timeout}s")
                self._lock.wait(left)
            reply = self._replies.pop(rid)
        if "error" in reply:
            raise RpcError(f"{method}{tuple(params)}: {reply['error'].get('message')}")
        return reply.get("result")

    def _pump_events(self):
        while self.proc is not None:
            try:
                batch = self.call("get_next_event_batch", timeout=3600)
            except HarnessError:
                return
            with self._lock:
                for e in batch or []:
                    self.events.append((e.get("contextId"), e.get("event", {})))
                self._lock.notify_all()

    # -- accounts -------------------------------------------------------------------

    def account(self, addr, password, server):
        return Account(self, addr, password, server).configure()


class Account:
    def __init__(self, dc, addr, password, server):
        self.dc = dc
        self.addr = addr
        self.password = password
        self.server = server
        self.id = None
        self._seen = 0              # events before this index were looked at

    def call(self, method, *params, **kw):
        return self.dc.call(method, self.id, *params, **kw)

    def configure(self):
        self.id = self.dc.call("add_account")
        self.call("set_config", "displayname", self.addr.split("@")[0])
        self.call("add_or_update_transport", {
            "addr": self.addr, "password": self.password,
            "imapServer": self.server, "imapPort": 993, "imapSecurity": "ssl",
            "smtpServer": self.server, "smtpPort": 465, "smtpSecurity": "ssl",
            "certificateChecks": "acceptInvalidCertificates",
        }, timeout=120)
        if not self.call("is_configured"):
            raise HarnessError(f"{self.addr}: not configured")
        self.call("start_io")
        return self

    def events(self):
        """This account's events so far."""
        with self.dc._lock:
            return [e for acc, e in self.dc.events if acc == self.id]

    def wait_event(self, kind, pred=lambda e: True, timeout=60, since=None):
        """The first event of this account of `kind` for which pred holds,
        arrived after index `since` (default: anywhere)."""
        deadline = time.monotonic() + timeout
        start = 0 if since is None else since
        with self.dc._lock:
            while True:
                for acc, e in self.dc.events[start:]:
                    if acc == self.id and e.get("kind") == kind and pred(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    errors = [e for acc, e in self.dc.events
                              if acc == self.id and e.get("kind") in ("Error", "Warning",
                                                                      "ErrorSelfNotInGroup")]
                    raise HarnessError(f"{self.addr}: no {kind} event in {timeout}s; "
                                       f"errors and warnings: {errors[-8:]}")
                self.dc._lock.wait(min(left, 1))

    def mark(self):
        """An index for wait_event(since=...): only events after now."""
        with self.dc._lock:
            return len(self.dc.events)

    def wait_message(self, text=None, since=None, timeout=60, pred=None):
        """The first incoming message (its object) whose text contains text."""
        deadline = time.monotonic() + timeout
        seen = set()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f"{self.addr}: no message {text!r} in {timeout}s")
            ev = self.wait_event("IncomingMsg", lambda e: e["msgId"] not in seen,
                                 timeout=left, since=since)
            seen.add(ev["msgId"])
            msg = self.call("get_message", ev["msgId"])
            if (text is None or text in (msg.get("text") or "")) and (pred is None or pred(msg)):
                return msg
