"""Rate limiting through a real Postfix (filtermail-policyd(8)), and the
policy server on its own: bad clients, two nodes sharing a Redis.

Postfix is wired as postfix-conf/main.cf says: the `filtermail_rate_limit`
line is taken from that file verbatim (socket unix:filtermail/policy.sock
under queue_directory, timeout, default_action) and evaluated in the
submission service's smtpd_sender_restrictions. The shipped
mua_sender_restrictions around it (reject_sender_login_mismatch,
permit_sasl_authenticated, reject) cannot run here: the harness stands in
for SASL with XCLIENT LOGIN, and without SASL support Postfix ignores those
two restrictions, so `reject` would refuse everything.

Rate: 20 messages a minute (T = 3 s), bursts of 10, so every burst fits
well within one interval and "after the interval" is a short wait.
"""
import os
import pathlib
import signal
import socket
import subprocess
import tempfile
import shutil
import time

from harness import (REPO, Daemon, HarnessError, Relay, free_ports, read_mail,
                     set_header, smtp_connect, smtp_send, wait_until)

PER_MINUTE = 20
INTERVAL = 60 / PER_MINUTE          # T, seconds
BURST = 10
EXEMPT = "bot@example.org @partner.example"
TOO_MUCH = "4.7.1: Too much mail from <{}>, rate-limited until "

relay = None
policyd = None
stalled = None   # a client that began a request and never finished it


def binary():
    build = os.environ.get("FILTERMAIL_BUILD", "build/san")
    path = (REPO / build / "filtermail-policyd").resolve()
    if not path.exists():
        raise HarnessError(f"{path} is not built (make all build/san/filtermail-policyd)")
    return path


class Policyd(Daemon):
    """filtermail-policyd with its own chatmail.ini, stderr and state file."""

    def __init__(self, tmp, name, socket_spec, **params):
        super().__init__("filtermail-policyd", pathlib.Path(tmp) / f"{name}.log")
        self.tmp = pathlib.Path(tmp)
        self.socket_spec = socket_spec
        self.ini = self.tmp / f"{name}.ini"
        self.params = {
            "mail_domain": "example.org",
            "filtermail_policy_socket": socket_spec,
            "filtermail_user": "nobody",
            "filtermail_socket_group": "postfix",
            "filtermail_log_level": "debug",
            "filtermail_ratelimit_state": str(self.tmp / f"{name}.state"),
            "max_user_send_per_minute": str(PER_MINUTE),
            "max_user_send_burst_size": str(BURST),
        }
        self.params.update({k: str(v) for k, v in params.items()})

    @property
    def path(self):
        return self.socket_spec.split(":", 1)[1]

    def argv(self):
        return [binary(), self.ini]

    def start(self):
        self.ini.write_text("[params]\n" + "".join(f"{k} = {v}\n"
                                                   for k, v in self.params.items()))
        self.ini.chmod(0o644)
        return super().start()

    def stop(self, sig=signal.SIGTERM):
        """Stops it; fails on a non-zero exit (after SIGTERM) or a sanitizer report."""
        super().stop(check=True, sig=sig)

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.path)
        return s


def ask(s, sender, sasl="", instance="", **extra):
    """One request as Postfix sends it at RCPT; returns the action text."""
    attrs = {"request": "smtpd_access_policy", "protocol_state": "RCPT",
             "protocol_name": "ESMTP", "client_address": "127.0.0.1", "sender": sender,
             "recipient": "someone@example.net", "instance": instance,
             "sasl_username": sasl}
    attrs.update(extra)
    s.sendall("".join(f"{k}={v}\n" for k, v in attrs.items()).encode() + b"\n")
    return read_reply(s)


_pending = {}   # socket -> bytes read past the last reply


def read_reply(s):
    """The next reply on s (replies to pipelined requests may come in one read)."""
    data = _pending.pop(s, b"")
    while b"\n\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            raise HarnessError(f"policy server closed the connection after {data!r}")
        data += chunk
    reply, rest = data.split(b"\n\n", 1)
    if rest:
        _pending[s] = rest
    assert reply.startswith(b"action="), data
    return reply[len(b"action="):].decode()


def closed_by_peer(s, timeout=5):
    s.settimeout(timeout)
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def rate_limit_line():
    """The check_policy_service line of postfix-conf/main.cf, verbatim."""
    for line in (REPO / "postfix-conf" / "main.cf").read_text().splitlines():
        if line.startswith("filtermail_rate_limit ="):
            return line
    raise AssertionError("postfix-conf/main.cf has no filtermail_rate_limit line")


