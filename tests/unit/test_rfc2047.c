/* Tests for rfc2047.c: header values as mailparse's get_value gives them. */
#include "rfc2047.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *raw, *want;
} cases[] = {
    {"Autocrypt Setup Message", "Autocrypt Setup Message"},
    {"=?utf-8?q?Autocrypt_Setup_Message?=", "Autocrypt Setup Message"},
    {"=?UTF-8?B?QXV0b2NyeXB0IFNldHVwIE1lc3NhZ2U=?=", "Autocrypt Setup Message"},
    {"=?us-ascii?Q?Autocrypt?= =?us-ascii?Q?_Setup_Message?=", "Autocrypt Setup Message"},
    {"=?iso-8859-1?Q?=A1Hola,_se=F1or!?=", "\xc2\xa1Hola, se\xc3\xb1or!"},
    {"=?latin1?q?caf=E9?=", "caf\xc3\xa9"},
    {"=?windows-1252?q?=80?=", "\xe2\x82\xac"},
    {"=?koi8-r?q?x?=", "=?koi8-r?q?x?="},   /* charset not supported: kept */
    {"=?utf-8?x?abc?=", "=?utf-8?x?abc?="}, /* unknown encoding */
    {"=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="}, /* bad base64 */
    {"a=?utf-8?q?b?=", "a=?utf-8?q?b?="},   /* not at a word boundary */
    {"Hello,\r\n sir", "Hello, sir"},       /* unfolding */
    {"Hello,\r\n\t   sir", "Hello, sir"},
    {"Hello,\n sir", "Hello, sir"},
    {"trailing  ", "trailing  "}, /* trailing whitespace kept */
    {"\tlead", "lead"},
    {"=?utf-8?q?a?=\r\n =?utf-8?q?b?=", "ab"}, /* adjacent words joined */
    {"=?utf-8?q?a?= x =?utf-8?q?b?=", "a x b"},
    {"caf\xe9", "caf\xc3\xa9"}, /* not UTF-8: Latin-1 */
    {"caf\xc3\xa9", "caf\xc3\xa9"},
    {"", ""},
    {"=?", "=?"},
    {"=?utf-8?q?unterminated", "=?utf-8?q?unterminated"},
};

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i].raw), len;
        char *scratch = malloc(RFC2047_SCRATCH(n)), out[512];
        bool trunc;

        len =
            rfc2047_decode(cases[i].raw, n, scratch, RFC2047_SCRATCH(n), out, sizeof(out), &trunc);
        CHECKF(len == strlen(cases[i].want) && memcmp(out, cases[i].want, len) == 0,
               "case %zu: got \"%.*s\"", i, (int)len, out);
        CHECK(!trunc);
        free(scratch);
    }
}

static void test_truncated(void)
{
    const char *raw = "0123456789";
    char scratch[RFC2047_SCRATCH(10)], out[4];
    bool trunc;
    size_t len = rfc2047_decode(raw, 10, scratch, sizeof(scratch), out, sizeof(out), &trunc);

    CHECK_INT(len, 4);
    CHECK(trunc);
}

int main(void)
{
    UNIT_RUN(test_table);
    UNIT_RUN(test_truncated);
    return unit_summary();
}
