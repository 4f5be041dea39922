"""Tests of the harness itself: that it notices a sanitizer report or a dead
milter (or every other suite could pass with a broken milter), that it runs
Postfix without a milter, and that it leaves nothing behind.
"""
import pathlib
import sys
import tempfile

from harness import HarnessError, Relay, pid_alive, read_mail, wait_until

# Stands in for filtermail-milter: listens on the configured socket, says it
# serves, then misbehaves as FAKE_MILTER asks.
FAKE_MILTER = f"""#!{sys.executable}
import os, socket, sys, time
params = dict(line.split(" = ", 1) for line in open(sys.argv[1]).read().splitlines()
              if " = " in line)
path = params["filtermail_milter_socket"].strip().removeprefix("unix:")
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen()
print("[INFO  filtermail] entering serving loop", file=sys.stderr, flush=True)
if os.environ["FAKE_MILTER"] == "asan":
    print("==42==ERROR: AddressSanitizer: heap-use-after-free on address 0x1",
          file=sys.stderr, flush=True)
elif os.environ["FAKE_MILTER"] == "die":
    time.sleep(1)   # after the harness saw it ready
    sys.exit(3)
time.sleep(600)
"""


def fake_relay(tmp, mode):
    path = pathlib.Path(tmp) / "fake-milter"
    path.write_text(FAKE_MILTER)
    path.chmod(0o755)
    return Relay(binary=path, env={"FAKE_MILTER": mode})


def test_sanitizer_report_fails_the_relay():
    with tempfile.TemporaryDirectory() as tmp:
        relay = fake_relay(tmp, "asan").start()
        try:
            relay.check_milter()
            raise AssertionError("check_milter() missed an AddressSanitizer report")
        except HarnessError as e:
            assert "AddressSanitizer" in str(e), e
        try:
            relay.stop()
            raise AssertionError("stop() missed an AddressSanitizer report")
        except HarnessError as e:
            assert "AddressSanitizer" in str(e), e
        assert not relay.tmp.exists(), "stop() left the temporary directory"


def test_dead_milter_fails_the_relay():
    with tempfile.TemporaryDirectory() as tmp:
        relay = fake_relay(tmp, "die").start()
        try:
            wait_until(lambda: relay.milter_proc.poll() is not None, 10, "the fake to exit")
            relay.check_milter()
            raise AssertionError("check_milter() missed the milter's death")
        except HarnessError as e:
            assert "died" in str(e), e
        finally:
            relay.stop(check=False)


def test_postfix_without_milter_and_cleanup():
    """milter=False: plain Postfix delivers anything; stop() ends master and
    removes the directory."""
    with Relay(milter=False) as relay:
        assert "smtpd_milters" not in (relay.etc / "main.cf").read_text()
        reply = relay.send_incoming("a@remote.example", ["b@example.org"],
                                    read_mail("plain.eml"))
        assert reply.code == 250, reply
        got = relay.wait_for_delivery("b@example.org")
        assert got.return_path == "<a@remote.example>", got.return_path
        master = relay.master_pid()
        tmp = relay.tmp
    assert not tmp.exists(), f"{tmp} left behind"
    assert not pid_alive(master), f"Postfix master {master} still running"