def message(sender):
    return set_header(read_mail("encrypted.eml"), "From", sender)


def setup_module():
    global relay, policyd, stalled
    relay = Relay(
        main_cf=rate_limit_line() + "\n",
        smtpd_services={"submission": [
            "-o milter_macro_daemon_name=ORIGINATING",
            "-o smtpd_authorized_xclient_hosts=127.0.0.1",
            "-o smtpd_relay_restrictions=permit_mynetworks,reject",
            "-o smtpd_sender_restrictions=$filtermail_rate_limit"]})
    # unix:filtermail/policy.sock is relative to queue_directory.
    sockdir = relay.spool / "filtermail"
    sockdir.mkdir()
    # The server runs as nobody and keeps its state file here.
    statedir = relay.tmp / "policyd"
    statedir.mkdir()
    shutil.chown(statedir, "nobody")
    relay.start()
    policyd = Policyd(statedir, "policyd", f"unix:{sockdir}/policy.sock",
                      filtermail_ratelimit_exempt=EXEMPT).start()
    st = os.stat(policyd.path)
    assert oct(st.st_mode & 0o777) == "0o660", oct(st.st_mode)
    # Begun now, checked by the last test: never finished, so it is closed.
    stalled = policyd.connect()
    stalled.sendall(b"request=smtpd_access_policy\nsender=stalled@example.org\n")


def teardown_module():
    try:
        if stalled is not None:
            stalled.close()
        if policyd is not None:
            policyd.stop()
    finally:
        relay.stop()


def session(login):
    return smtp_connect(relay.port("submission"), login=login)


def send_many(s, sender, n, rcpts=("two@example.org",)):
    """n messages on one session; returns their replies."""
    return [smtp_send(s, sender, list(rcpts), message(sender)) for _ in range(n)]


# -- through Postfix -----------------------------------------------------------

def test_burst_then_450_then_one_per_interval():
    a, b = "alice@example.org", "bob@example.org"
    s = session(a)
    t0 = time.monotonic()
    replies = send_many(s, a, BURST)
    assert all(r.code == 250 for r in replies), replies
    r = smtp_send(s, a, ["two@example.org"], message(a))
    elapsed = time.monotonic() - t0
    assert elapsed < INTERVAL, (f"{BURST + 1} messages took {elapsed:.1f}s, more than the "
                                f"{INTERVAL}s interval: too slow to test the burst")
    # The 11th: refused at RCPT, with upstream's text, temporarily.
    assert r.code == 450, r
    assert r.stage == "RCPT two@example.org", r
    assert r.message.startswith(f"4.7.1 <{a}>: Sender address rejected: "
                                + TOO_MUCH.format(a)), r
    s.rset()
    # The session goes on; another sender has its own budget.
    sb = session(b)
    assert smtp_send(sb, b, ["two@example.org"], message(b)).code == 250
    sb.quit()
    # After one interval exactly one more.
    time.sleep(max(0, t0 + INTERVAL + 0.3 - time.monotonic()))
    assert smtp_send(s, a, ["two@example.org"], message(a)).code == 250
    r = smtp_send(s, a, ["two@example.org"], message(a))
    assert r.code == 450 and TOO_MUCH.format(a) in r.message, r
    s.quit()
    assert f"{a} rate-limited until" in policyd.log()


def test_fifty_recipients_cost_one():
    c = "carol@example.org"
    rcpts = [f"r{i}@example.org" for i in range(50)]
    s = session(c)
    t0 = time.monotonic()
    r = smtp_send(s, c, rcpts, message(c))
    assert r.code == 250, r
    replies = send_many(s, c, BURST - 1)
    assert all(x.code == 250 for x in replies), replies
    r = smtp_send(s, c, ["two@example.org"], message(c))
    assert time.monotonic() - t0 < INTERVAL, "too slow to test the burst"
    assert r.code == 450 and TOO_MUCH.format(c) in r.message, r
    s.quit()


def test_refused_message_stays_refused_for_every_recipient():
    d = "dave@example.org"
    s = session(d)
    assert all(x.code == 250 for x in send_many(s, d, BURST))
    code, msg = s.docmd("MAIL", f"FROM:<{d}>")
    assert code == 250, (code, msg)
    for i in range(5):
        code, msg = s.docmd("RCPT", f"TO:<x{i}@example.org>")
        assert code == 450 and b"Too much mail" in msg, (code, msg)
    s.rset()
    s.quit()


