"""The test mail of tests/data/mail as acceptance cases: who sends each message
in which direction, and the SMTP reply filtermail must give (from
tests/data/verdicts.tsv and the verdict table of tests/data/README.md).
Shared by test_e2ee.py and demo.py.
"""
import re

from harness import REPO, read_mail

ENCRYPTION_NEEDED = "523 Encryption Needed: Invalid Unencrypted Mail"
ACCEPT = "250"   # any 250 reply: Postfix's "2.0.0 Ok: queued as <id>"

# Recipients of the cases, as a relay would have them (Relay.add_user()).
ENFORCING_RCPT = "two@example.org"   # has enforceE2EEincoming
OPEN_RCPT = "open@example.org"       # mailbox without enforceE2EEincoming

# A bare IPv6 domain literal in From: is not extractable in the reference
# (quirk Q10); filtermail may accept it instead. Either answer is right.
IPV6_VERDICTS = (ACCEPT, "500 Invalid FROM header: one@[IPv6:2001:db8::1]")


class Case:
    """One message sent one way, and the replies that are right for it."""

    def __init__(self, name, direction, mail_from, rcpts, expected, note=""):
        self.name = name
        self.direction = direction     # "outgoing" or "incoming"
        self.mail_from = mail_from     # "" for the null sender
        self.rcpts = rcpts
        self.expected = expected       # tuple of ACCEPT or exact reply lines
        self.note = note

    @property
    def data(self):
        return read_mail(self.name)

    def matches(self, reply):
        """True when reply is one of the expected answers."""
        return any(reply.code == 250 if e == ACCEPT else str(reply) == e
                   for e in self.expected)

    def __str__(self):
        note = f" ({self.note})" if self.note else ""
        return f"{self.name} {self.direction}{note}"


def verdicts():
    """{file: (enc_out, enc_in, securejoin)} from tests/data/verdicts.tsv."""
    table = {}
    for line in (REPO / "tests" / "data" / "verdicts.tsv").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, enc_out, enc_in, sj = line.split("\t")
        table[name] = (enc_out == "1", enc_in == "1", sj == "1")
    return table


def from_address(data):
    """The address of the first From: field (angle brackets or bare)."""
    m = re.search(rb"^From:(.*)$", data, re.M | re.I)
    value = m.group(1).decode().strip()
    inner = re.search(r"<([^>]*)>", value)
    return inner.group(1) if inner else value


def cases():
    """Every corpus message outgoing (submission, sender = From, to an
    enforcing local user) and incoming (port 25, sender = From, to an
    enforcing user), plus the documented variants: a self-sent Autocrypt Setup
    Message, and cleartext to a recipient without enforceE2EEincoming."""
    out = []
    for name, (enc_out, enc_in, sj) in verdicts().items():
        sender = from_address(read_mail(name))
        ipv6 = name == "encrypted-ipv6.eml"
        out.append(Case(name, "outgoing", sender, [ENFORCING_RCPT],
                        IPV6_VERDICTS if ipv6 else
                        (ACCEPT,) if enc_out or sj else (ENCRYPTION_NEEDED,)))
        if name.startswith("asm"):
            out.append(Case(name, "outgoing", sender, [sender], (ACCEPT,), "self-sent"))
    for name, (enc_out, enc_in, sj) in verdicts().items():
        sender = from_address(read_mail(name))
        ipv6 = name == "encrypted-ipv6.eml"
        # Bounces come with the null sender; the mailer-daemon exception
        # (spec 4.6) lets them in although they are cleartext.
        mailer_daemon = name == "mailer-daemon.eml"
        out.append(Case(name, "incoming", "" if mailer_daemon else sender, [ENFORCING_RCPT],
                        IPV6_VERDICTS if ipv6 else
                        (ACCEPT,) if enc_in or sj or mailer_daemon else (ENCRYPTION_NEEDED,)))
        if name in ("plain.eml", "mdn.eml"):
            out.append(Case(name, "incoming", sender, [OPEN_RCPT], (ACCEPT,), "open rcpt"))
    return out
