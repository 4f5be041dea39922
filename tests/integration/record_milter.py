"""Records milter conversations between the test Postfix and filtermail-milter,
for the session core's replay tests (tests/unit/test_msession.c):

    FILTERMAIL_BUILD=build/san /usr/bin/python3 tests/integration/record_milter.py

A byte-logging proxy sits between Postfix (smtpd_milters points at it) and
the milter. Each Postfix milter connection becomes tests/data/milter/<name>.rec:
records of one direction byte ('>' from Postfix, '<' from the milter), a
4-byte big-endian length and the bytes as read. The relay's users, flags and
settings are the ones the replay test sets up again (see
tests/data/milter/README.md); keep both in step. Not a test: run.py imports
only test_*.py.
"""
import os
import pathlib
import select
import socket
import struct
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from harness import REPO, Relay, read_mail, set_header, smtp_data  # noqa: E402

OUT = REPO / "tests" / "data" / "milter"

ONE = "one@example.org"          # user, enforcing
TWO = "two@example.org"          # user, enforcing
OPEN = "open@example.org"        # user, not enforcing
DISABLED = "disabled@example.org"
BROKEN = "broken@example.org"    # its flag is a symlink: the lookup fails (451)
REMOTE = "alice@remote.example"
MAX_SIZE = 200_000


class Proxy:
    """Accepts Postfix's milter connections on path, relays each to the
    milter, and keeps every chunk read with its direction."""

    def __init__(self, path, target):
        self.path, self.target = str(path), str(target)
        self.convs = []           # one list of (direction, bytes) per connection
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            up.connect(self.target)
            conv = []
            with self.lock:
                self.convs.append(conv)
            threading.Thread(target=self._relay, args=(conn, up, conv), daemon=True).start()

    @staticmethod
    def _relay(a, b, conv):
        peers = {a: (b, ">"), b: (a, "<")}
        while True:
            r, _, _ = select.select([a, b], [], [])
            for s in r:
                data = s.recv(1 << 20)
                other, d = peers[s]
                if not data:
                    a.close()
                    b.close()
                    return
                conv.append((d, data))
                other.sendall(data)

    def taken(self):
        """The conversations so far, and forgets them."""
        with self.lock:
            convs, self.convs = self.convs, []
        return convs


def write(name, convs):
    # Postfix also opens a connection for the harness's readiness probe
    # (negotiation only): the conversation is the longest one.
    convs = sorted((c for c in convs if c), key=lambda c: sum(len(x) for _, x in c))[-1:]
    assert convs, f"{name}: no milter connection"
    with open(OUT / f"{name}.rec", "wb") as f:
        for d, data in convs[0]:
            f.write(d.encode() + struct.pack(">I", len(data)) + data)
    print(f"{name}: {sum(len(x) for _, x in convs[0])} bytes in {len(convs[0])} records")


def encrypted(sender):
    """encrypted.eml (PGP/MIME) sent by sender."""
    return set_header(read_mail("encrypted.eml"), "From", sender)


def plain(sender, rcpt=TWO, body=b"Hello!\r\n"):
    return (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: hi\r\n"
            f"Message-ID: <fixed@example.org>\r\n\r\n").encode() + body


def transaction(s, sender, rcpts, data):
    assert s.docmd("MAIL", f"FROM:<{sender}>")[0] == 250
    for r in rcpts:
        s.docmd("RCPT", f"TO:<{r}>")
    code, _ = s.docmd("DATA")
    assert code == 354, code
    s.send(smtp_data(data) + b".\r\n")
    return s.getreply()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    proxy_box = {}

    def main_cf(r):
        p = r.tmp / "proxy.sock"
        proxy_box["path"] = p
        return (f"smtpd_milters = {{ unix:{p}, default_action=tempfail,"
                " command_timeout=30s, content_timeout=60s }\n")

    with Relay(max_message_size=MAX_SIZE, main_cf=main_cf) as r:
        for u in (ONE, TWO):
            r.add_user(u)
        r.add_user(OPEN, enforce=False)
        r.add_user(DISABLED, disabled=True)
        (r.mailboxes_dir / BROKEN).mkdir()
        (r.mailboxes_dir / BROKEN).chmod(0o755)
        (r.mailboxes_dir / BROKEN / "enforceE2EEincoming").symlink_to("/etc/hostname")
        proxy = Proxy(proxy_box["path"], r.milter_socket)

        def session(name, service, login, steps):
            s = r.connect(service, login=login)
            try:
                for step in steps:
                    print(f"  {name}: {step(s)}")
                s.quit()
            finally:
                s.close()
            time.sleep(0.5)
            write(name, proxy.taken())

        # Several messages on one connection: accept, reject (523),
        # discard (all recipients disabled), a recipient removed.
        session("outgoing-several", "submission", ONE, [
            lambda s: transaction(s, ONE, [TWO], encrypted(ONE)),
            lambda s: transaction(s, ONE, [REMOTE], plain(ONE, REMOTE)),
            lambda s: transaction(s, ONE, [DISABLED], encrypted(ONE)),
            lambda s: transaction(s, ONE, [DISABLED, TWO], encrypted(ONE)),
            lambda s: transaction(s, ONE, [TWO], plain(REMOTE)),  # 500 Invalid FROM
        ])
        # Incoming: accept with the return path made <> (chgfrom), 523,
        # a cleartext message to a non-enforcing user, ABORT (RSET after RCPT).
        session("incoming-abort", "smtp", None, [
            lambda s: transaction(s, "bounce@remote.example", [TWO], encrypted(REMOTE)),
            lambda s: transaction(s, REMOTE, [TWO], plain(REMOTE)),
            lambda s: (s.docmd("MAIL", f"FROM:<{REMOTE}>"), s.docmd("RCPT", f"TO:<{TWO}>"),
                       s.docmd("RSET")),
            lambda s: transaction(s, REMOTE, [OPEN], plain(REMOTE, OPEN)),
        ])
        # Our own failure: a mailbox flag that cannot be read (451 4.3.0),
        # then a message that passes on the same connection.
        session("tempfail", "smtp", None, [
            lambda s: transaction(s, REMOTE, [BROKEN], encrypted(REMOTE)),
            lambda s: transaction(s, REMOTE, [TWO], encrypted(REMOTE)),
        ])
        # Large bodies: one that passes (several body packets), one over
        # max_message_size (552).
        filler = b"".join(b"padding line %06d of a large epilogue\r\n" % i for i in range(3000))
        session("large-bodies", "submission", ONE, [
            lambda s: transaction(s, ONE, [TWO], encrypted(ONE) + filler),
            lambda s: transaction(s, ONE, [TWO], encrypted(ONE) + filler * 2),
        ])


if __name__ == "__main__":
    main()
