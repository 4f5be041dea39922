/* Tests for verdict.c: the E2EE policy, replies and log lines (spec 5.1, 6.2-6.4, 9). */
#include "verdict.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

/* Captured log lines, "LEVEL target text". */
static char logbuf[8192];

static void capture(void *ctx, enum log_level level, const char *target, const char *text)
{
    static const char *names[] = {"?", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"};
    size_t n = strlen(logbuf);
    (void)ctx;
    if (level == LOGL_DEBUG)
        return;
    snprintf(logbuf + n, sizeof(logbuf) - n, "%s %s %s\n", names[level], target, text);
}

static struct mime_result msg(bool encrypted, const char *from)
{
    struct mime_result m;
    memset(&m, 0, sizeof(m));
    m.mimetype = encrypted ? "multipart/encrypted" : "text/plain";
    m.encrypted = encrypted;
    m.from.value = from;
    m.from.len = from != NULL ? strlen(from) : 0;
    m.from_count = from != NULL;
    return m;
}

static struct config_list empty_list;

static struct verdict run(enum armor_direction dir, const char *sender, struct verdict_rcpt *r,
                          size_t n, const struct mime_result *m)
{
    struct verdict_input in;
    struct verdict v;
    memset(&in, 0, sizeof(in));
    in.dir = dir;
    in.sender = sender;
    in.rcpts = r;
    in.nrcpts = n;
    in.msg = m;
    in.passthrough_senders = &empty_list;
    in.passthrough_recipients = &empty_list;
    in.origin = ORIGIN_SKIPPED;
    logbuf[0] = '\0';
    verdict_decide(&in, &v, capture, NULL);
    return v;
}

#define OUT ARMOR_OUTGOING
#define IN ARMOR_INCOMING

static void check_reply(const struct verdict *v, enum verdict_action action, const char *code,
                        const char *xcode, const char *text)
{
    CHECKF(v->action == action, "action %d, want %d (%s %s)", v->action, action, v->code,
           v->text);
    CHECK_STR(v->code, code);
    CHECK_STR(v->xcode, xcode);
    CHECK_STR(v->text, text);
}

static void test_outgoing_basic(void)
{
    struct verdict_rcpt r[] = {{.addr = "user2@example.org"}};
    struct mime_result m = msg(true, "user1@example.org");
    struct verdict v = run(OUT, "user1@example.org", r, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT);
    CHECK(v.kind == KIND_ENCRYPTED);
    CHECK(!v.null_sender);
    CHECK_STR(logbuf, "INFO filtermail::outbound Outgoing: Filtering encrypted mail.\n");

    m = msg(false, "user1@example.org");
    v = run(OUT, "user1@example.org", r, 1, &m);
    check_reply(&v, VERDICT_REJECT, "523", "", "Encryption Needed: Invalid Unencrypted Mail");
    CHECK(v.reason == REASON_UNENCRYPTED);
    CHECK_STR(logbuf, "INFO filtermail::outbound Outgoing: Filtering unencrypted mail.\n"
                      "WARN filtermail::outbound Rejected unencrypted mail from: "
                      "user1@example.org\n");

    m = msg(false, "user1@example.org");
    m.securejoin = true;
    v = run(OUT, "user1@example.org", r, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT && v.kind == KIND_SECUREJOIN);
    CHECK_STR(logbuf, "INFO filtermail::outbound Outgoing: Filtering encrypted mail.\n");
}

static void test_outgoing_from(void)
{
    struct verdict_rcpt r[] = {{.addr = "user2@example.org"}};
    struct mime_result m = msg(true, "forged@example.org");
    struct verdict v = run(OUT, "user1@example.org", r, 1, &m);
    check_reply(&v, VERDICT_REJECT, "500", "",
                "Invalid FROM <forged@example.org> for <user1@example.org>");

    m = msg(true, "User1 <USER1@EXAMPLE.ORG>");
    v = run(OUT, "user1@example.org", r, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT);

    m = msg(true, NULL); /* no From header */
    v = run(OUT, "user1@example.org", r, 1, &m);
    check_reply(&v, VERDICT_REJECT, "500", "", "Invalid FROM header: ");

    m = msg(true, "  undisclosed-recipients:; \t");
    v = run(OUT, "user1@example.org", r, 1, &m);
    check_reply(&v, VERDICT_REJECT, "500", "", "Invalid FROM header: undisclosed-recipients:;");

    m = msg(true, "user1@example.org");
    v = run(OUT, "", r, 1, &m);
    check_reply(&v, VERDICT_REJECT, "500", "", "Invalid FROM <user1@example.org> for <>");

    /* Peer text in a reply is kept printable and bounded. */
    m = msg(true, "bad\r\n\x80\x01 %s");
    v = run(OUT, "user1@example.org", r, 1, &m);
    check_reply(&v, VERDICT_REJECT, "500", "", "Invalid FROM header: bad???? %s");

    m = msg(true, "user1@example.org");
    m.from.truncated = true;
    v = run(OUT, "user1@example.org", r, 1, &m);
    CHECK(v.action == VERDICT_REJECT && v.reason == REASON_INVALID_FROM);
}

static void test_outgoing_asm(void)
{
    struct verdict_rcpt self[] = {{.addr = "user1@example.org"}};
    struct verdict_rcpt other[] = {{.addr = "user2@example.org"}};
    struct verdict_rcpt both[] = {{.addr = "user1@example.org"}, {.addr = "user2@example.org"}};
    struct mime_result m = msg(false, "user1@example.org");
    struct verdict v;

    m.mimetype = "multipart/mixed";
    m.subject.value = "Autocrypt Setup Message";
    m.subject.len = strlen(m.subject.value);
    v = run(OUT, "user1@example.org", self, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT && v.kind == KIND_ASM);
    /* The unencrypted line is logged even though the ASM exception holds. */
    CHECK_STR(logbuf, "INFO filtermail::outbound Outgoing: Filtering unencrypted mail.\n");

    v = run(OUT, "user1@example.org", other, 1, &m);
    CHECK(v.action == VERDICT_REJECT && strcmp(v.code, "523") == 0);
    v = run(OUT, "user1@example.org", both, 2, &m);
    CHECK(v.action == VERDICT_REJECT && strcmp(v.code, "523") == 0);

    /* A disabled second recipient leaves exactly one: the exception holds. */
    both[1].disabled = true;
    v = run(OUT, "user1@example.org", both, 2, &m);
    CHECK(v.action == VERDICT_ACCEPT && v.kind == KIND_ASM);
    CHECK(!both[0].remove && both[1].remove);

    m.subject.value = "Autocrypt Setup Message 2";
    m.subject.len = strlen(m.subject.value);
    v = run(OUT, "user1@example.org", self, 1, &m);
    CHECK(v.action == VERDICT_REJECT);

    m.subject.value = "Autocrypt Setup Message";
    m.subject.len = strlen(m.subject.value);
    m.mimetype = "multipart/alternative";
    v = run(OUT, "user1@example.org", self, 1, &m);
    CHECK(v.action == VERDICT_REJECT);
}

static void test_outgoing_disabled(void)
{
    struct verdict_rcpt r[] = {{.addr = "user2@example.org", .disabled = true},
                               {.addr = "user3@example.org"}};
    struct mime_result m = msg(true, "user1@example.org");
    struct verdict_input in;
    struct verdict v = run(OUT, "user1@example.org", r, 2, &m);

    CHECK(v.action == VERDICT_ACCEPT);
    CHECK(r[0].remove && !r[1].remove);
    CHECK_STR(logbuf, "WARN filtermail::outbound Disabled recipient: user2@example.org; "
                      "removing from RCPT TO\n"
                      "INFO filtermail::outbound Outgoing: Filtering encrypted mail.\n");

    r[1].disabled = true;
    v = run(OUT, "user1@example.org", r, 2, &m);
    CHECK(v.action == VERDICT_DISCARD && v.reason == REASON_ALL_RECIPIENTS_DISABLED);
    CHECK(strstr(logbuf, "WARN filtermail::outbound Dropping mail; All recipients disabled.\n"));

    /* A disabled sender: encrypted mail is dropped, cleartext still gets 523. */
    struct verdict_rcpt one[] = {{.addr = "user2@example.org"}};
    memset(&in, 0, sizeof(in));
    in.dir = OUT;
    in.sender = "user1@example.org";
    in.sender_disabled = true;
    in.rcpts = one;
    in.nrcpts = 1;
    in.msg = &m;
    in.origin = ORIGIN_SKIPPED;
    logbuf[0] = '\0';
    verdict_decide(&in, &v, capture, NULL);
    CHECK(v.action == VERDICT_DISCARD && v.reason == REASON_SENDER_DISABLED);
    CHECK(strstr(logbuf, "Dropping mail; Sender user1@example.org is disabled.\n"));
    m = msg(false, "user1@example.org");
    verdict_decide(&in, &v, capture, NULL);
    CHECK(v.action == VERDICT_REJECT && strcmp(v.code, "523") == 0);
    CHECK(!one[0].remove);
}

static void test_outgoing_passthrough(void)
{
    char *senders[] = {"bot@example.org"};
    char *rcpts[] = {"echo@example.org", "@partner.example"};
    struct config_list ps = {senders, 1}, pr = {rcpts, 2};
    struct verdict_rcpt r[] = {{.addr = "echo@example.org"}, {.addr = "x@partner.example"}};
    struct mime_result m = msg(false, "user1@example.org");
    struct verdict_input in;
    struct verdict v;

    memset(&in, 0, sizeof(in));
    in.dir = OUT;
    in.sender = "user1@example.org";
    in.rcpts = r;
    in.nrcpts = 2;
    in.msg = &m;
    in.passthrough_senders = &ps;
    in.passthrough_recipients = &pr;
    verdict_decide(&in, &v, NULL, NULL);
    CHECK(v.action == VERDICT_ACCEPT && v.kind == KIND_PASSTHROUGH);

    r[1].addr = "x@sub.partner.example.org"; /* "@domain" matches the end only */
    verdict_decide(&in, &v, NULL, NULL);
    CHECK(v.action == VERDICT_REJECT);
    r[1].addr = "x@notpartner.example";
    verdict_decide(&in, &v, NULL, NULL);
    CHECK(v.action == VERDICT_REJECT);

    m = msg(false, "bot@example.org");
    in.sender = "bot@example.org";
    verdict_decide(&in, &v, NULL, NULL);
    CHECK(v.action == VERDICT_ACCEPT && v.kind == KIND_PASSTHROUGH);
}

static void test_incoming(void)
{
    struct verdict_rcpt enforcing[] = {{.addr = "user2@example.org", .enforce_e2ee = true}};
    struct verdict_rcpt open[] = {{.addr = "user2@example.org"}};
    struct verdict_rcpt mixed[] = {{.addr = "open@example.org"},
                                   {.addr = "enf@example.org", .enforce_e2ee = true}};
    struct mime_result m = msg(true, "user1@remote.example");
    struct verdict v = run(IN, "user1@remote.example", enforcing, 1, &m);

    CHECK(v.action == VERDICT_ACCEPT && !v.null_sender);
    CHECK_STR(logbuf, "INFO filtermail::inbound Incoming: Filtering encrypted mail.\n");

    m = msg(false, "user1@remote.example");
    v = run(IN, "user1@remote.example", enforcing, 1, &m);
    check_reply(&v, VERDICT_REJECT, "523", "", "Encryption Needed: Invalid Unencrypted Mail");
    CHECK_STR(logbuf, "INFO filtermail::inbound Incoming: Filtering unencrypted mail.\n"
                      "WARN filtermail::inbound Rejected unencrypted mail from: "
                      "user1@remote.example\n");
    v = run(IN, "user1@remote.example", open, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT && v.kind == KIND_CLEARTEXT_ALLOWED);
    v = run(IN, "user1@remote.example", mixed, 2, &m);
    CHECK(v.action == VERDICT_REJECT);

    /* Return path: a different envelope sender becomes <>; case is ignored. */
    m = msg(true, "user1@remote.example");
    v = run(IN, "bounce+srs@fwd.example", enforcing, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT && v.null_sender);
    v = run(IN, "USER1@remote.example", enforcing, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT && !v.null_sender);
    v = run(IN, "", enforcing, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT && !v.null_sender);
    /* ...but a rejected message is not rewritten. */
    m = msg(false, "user1@remote.example");
    v = run(IN, "other@remote.example", enforcing, 1, &m);
    CHECK(v.action == VERDICT_REJECT && !v.null_sender);
}

static void test_incoming_mailer_daemon(void)
{
    struct verdict_rcpt enforcing[] = {{.addr = "user2@example.org", .enforce_e2ee = true}};
    struct mime_result m = msg(false, "Mail Delivery System <MAILER-DAEMON@example.org>");
    struct verdict v;

    m.mimetype = "multipart/report";
    m.auto_submitted.value = "auto-replied";
    m.auto_submitted.len = strlen(m.auto_submitted.value);
    v = run(IN, "", enforcing, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT && v.kind == KIND_MAILER_DAEMON);
    CHECK_STR(logbuf, "INFO filtermail::inbound Incoming: Filtering mailer-daemon message from "
                      "<mailer-daemon@example.org>\n");

    m.auto_submitted.value = "no"; /* any value counts (Q22) */
    m.auto_submitted.len = 2;
    v = run(IN, "", enforcing, 1, &m);
    CHECK(v.action == VERDICT_ACCEPT);

    m.auto_submitted.len = 0;
    v = run(IN, "", enforcing, 1, &m);
    CHECK(v.action == VERDICT_REJECT);
    m.auto_submitted.len = 2;
    m.mimetype = "multipart/mixed";
    v = run(IN, "", enforcing, 1, &m);
    CHECK(v.action == VERDICT_REJECT);
    m.mimetype = "multipart/report";
    m.from.value = "postmaster@example.org";
    m.from.len = strlen(m.from.value);
    v = run(IN, "", enforcing, 1, &m);
    CHECK(v.action == VERDICT_REJECT);

    /* Outgoing has no mailer-daemon exception. */
    m.from.value = "mailer-daemon@example.org";
    m.from.len = strlen(m.from.value);
    v = run(OUT, "mailer-daemon@example.org", enforcing, 1, &m);
    CHECK(v.action == VERDICT_REJECT && strcmp(v.code, "523") == 0);
}

static void test_incoming_disabled(void)
{
    struct verdict_rcpt r[] = {{.addr = "user2@example.org", .disabled = true}};
    struct mime_result m = msg(true, "user1@remote.example");
    struct verdict v = run(IN, "user1@remote.example", r, 1, &m);
    CHECK(v.action == VERDICT_DISCARD);
    CHECK_STR(logbuf, "WARN filtermail::inbound Disabled recipient: user2@example.org; "
                      "removing from RCPT TO\n"
                      "INFO filtermail::inbound Incoming: Filtering encrypted mail.\n"
                      "WARN filtermail::smtp_server Dropping mail; All recipients disabled.\n");
}

static void test_incoming_origin(void)
{
    struct verdict_rcpt r[] = {{.addr = "user2@example.org", .enforce_e2ee = true}};
    struct mime_result m = msg(true, "user1@remote.example");
    struct verdict_input in;
    struct verdict v;
    static const struct {
        enum verdict_origin origin;
        enum verdict_action action;
        const char *code, *xcode, *text;
    } cases[] = {
        {ORIGIN_PASS, VERDICT_ACCEPT, "", "", ""},
        {ORIGIN_SKIPPED, VERDICT_ACCEPT, "", "", ""},
        {ORIGIN_NO_SIGNATURE, VERDICT_REJECT, "554", "5.7.1", "No DKIM signature found"},
        {ORIGIN_NO_VALID_SIGNATURE, VERDICT_REJECT, "554", "5.7.1",
         "No valid DKIM signature found"},
        {ORIGIN_TEMPFAIL, VERDICT_TEMPFAIL, "451", "4.7.5",
         "DKIM key lookup failed, try again later"},
    };

    memset(&in, 0, sizeof(in));
    in.dir = IN;
    in.sender = "user1@remote.example";
    in.rcpts = r;
    in.nrcpts = 1;
    in.msg = &m;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        in.origin = cases[i].origin;
        verdict_decide(&in, &v, NULL, NULL);
        check_reply(&v, cases[i].action, cases[i].code, cases[i].xcode, cases[i].text);
    }
    /* Domain literals skip the origin check; no DKIM result matters. */
    m = msg(true, "one@[192.0.2.0]");
    in.sender = "one@[192.0.2.0]";
    in.origin = ORIGIN_NO_SIGNATURE;
    verdict_decide(&in, &v, NULL, NULL);
    CHECK(v.action == VERDICT_ACCEPT);
    /* The encryption check comes first: cleartext is refused with 523, not 554. */
    m = msg(false, "user1@remote.example");
    in.sender = "user1@remote.example";
    verdict_decide(&in, &v, NULL, NULL);
    CHECK(strcmp(v.code, "523") == 0);
    /* A From that does not split on a single '@': 553. */
    m = msg(true, "a@b@remote.example");
    in.origin = ORIGIN_PASS;
    verdict_decide(&in, &v, NULL, NULL);
    check_reply(&v, VERDICT_REJECT, "553", "", "Invalid email address: a@b@remote.example");

    /* The signatures were checked against the From field as received; the
     * policy judges the decoded field. A passing signature counts only when
     * both name the same domain (ASCII case aside). */
    static const struct {
        const char *policy_from, *origin_domain;
        enum verdict_action action;
    } align[] = {
        {"user1@remote.example", "remote.example", VERDICT_ACCEPT},
        {"user1@Remote.EXAMPLE", "remote.example", VERDICT_ACCEPT},
        /* e.g. From: =?us-ascii?q?a=40bank.example=2C?= x@evil.example */
        {"a@bank.example", "evil.example", VERDICT_REJECT},
        {"user1@remote.example", "remote.example.evil", VERDICT_REJECT},
        {"user1@remote.example", "", VERDICT_REJECT},
        {"one@[192.0.2.0]", "", VERDICT_ACCEPT}, /* literals: no origin check */
    };
    for (size_t i = 0; i < sizeof(align) / sizeof(align[0]); i++) {
        m = msg(true, align[i].policy_from);
        in.sender = align[i].policy_from;
        in.origin = ORIGIN_PASS;
        in.origin_domain = align[i].origin_domain;
        verdict_decide(&in, &v, NULL, NULL);
        CHECKF(v.action == align[i].action, "%s vs %s: action %d %s", align[i].policy_from,
               align[i].origin_domain, v.action, v.text);
        if (align[i].action == VERDICT_REJECT)
            check_reply(&v, VERDICT_REJECT, "554", "5.7.1", "No valid DKIM signature found");
    }
    in.origin_domain = NULL;
}

