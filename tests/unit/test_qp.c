/* Tests for qp.c: robust quoted-printable as the Rust quoted_printable crate
 * decodes it, whole and one byte at a time. */
#include "qp.h"
#include "unit.h"

#include <string.h>

static const struct {
    const char *in, *out;
} cases[] = {
    {"hello world", "hello world"},
    {"hello=3Dworld=0D=0A", "hello=world\r\n"},
    {"Now's the time =\r\nfor all", "Now's the time for all"},
    {"hello world   \r\ngoodbye world   ", "hello world\r\ngoodbye world"},
    {"hello world   \r\ngoodbye world =  \r\nx", "hello world\r\ngoodbye world x"},
    {"hello world=x", "hello world=x"}, /* invalid escapes pass through */
    {"hello =world=", "hello =world"},
    {"hello world=3d", "hello world="}, /* lowercase hex accepted */
    {"hello world=3m", "hello world=3m"},
    {"hello\xffworld", "helloworld"}, /* bytes outside the range dropped */
    {"a\nb", "a\r\nb"},               /* LF becomes CRLF */
    {"a\r\n", "a"},                   /* no break after the last line */
    {"a\r\n\r\n", "a\r\n"},
    {"Version: 1\r\n", "Version: 1"},
    {"a\rb", "a\rb"}, /* a lone CR inside a line stays */
    {"a\r\rb\r", "a\r\rb"},
    {"=4", "=4"},
    {"=", ""},
    {"a=\nb", "ab"},
    {"\t x \t", "\t x"},
};

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        size_t n = strlen(cases[i].in), o;
        struct qp_dec d;

        o = qp_decode_all(cases[i].in, n, out);
        CHECKF(o == strlen(cases[i].out) && memcmp(out, cases[i].out, o) == 0, "case %zu", i);
        qp_init(&d);
        o = 0;
        for (size_t k = 0; k < n; k++)
            o += qp_decode(&d, cases[i].in + k, 1, out + o);
        o += qp_finish(&d, out + o);
        CHECKF(o == strlen(cases[i].out) && memcmp(out, cases[i].out, o) == 0, "case %zu bytewise",
               i);
    }
}

/* A whitespace run longer than QP_WS_MAX followed by text keeps its start. */
static void test_long_ws(void)
{
    char in[300], out[QP_OUT_MAX(300)];
    size_t o;

    memset(in, ' ', 200);
    in[200] = 'x';
    o = qp_decode_all(in, 201, out);
    CHECK_INT(o, QP_WS_MAX + 1);
    CHECK(out[o - 1] == 'x');
    /* ...and a trailing one costs nothing. */
    o = qp_decode_all(in, 200, out);
    CHECK_INT(o, 0);
}

int main(void)
{
    UNIT_RUN(test_table);
    UNIT_RUN(test_long_ws);
    return unit_summary();
}
