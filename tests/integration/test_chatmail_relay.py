"""filtermail dropped into two real chatmail relays, used by real Delta Chat
clients (issue 11).

The relays start from chatmail's own rendered main.cf and master.cf (both
configurations in chatmail-relay/: a.test from dualstack, b.test from
ipv4-only), are switched by the shipped filtermail-postfix-setup, and run
with a private Dovecot (IMAP, LMTP delivery, SASL) and mailboxes that belong
to another user with mode 0700; the accounts are created after the setup as
chatmail's doveauth creates them (umask 077). See chatmail_relay_harness.py.
Delta Chat's core (deltachat_client.py) configures alice and carol on
a.test and bob on b.test; they join each other by securejoin (v3 and legacy
QR codes, across the relays and on one relay, a group invitation too), exchange 1:1 and group messages and a
5 MB file, and every message they send passes the milter, the policy server,
the transport and mxdeliv. Everything runs in a private network namespace.
"""
import os
import pathlib
import re
import shutil
import smtplib
import ssl
import subprocess
import tempfile

from chatmail_relay_harness import (CONFIGS, MAILBOX_OWNER, ChatmailRelays,
                                    enter_private_network, leave_private_network)
from deltachat_client import DeltaChat
from harness import HarnessError, postfix_tool, read_mail, set_header, wait_until

net = None
dc = None
users = {}
PASSWORDS = {"alice@a.test": "alice-password-1", "carol@a.test": "carol-password-1",
             "bob@b.test": "bob-password-123", "early@a.test": "early-password-1"}


def setup_module():
    global net, dc
    enter_private_network()
    # early@a.test existed before the switch (the script opens existing
    # accounts' directories too); the others are created after it.
    net = ChatmailRelays(default_build="build/san",
                         early={"early@a.test": PASSWORDS["early@a.test"]})
    net.start()
    for addr in ("alice@a.test", "carol@a.test", "bob@b.test"):
        site = net.a if addr.endswith("@a.test") else net.b
        site.create_account(addr, PASSWORDS[addr])
    dc = DeltaChat(net.tmp / "deltachat").start()
    for addr in ("alice@a.test", "carol@a.test", "bob@b.test"):
        site = net.a if addr.endswith("@a.test") else net.b
        users[addr.split("@")[0]] = dc.account(addr, PASSWORDS[addr], site.addr)


def teardown_module():
    try:
        if dc is not None:
            dc.stop()
        if net is not None:
            net.stop()
    finally:
        leave_private_network()


def fail(what):
    raise AssertionError(f"{what}\n{net.diagnostics(30)}")


def run(fn):
    try:
        fn()
    except HarnessError as e:
        fail(str(e))
    net.check()


# ---------------------------------------------------------------------------
# The switch itself

def test_setup_wired_both_configurations():
    for site in net.sites:
        out = site.setup_output
        assert "may search (not read)" in out, out
        assert f"/mxdeliv keeps going to 127.0.0.1:{site.mxdeliv_port}" in out, out
        params = subprocess.run([postfix_tool("postconf"), "-c", str(site.pf), "-P"],
                                capture_output=True, text=True, check=True).stdout
        master = subprocess.run([postfix_tool("postconf"), "-c", str(site.pf), "-M"],
                                capture_output=True, text=True, check=True).stdout
        main = subprocess.run([postfix_tool("postconf"), "-c", str(site.pf), "-n"],
                              capture_output=True, text=True, check=True).stdout
        assert "smtpd_proxy_filter" not in params, params
        assert ":10025" not in master, master
        assert "lmtp-filtermail" not in master + main, master + main
        assert "\ndefault_transport = filtermail\n" in main, main