def test_login_is_the_key():
    e = "erin@example.org"
    s = session(e)
    assert all(x.code == 250 for x in send_many(s, e, BURST))
    # Another envelope sender on the same login is the same budget.
    code, _ = s.docmd("MAIL", "FROM:<Someone-Else@example.org>")
    code, msg = s.docmd("RCPT", "TO:<two@example.org>")
    assert code == 450 and f"Too much mail from <{e}>".encode() in msg, (code, msg)
    s.rset()
    s.quit()


def test_bounces_and_exempt_senders_never_limited():
    f = "frank@example.org"
    s = session(f)
    for i in range(BURST + 3):
        code, _ = s.docmd("MAIL", "FROM:<>")
        assert code == 250
        code, msg = s.docmd("RCPT", "TO:<two@example.org>")
        assert code == 250, (i, code, msg)
        s.rset()
    s.quit()
    for login in ("bot@example.org", "news@partner.example"):
        s = session(login)
        for i in range(BURST + 3):
            s.docmd("MAIL", f"FROM:<{login}>")
            code, msg = s.docmd("RCPT", "TO:<two@example.org>")
            assert code == 250, (login, i, code, msg)
            s.rset()
        s.quit()


def test_bad_clients_do_not_harm_others():
    good = policyd.connect()
    assert ask(good, "grace@example.org", instance="g1") == "DUNNO"
    bad = []
    for junk in (b"GET / HTTP/1.0\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
                 b"request=smtpd_access_policy\nsender=" + b"x" * 10000 + b"\n\n",
                 b"".join(b"a%d=1\n" % i for i in range(200)) + b"\n",
                 b"request=junk\n\n"):
        s = policyd.connect()
        s.sendall(junk)
        bad.append(s)
    for s in bad:
        assert closed_by_peer(s), "a malformed request did not close its connection"
        s.close()
    # A client that stops in the middle of a request blocks nobody.
    half = policyd.connect()
    half.sendall(b"request=smtpd_access_policy\nsender=half@exa")
    # Several requests in one write, and one cut into single bytes.
    two = ("request=smtpd_access_policy\nsender=h@example.org\ninstance=1\n\n"
           "request=smtpd_access_policy\nsender=h@example.org\ninstance=2\n\n").encode()
    good.sendall(two)
    assert read_reply(good) == "DUNNO"
    assert read_reply(good) == "DUNNO"
    for byte in two[:len(two) // 2]:
        good.send(bytes([byte]))
    assert read_reply(good) == "DUNNO"
    half.close()
    good.close()
    # Postfix's own connections are unharmed.
    h = "heidi@example.org"
    assert smtp_send(session(h), h, ["two@example.org"], message(h)).code == 250
    log = policyd.log()
    assert "malformed policy request" in log and "not a policy request" in log


def test_stalled_request_is_closed():
    # Begun in setup_module, more than the request timeout (10 s) ago.
    assert closed_by_peer(stalled, timeout=15), "a request never finished was not closed"
    assert "request not finished within" in policyd.log()




def test_restart_keeps_state_and_down_means_4xx():
    i = "ivan@example.org"
    s = session(i)
    assert all(x.code == 250 for x in send_many(s, i, BURST))
    # Stopped: Postfix answers default_action, 451, never accepts unlimited.
    policyd.stop()
    assert "shutting down" in policyd.log()
    state = (policyd.tmp / "policyd.state").read_text()
    assert state.startswith("filtermail-ratelimit-state 1\n") and f" {i}\n" in state, state
    r = smtp_send(s, i, ["two@example.org"], message(i))
    assert r.code == 451, r
    assert "4.3.5" in r.message and "Rate limit service unavailable" in r.message, r
    s.rset()
    # Started again: the sender's state came back from the snapshot, so what
    # passes now is what the time since the burst gave back (one per 3 s),
    # not a new burst of 10.
    policyd.start()
    assert "restored " in policyd.log()
    passed = 0
    for _ in range(BURST):
        s.docmd("MAIL", f"FROM:<{i}>")
        code, msg = s.docmd("RCPT", "TO:<two@example.org>")
        assert code in (250, 450), (code, msg)
        passed += code == 250
        s.rset()
    s.quit()
    assert passed <= BURST // 2, f"{passed} messages passed right after the restart"


# -- two nodes, one Redis --------------------------------------------------------

def test_redis_shared_budget_and_fallback():
    if shutil.which("redis-server") is None:
        raise AssertionError("redis-server is not installed (tests/deps.sh installs it)")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-redis-it-"))
    tmp.chmod(0o777)
    port = free_ports(1)[0]
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(tmp)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    nodes = []
    try:
        def redis_up():
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(redis_up, 10, "redis-server")
        url = f"redis://127.0.0.1:{port}/0"
        for name, fallback in (("node-a", "local"), ("node-b", "defer")):
            nodes.append(Policyd(tmp, name, f"unix:{tmp}/{name}.sock",
                                 filtermail_ratelimit_redis=url,
                                 filtermail_ratelimit_redis_fallback=fallback,
                                 filtermail_ratelimit_state="").start())
        for n in nodes:
            wait_until(lambda: "ready for rate limiting" in n.log()
                       or "is reachable again" in n.log(), 10, f"{n.name} on Redis")
        a, b = (n.connect() for n in nodes)
        user = "zoe@example.org"
        # One budget across both nodes; every RCPT of a message costs nothing more.
        for k in range(BURST):
            node = a if k % 2 else b
            for rcpt in range(3):
                assert ask(node, user, user, f"m{k}", recipient=f"r{rcpt}@x") == "DUNNO"
        for node in (a, b):
            action = ask(node, user, user, "m-over")
            assert action.startswith("450 " + TOO_MUCH.format(user)), action
        assert ask(a, "", user, "bounce") == "DUNNO"
        # Redis gone: node-a limits on its own (a fresh local budget), node-b defers.
        redis.terminate()
        redis.wait(10)
        assert ask(a, user, user, "m-local") == "DUNNO"
        action = ask(b, user, user, "m-defer")
        assert action.startswith("451 4.3.0"), action
        wait_until(lambda: "limiting on this node alone" in nodes[0].log(), 5,
                   "node-a's log line about local limiting")
        assert "deferring mail until it is back" in nodes[1].log()
        a.close()
        b.close()
    finally:
        for n in nodes:
            n.stop()
        if redis.poll() is None:
            redis.kill()
            redis.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def test_sighup_reloads_limits_and_keeps_state():
    """SIGHUP: new limits and exemptions apply at once, a sender's spent burst
    is carried over, open connections stay usable; a file that does not load
    keeps the running limits."""
    with tempfile.TemporaryDirectory(prefix="filtermail-policyd-reload-") as tmp:
        os.chmod(tmp, 0o755)
        p = Policyd(tmp, "reload", f"unix:{tmp}/reload.sock",
                    max_user_send_per_minute=1, max_user_send_burst_size=2)
        p.start()
        try:
            s = p.connect()
            answers = [ask(s, "a@example.org", instance=f"i{i}") for i in range(3)]
            assert answers[:2] == ["DUNNO", "DUNNO"] and answers[2].startswith("450"), answers

            def reload(marker):
                before = p.log().count(marker)
                p.proc.send_signal(signal.SIGHUP)
                wait_until(lambda: p.log().count(marker) > before, 10, f"{marker!r} logged")

            # A larger burst: a's two spent messages still count against it.
            p.params["max_user_send_burst_size"] = "4"
            p.params["filtermail_ratelimit_exempt"] = "bot@example.org"
            p.ini.write_text("[params]\n" + "".join(f"{k} = {v}\n" for k, v in p.params.items()))
            reload("configuration reloaded from")
            answers = [ask(s, "a@example.org", instance=f"j{i}") for i in range(3)]
            assert answers[:2] == ["DUNNO", "DUNNO"] and answers[2].startswith("450"), \
                f"after reload (burst 4, 2 spent), same connection: {answers}"
            assert all(ask(s, "bot@example.org", instance=f"b{i}") == "DUNNO" for i in range(6))

            # A broken file: the running limits stay.
            p.ini.write_text("[params]\nmax_user_send_burst_size = many\n")
            reload("Failed to reload config:")
            answers = [ask(s, "c@example.org", instance=f"k{i}") for i in range(5)]
            assert answers[:4] == ["DUNNO"] * 4 and answers[4].startswith("450"), answers

            # Any number of reloads takes effect: the server once stopped
            # reloading after 64 (a config tool reloading hourly: three days).
            p.params["max_user_send_burst_size"] = "4"
            p.ini.write_text("[params]\n" + "".join(f"{k} = {v}\n" for k, v in p.params.items()))
            for _ in range(70):
                reload("configuration reloaded from")
            p.params["max_user_send_burst_size"] = "6"
            p.ini.write_text("[params]\n" + "".join(f"{k} = {v}\n" for k, v in p.params.items()))
            reload("bursts of 6")
            answers = [ask(s, "d@example.org", instance=f"l{i}") for i in range(7)]
            assert answers[:6] == ["DUNNO"] * 6 and answers[6].startswith("450"), answers
            assert "restart instead" not in p.log()
            s.close()
        finally:
            p.stop()
