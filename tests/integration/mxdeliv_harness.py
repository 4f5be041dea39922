"""filtermail-mxdeliv and an nginx with TLS in front of it, for integration
tests (and, later, the two-relay suite and the benchmarks).

    from harness import Relay
    from mxdeliv_harness import (Mxdeliv, Nginx, TestCA, client_context, post,
                                 reinject_service)

    relay = Relay(smtpd_services={"mxdeliv": reinject_service()}).start()
    mx = Mxdeliv(relay).start()                  # on a free loopback port
    ca = TestCA(tmpdir)                          # tests/support/testca.py
    cert = ca.issue("mx.example.org", sans=["127.0.0.1"])
    web = Nginx(tmpdir / "nginx", cert, mx.port).start()   # TLS, free port
    status, body = post(web.port, data, "alice@remote.test", ["two@example.org"],
                        tls=client_context(ca))

Mxdeliv reads its own chatmail.ini, written from the Relay's (mail_domain,
max_message_size) and pointed at the Relay's reinjection service; it drops to
`nobody` like the milter. Nginx is the real nginx with the shipped location
block (postfix-conf/nginx-mxdeliv.conf, only its port and size replaced),
running in a private prefix with its own logs and temporary directories.
Both are stopped by stop(), at interpreter exit, or by the context manager,
and stop() fails when a sanitizer reported anything or the process died.
"""
import http.client
import os
import pathlib
import re
import signal
import socket
import ssl
import subprocess
import sys
import time

from harness import (REPO, Daemon, HarnessError, forget_at_exit, free_ports, stop_at_exit,
                     wait_until)

sys.path.insert(0, str(REPO / "tests" / "support"))
from testca import TestCA  # noqa: E402  (re-exported for the suites)

__all__ = ["Mxdeliv", "Nginx", "TestCA", "client_context", "connection", "mxdeliv_binary",
           "parse_responses", "post", "raw_exchange", "reinject_service", "request"]

SNIPPET_MASTER = REPO / "postfix-conf" / "master.cf.mxdeliv.snippet"
SNIPPET_NGINX = REPO / "postfix-conf" / "nginx-mxdeliv.conf"
START_TIMEOUT = 20
STOP_TIMEOUT = 20
HTTP_TIMEOUT = 30

def mxdeliv_binary(default_build="build/san"):
    build = os.environ.get("FILTERMAIL_BUILD", default_build)
    path = (REPO / build / "filtermail-mxdeliv").resolve()
    if not path.exists():
        raise HarnessError(f"{path} is not built (make all build/san/filtermail-mxdeliv)")
    return path


def reinject_service():
    """The -o options of the shipped reinjection service
    (postfix-conf/master.cf.mxdeliv.snippet), for Relay(smtpd_services=...)."""
    opts = [line.strip() for line in SNIPPET_MASTER.read_text().splitlines()
            if line.strip().startswith("-o ")]
    if not opts:
        raise HarnessError(f"no -o lines in {SNIPPET_MASTER}")
    return opts


class Mxdeliv(Daemon):
    """filtermail-mxdeliv serving one Relay's reinjection service."""

    def __init__(self, relay, name="mxdeliv", service="mxdeliv", args=(), **params):
        super().__init__("filtermail-mxdeliv", relay.tmp / f"{name}.log")
        self.relay = relay
        self.args = [str(a) for a in args]
        self.port = free_ports(1)[0]
        self.ini = relay.tmp / f"{name}.ini"
        self.params = {
            "mail_domain": relay.mail_domain,
            "filtermail_host": "127.0.0.1",
            "filtermail_http_port_incoming": str(self.port),
            "postfix_host": "127.0.0.1",
            "postfix_reinject_port_incoming": str(relay.port(service)),
            "filtermail_user": "nobody",
            "filtermail_socket_group": "postfix",
            "filtermail_log_level": "debug",
        }
        if relay.max_message_size is not None:
            self.params["max_message_size"] = str(relay.max_message_size)
        self.params.update({k: str(v) for k, v in params.items()})

    def argv(self):
        return [mxdeliv_binary(), *self.args, self.ini]

    def start(self):
        self.ini.write_text("[params]\n" + "".join(f"{k} = {v}\n"
                                                   for k, v in self.params.items()))
        self.ini.chmod(0o644)
        return super().start()


def client_context(ca):
    """A client SSLContext that trusts only the test CA (tests/support/testca.py)."""
    return ssl.create_default_context(cafile=str(ca.cert))


def nginx_binary():
    for path in ("/usr/sbin/nginx", "/usr/bin/nginx"):
        if os.path.exists(path):
            return path
    raise HarnessError("nginx is not installed (tests/deps.sh installs nginx-light)")


