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

int main(void)
{
    UNIT_RUN(test_valid);
    UNIT_RUN(test_outcomes);
    UNIT_RUN(test_from_reply);
    return unit_summary();
}
