/* Tests for pipe-transport/dsn.c: what pipe(8) is told. */
#include "dsn.h"
#include "unit.h"

#include <string.h>

static struct smtp_reply reply(int code, const char *enhanced, const char *text)
{
    struct smtp_reply r;
    memset(&r, 0, sizeof(r));
    r.code = code;
    strcpy(r.enhanced, enhanced);
    strcpy(r.text, text);
    r.len = strlen(text);
    r.nlines = 1;
    return r;
}

static void test_valid(void)
{
    CHECK(dsn_valid("4.4.1"));
    CHECK(dsn_valid("5.1.10"));
    CHECK(dsn_valid("2.0.0"));
    CHECK(dsn_valid("5.123.456"));
    CHECK(!dsn_valid("3.0.0"));
    CHECK(!dsn_valid("5.1"));
    CHECK(!dsn_valid("5.1.1.1"));
    CHECK(!dsn_valid("5..1"));
    CHECK(!dsn_valid("5.1234.1"));
    CHECK(!dsn_valid("5.1.x"));
}

static void test_outcomes(void)
{
    struct outcome o;
    char line[2000];
    outcome_set(&o, OUTCOME_TEMPFAIL, "4.4.1", "connect to %s: %s", "mx", "refused\nagain\x01");
    CHECK_STR(o.dsn, "4.4.1");
    CHECK_STR(o.text, "connect to mx: refused again?");
    CHECK_INT(dsn_exit_status(&o), 75);
    dsn_format(&o, line, sizeof(line));
    CHECK_STR(line, "4.4.1 connect to mx: refused again?\n");
    /* A code of the wrong class is replaced: never bounce by mistake. */
    outcome_set(&o, OUTCOME_TEMPFAIL, "5.1.1", "x");
    CHECK_STR(o.dsn, "4.0.0");
    outcome_set(&o, OUTCOME_BOUNCE, "bogus", "x");
    CHECK_STR(o.dsn, "5.0.0");
    CHECK_INT(dsn_exit_status(&o), 69);
    outcome_set(&o, OUTCOME_BOUNCE, "5.1.2", "no such domain");
    CHECK_INT(dsn_exit_status(&o), 68);
    outcome_set(&o, OUTCOME_DELIVERED, "2.0.0", "5.1.1 looks like a code");
    CHECK_INT(dsn_exit_status(&o), 0);
    dsn_format(&o, line, sizeof(line));
    CHECK_STR(line, "_.1.1 looks like a code\n");
    /* Long text is cut and the line still ends. */
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    outcome_set(&o, OUTCOME_TEMPFAIL, "4.0.0", "%s", big);
    CHECK_INT(strlen(o.text), DSN_TEXT_MAX);
    size_t n = dsn_format(&o, line, 100);
    CHECK_INT(n, 99);
    CHECK(line[98] == '\n');
}

static void test_from_reply(void)
{
    struct outcome o;
    struct smtp_reply r = reply(550, "5.1.1", "5.1.1 <bob@x>: unknown");
    outcome_from_reply(&o, &r, "mx.x", "192.0.2.1", "RCPT TO");
    CHECK(o.cls == OUTCOME_BOUNCE);
    CHECK_STR(o.dsn, "5.1.1");
    CHECK_STR(o.text, "host mx.x[192.0.2.1] said: 550 5.1.1 <bob@x>: unknown (in reply to RCPT TO)");
    r = reply(451, "", "try later");
    outcome_from_reply(&o, &r, "mx.x", "192.0.2.1", "end of DATA");
    CHECK(o.cls == OUTCOME_TEMPFAIL);
    CHECK_STR(o.dsn, "4.0.0");
    CHECK_INT(dsn_exit_status(&o), 75);
    r = reply(554, "4.7.1", "4.7.1 odd");
    outcome_from_reply(&o, &r, "mx.x", "192.0.2.1", "MAIL FROM");
    CHECK_STR(o.dsn, "5.0.0");
}

