/* Tests for base64.c: the three decoders (armor, MIME, encoded word), whole
 * and one byte at a time. */
#include "base64.h"
#include "unit.h"

#include <string.h>

static const struct {
    enum base64_mode mode;
    const char *in;
    bool ok;
    const char *out;
} cases[] = {
    {BASE64_ARMOR, "", true, ""},
    {BASE64_ARMOR, "aGVsbG8=", true, "hello"},
    {BASE64_ARMOR, "aGVsbA==", true, "hell"},
    {BASE64_ARMOR, "aGVs", true, "hel"},
    {BASE64_ARMOR, "aGV\r\nsbG8=\r\n", true, "hello"},
    {BASE64_ARMOR, "aGVsbG9=", false, NULL},     /* non-zero trailing bits */
    {BASE64_ARMOR, "aGVsbB==", false, NULL},     /* non-zero trailing bits */
    {BASE64_ARMOR, "aGVsbG8", false, NULL},      /* missing padding */
    {BASE64_ARMOR, "aGVsbA=", false, NULL},      /* short padding */
    {BASE64_ARMOR, "aGVsbA==aGVs", false, NULL}, /* data after padding */
    {BASE64_ARMOR, "aGVsbA===", false, NULL},
    {BASE64_ARMOR, "aGVs bG8=", false, NULL}, /* space */
    {BASE64_ARMOR, "aGVs\tbG8=", false, NULL},
    {BASE64_ARMOR, "a===", false, NULL},
    {BASE64_ARMOR, "====", false, NULL},
    {BASE64_ARMOR, "aG=s", false, NULL},
    {BASE64_ARMOR, "aGVsbG8-", false, NULL}, /* url-safe alphabet */
    {BASE64_MIME, "aGVs bG8=\r\n", true, "hello"},
    {BASE64_MIME, "aGVs\tbG8=\f", true, "hello"},
    {BASE64_MIME, "aGVsbG9=", true, "hello"},       /* trailing bits ignored */
    {BASE64_MIME, "aGVsbA==aGVs", true, "hellhel"}, /* concatenated */
    {BASE64_MIME, "aGVsbG8", false, NULL},
    {BASE64_MIME, "aGVs\vbG8=", false, NULL}, /* VT is not ASCII whitespace */
    {BASE64_MIME, "aG!s", false, NULL},
    {BASE64_WORD, "aGVsbG8=", true, "hello"},
    {BASE64_WORD, "aGVs bG8=", false, NULL},
};

static void run(size_t i, bool bytewise)
{
    struct base64_dec d;
    unsigned char out[256];
    size_t n = strlen(cases[i].in), o = 0;

    base64_init(&d, cases[i].mode);
    if (bytewise) {
        for (size_t k = 0; k < n; k++)
            o += base64_decode(&d, cases[i].in + k, 1, out + o);
    } else {
        o = base64_decode(&d, cases[i].in, n, out);
    }
    bool ok = base64_finish(&d);
    CHECKF(ok == cases[i].ok, "case %zu \"%s\" bytewise=%d", i, cases[i].in, bytewise);
    if (ok && cases[i].out != NULL)
        CHECKF(o == strlen(cases[i].out) && memcmp(out, cases[i].out, o) == 0, "case %zu output",
               i);
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        run(i, false);
        run(i, true);
    }
}

/* The fast path and the byte path agree on long input with line breaks. */
static void test_long(void)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char in[6600];
    unsigned char a[5000], b[5000];
    size_t n = 0, oa, ob = 0;
    struct base64_dec d;

    for (int line = 0; line < 100; line++) {
        for (int k = 0; k < 64; k++)
            in[n++] = alpha[(line * 7 + k * 13) % 64];
        in[n++] = '\r';
        in[n++] = '\n';
    }
    base64_init(&d, BASE64_ARMOR);
    oa = base64_decode(&d, in, n, a);
    CHECK(base64_finish(&d));
    base64_init(&d, BASE64_ARMOR);
    for (size_t k = 0; k < n; k += 3)
        ob += base64_decode(&d, in + k, n - k < 3 ? n - k : 3, b + ob);
    CHECK(base64_finish(&d));
    CHECK_INT(oa, 4800);
    CHECK(oa == ob && memcmp(a, b, oa) == 0);
}

int main(void)
{
    UNIT_RUN(test_table);
    UNIT_RUN(test_long);
    return unit_summary();
}
