/* Tests for milter/reply.c: '%' doubling and the 980-byte reply budget. */
#include "reply.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

static void test_escape(void)
{
    static const struct {
        const char *name, *code, *xcode, *text, *want;
    } cases[] = {
        {"plain", "523", "", "Encryption Needed: Invalid Unencrypted Mail",
         "Encryption Needed: Invalid Unencrypted Mail"},
        {"percent doubled", "500", "", "Invalid FROM <a%b@x> for <c%%d@y>",
         "Invalid FROM <a%%b@x> for <c%%%%d@y>"},
        {"empty", "451", "4.3.0", "", ""},
    };
    char out[REPLY_MAX + 1];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECKF(strcmp(reply_escape(cases[i].code, cases[i].xcode, cases[i].text, out),
                      cases[i].want) == 0,
               "%s: got \"%s\"", cases[i].name, out);
}

/* The whole reply ("554 5.7.1 " + text) stays within REPLY_MAX, and a cut
 * never leaves half of a doubled '%'. */
static void test_budget(void)
{
    char text[3000], out[REPLY_MAX + 1];
    memset(text, 'a', sizeof(text) - 1);
    text[sizeof(text) - 1] = '\0';
    reply_escape("554", "5.7.1", text, out);
    CHECK_INT(strlen("554 5.7.1 ") + strlen(out), REPLY_MAX);
    reply_escape("500", "", text, out);
    CHECK_INT(strlen("500 ") + strlen(out), REPLY_MAX);
    for (size_t i = 0; i < sizeof(text) - 1; i++)
        text[i] = '%';
    for (size_t skew = 0; skew < 2; skew++) {
        reply_escape(skew ? "55" : "554", "5.7.1", text, out);
        size_t n = strlen(out);
        CHECKF(n % 2 == 0, "a doubled %% cut in half (%zu)", n);
        CHECK(strlen(skew ? "55 5.7.1 " : "554 5.7.1 ") + n <= REPLY_MAX);
        CHECK(n + 2 + strlen(skew ? "55 5.7.1 " : "554 5.7.1 ") > REPLY_MAX);
    }
}

int main(void)
{
    UNIT_RUN(test_escape);
    UNIT_RUN(test_budget);
    return unit_summary();
}