static int origin_calls;
static enum verdict_origin counted_origin(void *ctx)
{
    origin_calls++;
    return *(enum verdict_origin *)ctx;
}

/* The lazy origin check runs only when the policy needs it. */
static void test_incoming_origin_lazy(void)
{
    struct verdict_rcpt r[] = {{.addr = "user2@example.org", .enforce_e2ee = true}};
    struct mime_result m = msg(false, "user1@remote.example");
    enum verdict_origin o = ORIGIN_NO_SIGNATURE;
    struct verdict_input in;
    struct verdict v;

    memset(&in, 0, sizeof(in));
    in.dir = IN;
    in.sender = "user1@remote.example";
    in.rcpts = r;
    in.nrcpts = 1;
    in.msg = &m;
    in.origin = ORIGIN_PASS; /* ignored when origin_fn is set */
    in.origin_fn = counted_origin;
    in.origin_ctx = &o;
    origin_calls = 0;
    verdict_decide(&in, &v, NULL, NULL); /* cleartext: 523 before any lookup */
    CHECK(strcmp(v.code, "523") == 0);
    CHECK_INT(origin_calls, 0);
    m = msg(true, "one@[192.0.2.0]");
    in.sender = "one@[192.0.2.0]";
    verdict_decide(&in, &v, NULL, NULL); /* domain literal: never looked up */
    CHECK(v.action == VERDICT_ACCEPT);
    CHECK_INT(origin_calls, 0);
    m = msg(true, "user1@remote.example");
    in.sender = "user1@remote.example";
    verdict_decide(&in, &v, NULL, NULL);
    CHECK_INT(origin_calls, 1);
    check_reply(&v, VERDICT_REJECT, "554", "5.7.1", "No DKIM signature found");
}