class Nginx:
    """nginx terminating TLS on a free loopback port and passing /mxdeliv to
    filtermail-mxdeliv, with the shipped location block."""

    def __init__(self, directory, cert, upstream_port, max_body=None, host="127.0.0.1",
                 port=None, server_name="_"):
        """cert: (certificate, key) paths, e.g. from TestCA.issue(); host and
        port: where to listen (default: a free port on 127.0.0.1)."""
        self.dir = pathlib.Path(directory)
        self.cert, self.key = cert
        self.upstream_port = upstream_port
        self.max_body = max_body
        self.host = host
        self.port = port if port is not None else free_ports(1)[0]
        self.server_name = server_name
        self.conf = self.dir / "nginx.conf"
        self.error_log = self.dir / "error.log"
        self.proc = None
        self._out = None

    def _location(self):
        text = SNIPPET_NGINX.read_text()
        if "127.0.0.1:10082" not in text:
            raise HarnessError(f"{SNIPPET_NGINX} no longer proxies to 127.0.0.1:10082")
        text = text.replace("127.0.0.1:10082", f"127.0.0.1:{self.upstream_port}")
        if self.max_body is not None:
            text, n = re.subn(r"client_max_body_size \d+;",
                              f"client_max_body_size {self.max_body};", text)
            if n != 1:
                raise HarnessError(f"{SNIPPET_NGINX}: no client_max_body_size to replace")
        return text

    def start(self):
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        temp = self.dir / "temp"
        temp.mkdir(exist_ok=True)
        os.chown(temp, 65534, 65534)   # written by the workers (nobody)
        location = "\n".join("        " + line for line in self._location().splitlines())
        self.conf.write_text(f"""# Written by tests/integration/mxdeliv_harness.py
daemon off;
master_process on;
worker_processes 1;
user nobody nogroup;
pid {self.dir}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 256; }}
http {{
    access_log {self.dir}/access.log;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen {self.host}:{self.port} ssl;
        server_name {self.server_name};
        ssl_certificate {self.cert};
        ssl_certificate_key {self.key};
        ssl_protocols TLSv1.2 TLSv1.3;
{location}
        location / {{ return 404; }}
    }}
}}
""")
        self._out = open(self.dir / "nginx.out", "ab")
        self.proc = subprocess.Popen([nginx_binary(), "-c", str(self.conf), "-p", str(self.dir),
                                      "-e", str(self.error_log)],
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=self._out, start_new_session=True)
        stop_at_exit(self, lambda: self.stop(check=False))

        def ready():
            if self.proc.poll() is not None:
                raise HarnessError(f"nginx exited ({self.proc.returncode}):\n"
                                   + self.logs())
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(ready, START_TIMEOUT, "nginx to listen")
        return self

    def stop(self, check=True):
        forget_at_exit(self)
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.send_signal(signal.SIGQUIT)   # graceful: finishes open requests
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._out.close()
        if check and proc.returncode not in (0, -signal.SIGQUIT):
            raise HarnessError(f"nginx exited {proc.returncode}:\n" + self.logs())

    def logs(self):
        out = ""
        for name in ("nginx.out", "error.log"):
            try:
                out += f"--- {name}:\n" + (self.dir / name).read_text(errors="replace")[-3000:]
            except FileNotFoundError:
                pass
        return out


# ---------------------------------------------------------------------------
# Clients.

def connection(port, tls=None, timeout=HTTP_TIMEOUT):
    """An http.client connection to 127.0.0.1:port (HTTPS with an SSLContext)."""
    if tls is not None:
        return http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    return http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)


def request(conn, data, mail_from=None, rcpts=(), path="/mxdeliv", method="POST",
            headers=None):
    """One request on an open connection; returns (status, body text)."""
    hdrs = []
    if mail_from is not None:
        hdrs.append(("X-Mail-From", mail_from))
    hdrs += [("X-Mail-To", r) for r in rcpts]
    hdrs += list((headers or {}).items())
    conn.putrequest(method, path, skip_accept_encoding=True)
    for k, v in hdrs:
        conn.putheader(k, v)
    if data is not None:
        conn.putheader("Content-Length", str(len(data)))
    conn.endheaders(data)
    resp = conn.getresponse()
    return resp.status, resp.read().decode("utf-8", "replace")


def post(port, data, mail_from=None, rcpts=(), tls=None, **kw):
    """One POST on a new connection; returns (status, body text)."""
    conn = connection(port, tls)
    try:
        return request(conn, data, mail_from, rcpts, **kw)
    finally:
        conn.close()


def raw_exchange(port, chunks, pause=0.0, timeout=HTTP_TIMEOUT):
    """Sends raw bytes (a list of chunks, with a pause between them) and reads
    until the server closes; returns (everything read, the OSError that
    stopped sending or None). For requests http.client cannot make."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    err = None
    try:
        for c in chunks:
            try:
                s.sendall(c)
            except OSError as e:
                err = e
                break
            if pause:
                time.sleep(pause)
        out = b""
        while True:
            try:
                d = s.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            out += d
        return out, err
    finally:
        s.close()


def parse_responses(raw):
    """The (status, body) pairs of HTTP/1.1 responses read off one connection
    (bodies with Content-Length)."""
    out = []
    while raw:
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise HarnessError(f"incomplete response: {raw[:200]!r}")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == "content-length":
                length = int(v.strip())
        out.append((status, rest[:length].decode("utf-8", "replace")))
        raw = rest[length:]
    return out