def test_accounts_created_later_are_searchable_not_readable():
    for site in net.sites:
        for d in sorted(site.mailboxes.iterdir()):
            mode = d.stat().st_mode & 0o777
            assert mode & 0o007 == 0, f"{d} is open to others ({oct(mode)})"
            r = subprocess.run(["runuser", "-u", "nobody", "--", "test", "-x", str(d)])
            assert r.returncode == 0, f"filtermail_user cannot search {d}"
            r = subprocess.run(["runuser", "-u", "nobody", "--", "ls", str(d)],
                               capture_output=True)
            assert r.returncode != 0, f"filtermail_user can list {d}"


# ---------------------------------------------------------------------------
# Delta Chat

def joined(inviter, joiner, qr):
    """Runs the handshake; returns the joiner's chat and the inviter's
    contact id of the joiner."""
    mark = joiner.mark()
    chat = joiner.call("secure_join", qr)
    joiner.wait_event("SecurejoinJoinerProgress", lambda e: e["progress"] == 1000,
                      since=mark, timeout=90)
    ev = inviter.wait_event("SecurejoinInviterProgress", lambda e: e["progress"] == 1000,
                            since=mark, timeout=60)
    return chat, ev["contactId"]


def test_securejoin_v3_across_relays():
    def go():
        alice, bob = users["alice"], users["bob"]
        qr = alice.call("get_chat_securejoin_qr_code", None)
        assert "&v=3" in qr, qr
        kind = bob.call("check_qr", qr)["kind"]
        assert kind == "askVerifyContact", kind
        cleartext = lambda: net.b.milter_log().count("verdict outgoing accept securejoin")
        before = cleartext()
        users["bob_chat"], users["alice_knows_bob"] = joined(alice, bob, qr)
        # v3 sends nothing in cleartext (vc-request-pubkey is encrypted).
        assert cleartext() == before, "securejoin v3 sent a cleartext message"
    run(go)


def test_securejoin_legacy_qr_on_one_relay():
    def go():
        alice, carol = users["alice"], users["carol"]
        qr = alice.call("get_chat_securejoin_qr_code", None)
        legacy = qr.replace("&v=3", "")
        assert legacy != qr and "v=" not in legacy.split("#", 1)[1], legacy
        count = lambda: net.a.milter_log().count("verdict outgoing accept securejoin")
        before = count()
        users["carol_chat"], users["alice_knows_carol"] = joined(alice, carol, legacy)
        # The legacy vc-request is cleartext: the gate let it pass as one.
        assert count() > before, "no cleartext securejoin message passed a.test's milter"
    run(go)


def test_securejoin_legacy_qr_across_relays():
    def go():
        bob, carol = users["bob"], users["carol"]
        qr = bob.call("get_chat_securejoin_qr_code", None).replace("&v=3", "")
        count = lambda: net.b.milter_log().count("verdict incoming accept securejoin")
        before = count()
        joined(bob, carol, qr)
        assert count() > before, "no cleartext securejoin message passed b.test's milter"
    run(go)


def test_securejoin_v3_group_invite_on_one_relay():
    def go():
        alice, carol = users["alice"], users["carol"]
        group = alice.call("create_group_chat", "joined by QR code", False)
        qr = alice.call("get_chat_securejoin_qr_code", group)
        assert "&v=3" in qr, qr
        assert carol.call("check_qr", qr)["kind"] == "askVerifyGroup"
        chat, _ = joined(alice, carol, qr)
        mark = carol.mark()
        alice.call("misc_send_text_message", group, "welcome to the QR group")
        msg = carol.wait_message("welcome to the QR group", since=mark)
        assert msg["chatId"] == chat, (msg["chatId"], chat)
    run(go)


def test_one_to_one_both_ways_across_relays():
    def go():
        alice, bob = users["alice"], users["bob"]
        mark = alice.mark()
        bob.call("misc_send_text_message", users["bob_chat"], "hello alice, from b.test")
        msg = alice.wait_message("hello alice, from b.test", since=mark)
        assert msg["showPadlock"], msg
        contact = msg["fromId"]
        chat = alice.call("create_chat_by_contact_id", contact)
        users["alice_bob_chat"] = chat
        mark = bob.mark()
        alice.call("misc_send_text_message", chat, "hello bob, from a.test")
        msg = bob.wait_message("hello bob, from a.test", since=mark)
        assert msg["showPadlock"], msg
    run(go)