static void test_direction(void)
{
    char *names[] = {"ORIGINATING", "SUBMISSIONS"};
    struct config_list list = {.items = names, .n = 2};
    static const struct {
        const char *auth, *daemon;
        enum armor_direction want;
    } cases[] = {
        {NULL, NULL, ARMOR_INCOMING},
        {"", "INBOUND", ARMOR_INCOMING},
        {NULL, "ORIGINATING", ARMOR_OUTGOING},
        {NULL, "SUBMISSIONS", ARMOR_OUTGOING},
        {NULL, "originating", ARMOR_INCOMING}, /* names are exact, as Postfix sends them */
        {NULL, "ORIGINATING ", ARMOR_INCOMING},
        /* Authenticated: outgoing whatever the daemon name, a missing or a
         * misconfigured one included. */
        {"alice@example.org", NULL, ARMOR_OUTGOING},
        {"alice@example.org", "INBOUND", ARMOR_OUTGOING},
        {"alice@example.org", "", ARMOR_OUTGOING},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECKF(verdict_direction(cases[i].auth, cases[i].daemon, &list) == cases[i].want,
               "auth %s, daemon %s", cases[i].auth ? cases[i].auth : "(none)",
               cases[i].daemon ? cases[i].daemon : "(none)");
    struct config_list empty = {0};
    CHECK(verdict_direction(NULL, "ORIGINATING", &empty) == ARMOR_INCOMING);
    CHECK(verdict_direction("bob", NULL, &empty) == ARMOR_OUTGOING);
}

static void test_errors(void)
{
    struct verdict_rcpt r[] = {{.addr = "user2@example.org", .disabled = true}};
    struct mime_result m = msg(true, "user1@example.org");
    struct verdict_input in;
    struct verdict v;

    memset(&in, 0, sizeof(in));
    in.dir = OUT;
    in.sender = "user1@example.org";
    in.rcpts = r;
    in.nrcpts = 1;
    in.msg = &m;
    in.oversize = true;
    verdict_decide(&in, &v, NULL, NULL);
    check_reply(&v, VERDICT_REJECT, "552", "", "Message exceeds maximum size");
    CHECK(!r[0].remove); /* nothing is removed from a refused message */
    in.oversize = false;

    m.parse_error = "Header cannot start with a space; it is likely an overhanging line from a "
                    "previous header";
    verdict_decide(&in, &v, NULL, NULL);
    check_reply(&v, VERDICT_REJECT, "500", "",
                "Failed to parse message: Header cannot start with a space; it is likely an "
                "overhanging line from a previous header");
    m.parse_error = NULL;
    m.internal_error = true;
    verdict_decide(&in, &v, NULL, NULL);
    CHECK(v.action == VERDICT_TEMPFAIL && strcmp(v.code, "451") == 0);
}

int main(void)
{
    UNIT_RUN(test_outgoing_basic);
    UNIT_RUN(test_outgoing_from);
    UNIT_RUN(test_outgoing_asm);
    UNIT_RUN(test_outgoing_disabled);
    UNIT_RUN(test_outgoing_passthrough);
    UNIT_RUN(test_incoming);
    UNIT_RUN(test_incoming_mailer_daemon);
    UNIT_RUN(test_incoming_disabled);
    UNIT_RUN(test_direction);
    UNIT_RUN(test_incoming_origin);
    UNIT_RUN(test_incoming_origin_lazy);
    UNIT_RUN(test_errors);
    return unit_summary();
}
