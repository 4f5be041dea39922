/* Tests for pipe-transport/spool.c: SMTP transparent form, bounded spooling. */
#include "clock.h"
#include "spool.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const struct {
    const char *name, *in, *want;
    bool eightbit;
} cases[] = {
    {"empty", "", "", false},
    {"crlf kept", "a\r\nb\r\n", "a\r\nb\r\n", false},
    {"bare lf", "a\nb\n", "a\r\nb\r\n", false},
    {"bare cr", "a\rb\r", "a\r\nb\r\n", false},
    {"no final newline", "a\r\nb", "a\r\nb\r\n", false},
    {"leading dot", ".x\r\n..y\r\n.\r\n", "..x\r\n...y\r\n..\r\n", false},
    {"dot after lf", "a\n.\n", "a\r\n..\r\n", false},
    {"dot after bare cr", "a\r.b", "a\r\n..b\r\n", false},
    {"dot mid line", "a.b\r\n", "a.b\r\n", false},
    {"cr cr lf", "a\r\r\n", "a\r\n\r\n", false},
    {"eight bit", "\xc3\xa4\r\n", "\xc3\xa4\r\n", true},
    {"final cr", "a\r", "a\r\n", false},
};

static size_t encode_all(const char *in, size_t n, bool bytewise, unsigned char *out,
                         bool *eightbit)
{
    struct spool_encoder e;
    size_t o = 0;
    spool_encoder_init(&e);
    if (bytewise) {
        for (size_t i = 0; i < n; i++)
            o += spool_encode(&e, (const unsigned char *)in + i, 1, out + o);
    } else {
        o += spool_encode(&e, (const unsigned char *)in, n, out + o);
    }
    o += spool_encode_finish(&e, out + o);
    *eightbit = e.eightbit;
    return o;
}

static void test_encoder(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = strlen(cases[i].in);
        unsigned char out[256];
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            bool eb;
            size_t o = encode_all(cases[i].in, n, bytewise, out, &eb);
            CHECKF(o <= SPOOL_ENCODE_MAX(n), "%s: %zu bytes", cases[i].name, o);
            CHECKF(o == strlen(cases[i].want) && memcmp(out, cases[i].want, o) == 0,
                   "%s (bytewise %d): got %.*s", cases[i].name, bytewise, (int)o, out);
            CHECKF(eb == cases[i].eightbit, "%s: eightbit", cases[i].name);
        }
    }
}

/* The worst case of the output bound: every byte expands. */
static void test_bound(void)
{
    const char *worst[] = {"\n\n\n\n", "\r.\r.\r.", ".\n.\n.\n", "\r\r\r\r"};
    for (size_t i = 0; i < 4; i++) {
        unsigned char out[64];
        bool eb;
        size_t n = strlen(worst[i]);
        size_t o = encode_all(worst[i], n, false, out, &eb);
        CHECKF(o <= SPOOL_ENCODE_MAX(n), "worst %zu: %zu > %zu", i, o, SPOOL_ENCODE_MAX(n));
    }
}

static void test_spool_file(void)
{
    char err[256];
    struct spool s;
    const char msg[] = "Subject: x\n\n.dot\nbody";
    CHECK(spool_from_bytes(msg, strlen(msg), "/nonexistent-dir", &s, err, sizeof(err)) ==
          SPOOL_OK);
    const char want[] = "Subject: x\r\n\r\n..dot\r\nbody\r\n";
    CHECK_INT(s.size, strlen(want));
    char buf[128] = "";
    CHECK_INT(spool_read(&s, 0, buf, sizeof(buf)), strlen(want));
    CHECK(memcmp(buf, want, strlen(want)) == 0);
    CHECK_INT(spool_read(&s, 5, buf, 3), 3);
    CHECK(memcmp(buf, "ct:", 3) == 0);
    CHECK_INT(spool_read(&s, s.size, buf, 3), 0);
    spool_close(&s);
    CHECK(s.fd == -1);
}

/* stdin larger than the limit is refused without being read whole. */
static void test_spool_limit(void)
{
    int p[2];
    char err[256];
    struct spool s;
    CHECK(pipe(p) == 0);
    char big[4096];
    memset(big, 'a', sizeof(big));
    CHECK(write(p[1], big, sizeof(big)) == (ssize_t)sizeof(big));
    close(p[1]);
    CHECK(spool_from_fd(p[0], NULL, 1000, INT64_MAX, &s, err, sizeof(err)) == SPOOL_TOO_BIG);
    CHECK(strstr(err, "1000") != NULL);
    close(p[0]);

    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "a\nb", 3) == 3);
    close(p[1]);
    CHECK(spool_from_fd(p[0], "/tmp", 3, INT64_MAX, &s, err, sizeof(err)) == SPOOL_OK);
    CHECK_INT(s.size, 6);
    spool_close(&s);
    close(p[0]);
}

/* A writer that sends part of the message and then stalls, its end still
 * open, costs the reader its deadline, not a thread for ever. */
static void test_spool_stalled_writer(void)
{
    int p[2];
    char err[256];
    struct spool s;
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "From: a\r\n", 9) == 9);
    int64_t t0 = (int64_t)clock_mono_ms();
    CHECK(spool_from_fd(p[0], NULL, 1000, t0 + 200, &s, err, sizeof(err)) == SPOOL_ERROR);
    int64_t took = (int64_t)clock_mono_ms() - t0;
    CHECKF(took >= 190 && took < 5000, "took %lld ms", (long long)took);
    CHECK(strstr(err, "deadline") != NULL);
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    UNIT_RUN(test_encoder);
    UNIT_RUN(test_bound);
    UNIT_RUN(test_spool_file);
    UNIT_RUN(test_spool_limit);
    UNIT_RUN(test_spool_stalled_writer);
    return unit_summary();
}