def test_group_across_relays():
    def go():
        alice, bob, carol = users["alice"], users["bob"], users["carol"]
        group = alice.call("create_group_chat", "filtermail test group", False)
        for name in ("bob", "carol"):
            alice.call("add_contact_to_chat", group, users[f"alice_knows_{name}"])
        marks = {u: u.mark() for u in (bob, carol)}
        alice.call("misc_send_text_message", group, "hello group")
        got = {u.addr: u.wait_message("hello group", since=marks[u]) for u in (bob, carol)}
        bob_group = got["bob@b.test"]["chatId"]
        marks = {u: u.mark() for u in (alice, carol)}
        bob.call("misc_send_text_message", bob_group, "bob answers the group")
        for u in (alice, carol):
            u.wait_message("bob answers the group", since=marks[u])
    run(go)


def test_five_megabyte_file_across_relays():
    def go():
        alice, bob = users["alice"], users["bob"]
        path = net.tmp / "five-mb.bin"
        path.write_bytes(os.urandom(5 * 1024 * 1024))
        mark = bob.mark()
        alice.call("send_msg", users["alice_bob_chat"],
                   {"text": "five megabytes", "file": str(path), "filename": "five-mb.bin",
                    "viewtype": "File"})
        # A pre-message comes first; the full message completes it.
        first = bob.wait_message("five megabytes", since=mark, timeout=60)
        msg = wait_until(lambda: (lambda m: m if m.get("downloadState") == "Done"
                                  and m.get("file") else None)(
                             bob.call("get_message", first["id"])),
                         60, "the whole file at bob's", interval=0.5)
        assert msg["fileBytes"] == path.stat().st_size, msg
        got = pathlib.Path(msg["file"]).read_bytes()
        assert got == path.read_bytes(), "the file arrived changed"
    run(go)


def test_every_message_passed_the_four_programs():
    for site in net.sites:
        log = site.maillog()
        submitted = set(re.findall(r"postfix/(?:smtps|submission)/smtpd\[\d+\]: (\w+): client=.*"
                                   r"sasl_username=", log))
        assert submitted, f"{site.domain}: nothing was submitted"
        verdicts = set(re.findall(r"(\w+): verdict outgoing accept", site.milter_log()))
        assert submitted <= verdicts, \
            f"{site.domain}: submitted without the milter: {submitted - verdicts}"
        sent = set(re.findall(r"(\w+): to=<[^>]+>, relay=\S+/https, .*status=sent",
                              site.transport_log_text()))
        remote = {q for q in submitted
                  if re.search(rf"{q}: to=<[^@>]+@(?!{re.escape(site.domain)}>)", log)}
        assert remote and remote <= sent, \
            f"{site.domain}: remote mail not sent by the transport: {remote - sent}"
        policy = len(re.findall(r"(?m)^.*filtermail::policyd.*@" + re.escape(site.domain),
                                site.policyd.log()))
        assert policy >= len(submitted), \
            f"{site.domain}: {policy} policy lines for {len(submitted)} submissions"
        reinjected = set(re.findall(r"postfix/mxdeliv/smtpd\[\d+\]: (\w+): client=", log))
        accepted = len(re.findall(r"\(HTTP\) 200 250 OK", site.mxdeliv.log()))
        assert reinjected and accepted == len(reinjected), \
            f"{site.domain}: {accepted} /mxdeliv 200s for {len(reinjected)} reinjections"
        incoming = set(re.findall(r"(\w+): verdict incoming accept", site.milter_log()))
        assert reinjected <= incoming, \
            f"{site.domain}: reinjected without the milter: {reinjected - incoming}"


