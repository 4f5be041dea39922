/* Tests for milter/hfield.c: header fields rebuilt as they were in the
 * message from Postfix's name and value. */
#include "hfield.h"
#include "unit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void test_build(void)
{
    static const struct {
        const char *name, *hname, *value;
        bool leadspc;
        const char *want;
    } cases[] = {
        {"leading space kept", "Subject", " hi", true, "Subject: hi\r\n"},
        {"no space kept", "Subject", "hi", true, "Subject:hi\r\n"},
        {"without LEADSPC", "Subject", "hi", false, "Subject: hi\r\n"},
        {"folded with LF", "To", " a@b,\n\tc@d", true, "To: a@b,\r\n\tc@d\r\n"},
        {"folded with CRLF", "To", " a@b,\r\n c@d", true, "To: a@b,\r\n c@d\r\n"},
        {"empty value", "X-Empty", "", true, "X-Empty:\r\n"},
        {"trailing LF", "X", " v\n", true, "X: v\r\n\r\n"},
    };
    struct buf f;
    buf_init(&f, 4096);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        CHECK_INT(hfield_build(&f, cases[i].hname, cases[i].value, cases[i].leadspc), 0);
        CHECKF(f.len == strlen(cases[i].want) && memcmp(f.data, cases[i].want, f.len) == 0,
               "%s: got \"%.*s\"", cases[i].name, (int)f.len, f.data);
    }
    buf_free(&f);
}

/* Longer than the buffer's maximum: ENOBUFS (the message's fault, 552). */
static void test_too_long(void)
{
    struct buf f;
    buf_init(&f, 100);
    char v[200];
    memset(v, 'v', sizeof(v) - 1);
    v[sizeof(v) - 1] = '\0';
    errno = 0;
    CHECK_INT(hfield_build(&f, "X-Long", v, true), -1);
    CHECK_INT(errno, ENOBUFS);
    /* Exactly at the limit still fits: 6 + 1 + 91 + 2 = 100. */
    v[91] = '\0';
    CHECK_INT(hfield_build(&f, "X-Long", v, true), 0);
    CHECK_INT(f.len, 100);
    buf_free(&f);
}

int main(void)
{
    UNIT_RUN(test_build);
    UNIT_RUN(test_too_long);
    return unit_summary();
}
