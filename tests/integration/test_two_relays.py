"""Two complete relays on one machine, a.test and b.test, exchanging mail
(the /mxdeliv issue, second part).

Each relay: a private Postfix with filtermail-milter (DKIM verification on,
signing with its own key), filtermail-policyd on submission (20 messages a
minute, bursts of 10), filtermail-transport as the pipe(8) default_transport,
filtermail-mxdeliv behind nginx with TLS from a test CA, the port-25 role on
its own 127.0.0.x address; one set of DNSSEC-signed zones (MX, A, TLSA, DKIM
keys) served offline. See tworelays_harness.py for the wiring and
tworelays_story.py for what each scenario asserts; `make demo` runs the same
scenarios and prints what they observed.
"""
from tworelays_harness import TwoRelays
import tworelays_story as story

net = None


def setup_module():
    global net
    net = TwoRelays(default_build="build/san", per_minute=20, burst=10, retry=3)
    net.start()
    story.prepare(net)


def teardown_module():
    if net is not None:
        net.stop()


def run(fn):
    fn(net)
    net.check()


def test_encrypted_over_https_signed_by_a_verified_by_b():
    run(story.encrypted_over_https)


def test_reply_from_b_to_a_over_https():
    run(story.reply_from_b)


def test_cleartext_refused_523_at_a_submission():
    run(story.cleartext_refused_at_submission)


def test_cleartext_injected_into_b_refused_523_port25_and_mxdeliv():
    run(story.cleartext_refused_by_b)


def test_forged_from_a_refused_554_by_b():
    run(story.forged_refused_by_b)


def test_group_message_to_20_users_at_b():
    run(story.group_message)


def test_b_nginx_stopped_arrives_over_smtp_starttls():
    run(story.nginx_stopped_smtp_starttls)


def test_b_down_mail_waits_then_delivered_exactly_once():
    run(story.b_down_then_back)


def test_burst_11th_message_gets_450():
    run(story.burst_rate_limited)