def test_account_from_before_the_switch_receives():
    """bob's encrypted message (submitted with SASL, signed by b.test) reaches
    early@a.test, whose directory existed before the setup ran."""
    def go():
        s = smtp_tls(net.b.addr, 465, wrapper=True)
        s.login("bob@b.test", PASSWORDS["bob@b.test"])
        data = message("bob@b.test", "early@a.test", "encrypted.eml")
        s.sendmail("bob@b.test", ["early@a.test"], data)
        s.quit()
        new = net.a.mailboxes / "early@a.test" / "new"
        wait_until(lambda: new.is_dir() and any(new.iterdir()), 30,
                   "bob's message in early@a.test's Maildir")
    run(go)


# ---------------------------------------------------------------------------
# The gate still says no

def smtp_tls(host, port, wrapper=False):
    ctx = ssl.create_default_context(cafile=str(net.ca.cert))
    if wrapper:
        return smtplib.SMTP_SSL(host, port, context=ctx, timeout=30)
    s = smtplib.SMTP(host, port, timeout=30)
    s.starttls(context=ctx)
    return s


def message(sender, rcpt, kind):
    data = read_mail(kind).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    data = set_header(data, "From", f"<{sender}>")
    return set_header(data, "To", f"<{rcpt}>")


def refused(s, sender, rcpt, data):
    try:
        s.sendmail(sender, [rcpt], data)
    except smtplib.SMTPDataError as e:
        return e.smtp_code, e.smtp_error.decode()
    finally:
        s.quit()
    return 250, "accepted"


def test_cleartext_through_submission_gets_523():
    site = net.a
    for port, wrapper in ((465, True), (587, False)):
        s = smtp_tls(site.addr, port, wrapper)
        s.login("alice@a.test", PASSWORDS["alice@a.test"])
        code, text = refused(s, "alice@a.test", "bob@b.test",
                             message("alice@a.test", "bob@b.test", "plain.eml"))
        assert (code, text) == (523, "Encryption Needed: Invalid Unencrypted Mail"), \
            (port, code, text)


def test_unsigned_message_at_port_25_gets_554():
    s = smtp_tls(net.a.addr, 25)
    code, text = refused(s, "bob@b.test", "alice@a.test",
                         message("bob@b.test", "alice@a.test", "encrypted.eml"))
    assert (code, text) == (554, "5.7.1 No DKIM signature found"), (code, text)


# ---------------------------------------------------------------------------
# Living with cmdeploy, and going back

def listener_name(port):
    out = subprocess.run(["ss", "-Htlnp", f"sport = :{port}"], capture_output=True,
                         text=True, check=True).stdout
    m = re.search(r'users:\(\("([^"]+)"', out)
    return m.group(1) if m else None


def test_cmdeploy_port_check_stops_before_changing_anything():
    # cmdeploy's check accepts only a process named "filtermail" on 10082.
    name = listener_name(net.a.mxdeliv_port)
    assert name is not None and name != "filtermail", name


def test_rerun_after_cmdeploy_rerendered_the_files():
    def go():
        site = net.a
        # cmdeploy run renders main.cf and master.cf again (a newer relay
        # version may differ a little).
        upgraded = {f: b.replace(b"biff = no\n", b"biff = no\n# upgraded\n")
                    for f, b in site.before.items()}
        for f, b in upgraded.items():
            (site.pf / f).write_bytes(b)
        r = site.run_setup(site.ini)
        assert "rewritten since this script last ran" in r.stdout, r.stdout
        subprocess.run([postfix_tool("postfix"), "-c", str(site.pf), "reload"], check=True,
                       capture_output=True)
        alice, bob = users["alice"], users["bob"]
        mark = bob.mark()
        alice.call("misc_send_text_message", users["alice_bob_chat"], "after the upgrade")
        bob.wait_message("after the upgrade", since=mark)
        site.before = upgraded          # what --undo now gives back
    run(go)


