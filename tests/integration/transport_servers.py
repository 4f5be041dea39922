"""Servers for the transport tests: a real nginx with TLS answering
/mxdeliv, the HTTP backend behind it that records what it received, and a
scripted SMTP server that can be SIGKILLed in the middle of DATA.

    nginx = Nginx(tmpdir)
    nginx.server("127.0.0.2", port, cert, key, "return 400 '523 Encryption Needed';")
    nginx.server("127.0.0.3", port, cert, key, nginx.proxy(backend.port))
    nginx.start()                       # waits until every address answers
    ...
    nginx.requests("127.0.0.2")         # lines of that server's access log
    nginx.stop()

Every process is started in its own session and stopped by its pid, also at
interpreter exit, whatever happened.
"""
import atexit
import http.server
import os
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

_procs = set()


def _cleanup():
    for p in list(_procs):
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


atexit.register(_cleanup)


def wait_port(addr, port, timeout=10, family=socket.AF_INET):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(1)
                s.connect((addr, port))
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing answers on {addr}:{port} after {timeout}s")


class Nginx:
    def __init__(self, tmp):
        self.dir = pathlib.Path(tmp) / "nginx"
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "body").mkdir(exist_ok=True)
        os.chmod(self.dir, 0o777)
        os.chmod(self.dir / "body", 0o777)
        self.servers = []
        self.proc = None

    @staticmethod
    def proxy(port, mode="ok"):
        """A location body that passes /mxdeliv to the recording backend."""
        return (f"proxy_pass http://127.0.0.1:{port}; "
                f"proxy_set_header X-Test-Mode {mode}; proxy_read_timeout 60s;")

    def server(self, addr, port, cert, key, body, extra=""):
        self.servers.append((addr, port, cert, key, body, extra))

    def log_path(self, addr):
        return self.dir / f"access-{addr}.log"

    def requests(self, addr):
        """Lines of addr's access log (one per request)."""
        try:
            return self.log_path(addr).read_text().splitlines()
        except FileNotFoundError:
            return []

    def start(self):
        servers = ""
        for addr, port, cert, key, body, extra in self.servers:
            servers += f"""
    server {{
        listen {addr}:{port} ssl http2;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        access_log {self.log_path(addr)} fmt;
        {extra}
        location /mxdeliv {{ {body} }}
        location / {{ return 404; }}
    }}"""
        conf = f"""
daemon off;
master_process on;
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log info;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/body;
    fastcgi_temp_path {self.dir}/body;
    uwsgi_temp_path {self.dir}/body;
    scgi_temp_path {self.dir}/body;
    log_format fmt '$request_method $uri $status $request_length $connection_requests $ssl_session_reused';
    client_max_body_size 10m;
    {servers}
}}
"""
        path = self.dir / "nginx.conf"
        path.write_text(conf)
        r = subprocess.run(["nginx", "-t", "-c", str(path)], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{r.stderr}")
        self.proc = subprocess.Popen(["nginx", "-c", str(path)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        _procs.add(self.proc)
        for addr, port, *_ in self.servers:
            wait_port(addr, port)

    def stop(self):
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        _procs.discard(self.proc)
        self.proc = None


class Backend:
    """What nginx passes /mxdeliv to: records every request (headers, body)
    and answers 200 "250 OK", after a pause for X-Test-Mode: slow. most: the
    most requests it had under way at once since take_most()."""

    def __init__(self, slow_seconds=5):
        self.received = []
        self.lock = threading.Lock()
        self.running = self.most = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                mode = self.headers.get("X-Test-Mode", "ok")
                with owner.lock:
                    owner.running += 1
                    owner.most = max(owner.most, owner.running)
                if mode == "slow":
                    time.sleep(slow_seconds)
                with owner.lock:
                    owner.running -= 1
                    owner.received.append({"headers": [(k.lower(), v) for k, v in self.headers.items()],
                                           "body": body,
                                           "mode": mode})
                out = b"250 OK"
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass  # the client gave up (the slow case)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def take_most(self):
        with self.lock:
            most, self.most = self.most, self.running
        return most

    def take(self):
        with self.lock:
            got, self.received = self.received, []
        return got

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class ScriptedSmtpd:
    """A minimal SMTP server with STARTTLS in a child process (this file run
    as a script). mode "kill" SIGKILLs itself after the first bytes of message
    content; "normal" stores each message as a file in spool."""

    def __init__(self, addr, port, cert, key, spool, mode):
        self.args = [sys.executable, __file__, addr, str(port), str(cert), str(key),
                     str(spool), mode]
        self.addr, self.port = addr, port
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, start_new_session=True)
        _procs.add(self.proc)
        wait_port(self.addr, self.port)
        return self

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        _procs.discard(self.proc)
        self.proc = None


def _smtpd_main(addr, port, cert, key, spool, mode):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, int(port)))
    ls.listen(16)
    n = 0
    while True:
        conn, _ = ls.accept()
        f = conn.makefile("rwb")

        def say(line):
            f.write(line.encode() + b"\r\n")
            f.flush()

        say("220 scripted.remote.test ESMTP")
        mail, rcpts = None, []
        try:
            while True:
                line = f.readline()
                if not line:
                    break
                cmd = line.decode("utf-8", "replace").strip()
                verb = cmd.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    say("250-scripted.remote.test")
                    say("250-PIPELINING")
                    if not isinstance(conn, ssl.SSLSocket):
                        say("250-STARTTLS")
                    say("250 8BITMIME")
                elif verb == "STARTTLS":
                    say("220 go ahead")
                    f.close()
                    conn = ctx.wrap_socket(conn, server_side=True)
                    f = conn.makefile("rwb")
                elif verb == "MAIL":
                    mail, rcpts = cmd, []
                    say("250 ok")
                elif verb == "RCPT":
                    rcpts.append(cmd)
                    say("250 ok")
                elif verb == "DATA":
                    say("354 go ahead")
                    data = b""
                    while True:
                        chunk = f.readline()
                        if not chunk:
                            break
                        if mode == "kill":
                            os.kill(os.getpid(), signal.SIGKILL)
                        if chunk == b".\r\n":
                            break
                        data += chunk
                    n += 1
                    name = pathlib.Path(spool) / f"{os.getpid()}-{n}.eml"
                    name.write_bytes(f"{mail}\n{rcpts}\n".encode() + data)
                    say("250 2.0.0 stored")
                elif verb == "RSET":
                    say("250 ok")
                elif verb == "QUIT":
                    say("221 bye")
                    break
                else:
                    say("502 unknown")
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


if __name__ == "__main__":
    _smtpd_main(*sys.argv[1:7])