/* The outcome when no mail server settled the delivery. */
static void test_from_attempts(void)
{
    static const struct {
        const char *name;
        size_t hosts, tried, noaddr, skipped;
        const char *dsn, *text; /* the last failure, NULL: none */
        int status;
        const char *want;
    } cases[] = {
        {"no server has an address", 2, 0, 2, 0, "4.4.4", "no address for mx2.example.org",
         DSN_EX_UNAVAILABLE, "5.4.4 no address for the mail servers of example.org\n"},
        {"the only server has no address", 1, 0, 1, 0, "4.4.4", "no address for mx.example.org",
         DSN_EX_UNAVAILABLE, "5.4.4 no address for the mail server of example.org\n"},
        {"one without an address, one refused", 2, 1, 1, 0, "4.4.1",
         "connect to mx.example.org: 192.0.2.1:25: Connection refused", DSN_EX_TEMPFAIL,
         "4.4.1 Failed to connect to any mail server for example.org; last attempt: connect to "
         "mx.example.org: 192.0.2.1:25: Connection refused\n"},
        {"all skipped", 2, 0, 0, 2, NULL, NULL, DSN_EX_TEMPFAIL,
         "4.4.1 every mail server of example.org failed to answer in the last 600 s; not tried "
         "again yet\n"},
        {"skipped, then DNS failed", 2, 0, 0, 1, "4.4.3", "DNS resolution failed for mx2: SERVFAIL",
         DSN_EX_TEMPFAIL,
         "4.4.3 Failed to connect to any mail server for example.org; last attempt: DNS "
         "resolution failed for mx2: SERVFAIL\n"},
        {"TLS failed", 1, 1, 0, 0, "4.7.5", "TLS failure with mx[192.0.2.1]: bad certificate",
         DSN_EX_TEMPFAIL,
         "4.7.5 Failed to connect to any mail server for example.org; last attempt: TLS failure "
         "with mx[192.0.2.1]: bad certificate\n"},
        {"deadline", 3, 1, 0, 0, "4.4.7", "delivery deadline of 300 s reached", DSN_EX_TEMPFAIL,
         "4.4.7 Failed to connect to any mail server for example.org; last attempt: delivery "
         "deadline of 300 s reached\n"},
        /* A code longer than five characters is kept whole, not sliced. */
        {"long code", 1, 1, 0, 0, "4.4.10", "x", DSN_EX_TEMPFAIL,
         "4.4.10 Failed to connect to any mail server for example.org; last attempt: x\n"},
        /* A code that is not temporary cannot make a bounce of a connect failure. */
        {"bad code", 1, 1, 0, 0, "5.1.1", "x", DSN_EX_TEMPFAIL,
         "4.0.0 Failed to connect to any mail server for example.org; last attempt: x\n"},
        {"nothing at all", 0, 0, 0, 0, NULL, NULL, DSN_EX_TEMPFAIL,
         "4.4.1 no mail server to try for example.org\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct attempts a = {.hosts = cases[i].hosts, .tried = cases[i].tried,
                             .noaddr = cases[i].noaddr, .skipped = cases[i].skipped};
        struct outcome o;
        char line[1200];
        if (cases[i].dsn != NULL)
            attempts_note(&a, cases[i].dsn, "%s", cases[i].text);
        outcome_from_attempts(&o, &a, "example.org", 600);
        dsn_format(&o, line, sizeof(line));
        CHECKF(strcmp(line, cases[i].want) == 0, "%s: %s", cases[i].name, line);
        CHECKF(dsn_exit_status(&o) == cases[i].status, "%s: status %d", cases[i].name,
               dsn_exit_status(&o));
    }
    /* The last note is the one reported. */
    struct attempts a = {.hosts = 2, .tried = 2};
    struct outcome o;
    attempts_note(&a, "4.4.1", "first");
    attempts_note(&a, "4.4.2", "second %d", 2);
    outcome_from_attempts(&o, &a, "example.org", 600);
    CHECK_STR(o.dsn, "4.4.2");
    CHECK(strstr(o.text, "last attempt: second 2") != NULL);
}

int main(void)
{
    UNIT_RUN(test_valid);
    UNIT_RUN(test_outcomes);
    UNIT_RUN(test_from_reply);
    UNIT_RUN(test_from_attempts);
    return unit_summary();
}