def test_undo_restores_both_relays_byte_for_byte():
    for site in net.sites:
        site.run_setup("--undo")
        for f, b in site.before.items():
            assert (site.pf / f).read_bytes() == b, f"{site.domain}: {f} differs after --undo"
        acl = subprocess.run(["getfacl", "-R", "-p", str(site.tmp / "vmail")],
                             capture_output=True, text=True, check=True).stdout
        assert "user:nobody:" not in acl, f"{site.domain}: ACL entries left:\n{acl}"


# ---------------------------------------------------------------------------
# Where the gate could not work, the script refuses

def scratch_relay(config, ini_extra=""):
    """A copy of a rendered configuration with its mailboxes (no daemons)."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="filtermail-setup-", dir=net.tmp))
    d.chmod(0o755)
    pf = d / "postfix"
    pf.mkdir()
    for f in ("main.cf", "master.cf"):
        shutil.copy(CONFIGS / config / f, pf / f)
    ini_text = (CONFIGS / config / "chatmail.ini").read_text()
    domain = re.search(r"(?m)^mail_domain = (\S+)", ini_text).group(1)
    mb = d / "vmail" / domain
    (mb / f"old@{domain}").mkdir(parents=True)
    for p in (mb.parent, mb, mb / f"old@{domain}"):
        shutil.chown(p, MAILBOX_OWNER, MAILBOX_OWNER)
        p.chmod(0o700)
    ini = d / "chatmail.ini"
    ini.write_text(ini_text + f"\nmailboxes_dir = {mb}\nfiltermail_user = nobody\n" + ini_extra)
    return d, pf, ini, mb


def setup(d, pf, *args):
    return subprocess.run([str(net.setup), "-c", str(pf), "--state-dir", str(d / "state"),
                           "--snippets", str(CONFIGS.parents[2] / "postfix-conf"),
                           "--no-services", "--no-reload", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_ip_literal_relay_needs_dkim_sign_no():
    d, pf, ini, mb = scratch_relay("ipv4-only")
    before = {f: (pf / f).read_bytes() for f in ("main.cf", "master.cf")}
    r = setup(d, pf, ini)
    assert r.returncode == 1 and "filtermail_dkim_sign = no" in r.stderr, r
    assert {f: (pf / f).read_bytes() for f in before} == before and not (d / "state").exists()
    with open(ini, "a") as f:
        f.write("filtermail_dkim_sign = no\n")
    r = setup(d, pf, ini)
    assert r.returncode == 0, r
    check = subprocess.run([postfix_tool("postfix"), "-c", str(pf), "check"],
                           capture_output=True, text=True)
    assert check.returncode == 0 and not (check.stdout + check.stderr).strip(), check
    r = setup(d, pf, "--undo")
    assert r.returncode == 0, r
    assert {f: (pf / f).read_bytes() for f in before} == before


def test_refuses_where_mailboxes_cannot_be_opened():
    """ramfs has no ACLs: the script must refuse and change nothing."""
    d, pf, ini, mb = scratch_relay("dualstack", "filtermail_dkim_sign = no\n")
    before = {f: (pf / f).read_bytes() for f in ("main.cf", "master.cf")}
    script = ("mount -t ramfs none \"$1\" && chown {o}:{o} \"$1\" && chmod 0700 \"$1\" && "
              "shift && exec \"$@\"").format(o=MAILBOX_OWNER)
    r = subprocess.run(["unshare", "--mount", "sh", "-c", script, "sh", str(mb), str(net.setup),
                        "-c", str(pf), "--state-dir", str(d / "state"),
                        "--snippets", str(CONFIGS.parents[2] / "postfix-conf"),
                        "--no-services", "--no-reload", str(ini)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r
    assert "the milter would defer every message; nothing in Postfix changed" in r.stderr, r
    assert "filtermail_user = mail" in r.stderr, r
    assert {f: (pf / f).read_bytes() for f in before} == before
    assert not (d / "state").exists(), "a refused run left state behind"
