"""SIGHUP: the milter reloads chatmail.ini without dropping connections; a
file that does not load keeps the running configuration."""
import signal

from harness import Relay, smtp_send, wait_until

ONE = "one@example.org"
TWO = "two@example.org"
BOT = "bot@example.org"


def cleartext(sender):
    return (f"From: <{sender}>\r\nTo: <{TWO}>\r\nSubject: hi\r\n\r\nHello\r\n").encode()


def reload(relay, marker):
    before = relay.milter_log().count(marker)
    relay.milter_proc.send_signal(signal.SIGHUP)
    wait_until(lambda: relay.milter_log().count(marker) > before, 10, f"{marker!r} logged")


def test_sighup_reloads_policy_settings():
    with Relay() as r:
        for user in (ONE, TWO, BOT):
            r.add_user(user)
        # A session opened before the reload stays usable after it.
        session = r.connect("submission", login=BOT)
        reply = r.send_outgoing(BOT, [TWO], cleartext(BOT))
        assert reply.code == 523, reply

        ini = r.ini_path.read_text()
        r.ini_path.write_text(ini + f"passthrough_senders = {BOT}\n")
        reload(r, "configuration reloaded from")
        reply = r.send_outgoing(BOT, [TWO], cleartext(BOT))
        assert reply.code == 250, f"passthrough sender after reload: {reply!r}"
        # The milter connection of the session opened before the reload
        # serves on, with the new settings.
        reply = smtp_send(session, BOT, [TWO], cleartext(BOT))
        assert reply.code == 250, f"session opened before the reload: {reply!r}"
        session.quit()

        # A broken file: the running configuration stays.
        r.ini_path.write_text(ini.replace("mail_domain", "#mail_domain") +
                              f"passthrough_senders = {BOT}\n")
        reload(r, "Failed to reload config:")
        reply = r.send_outgoing(BOT, [TWO], cleartext(BOT))
        assert reply.code == 250, f"after a failed reload: {reply!r}"
        reply = r.send_outgoing(ONE, [TWO], cleartext(ONE))
        assert reply.code == 523, reply

        # Settings fixed at start are named in a warning.
        r.ini_path.write_text(ini.replace("filtermail_log_level = debug",
                                          "filtermail_log_level = info"))
        reload(r, "filtermail_log_level (and the other start-up settings) changed")
        assert r.milter_proc.poll() is None
