/* Tests for mxdeliv/request.c: envelope headers, the streaming body check
 * (spec 3.4's vectors, fed whole and in pieces of every size) and the HTTP
 * status of SMTP replies. */
#include "request.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_envelope(void)
{
    struct request_envelope e;

    /* Defaults: null sender, no recipients. */
    request_envelope_init(&e);
    CHECK_STR(e.sender, "");
    CHECK_INT(e.nrcpts, 0);
    CHECK(e.error == NULL);
    request_envelope_free(&e);

    /* Names in any case; the first sender counts; recipients in order;
     * other headers ignored; spaces around a value are not part of it. */
    request_envelope_init(&e);
    CHECK_INT(request_envelope_header(&e, "Host", "mx.example.org", 14), 0);
    CHECK_INT(request_envelope_header(&e, "x-mail-from", " alice@remote.test\t", 19), 0);
    CHECK_INT(request_envelope_header(&e, "X-MAIL-TO", "two@example.org", 15), 0);
    CHECK_INT(request_envelope_header(&e, "X-Mail-From", "carol@remote.test", 17), 0);
    CHECK_INT(request_envelope_header(&e, "X-Mail-To", "  one@example.org ", 18), 0);
    CHECK_INT(request_envelope_header(&e, "Content-Type", "a b <c>", 7), 0);
    CHECK(e.error == NULL);
    CHECK_STR(e.sender, "alice@remote.test");
    CHECK_INT(e.nrcpts, 2);
    if (e.nrcpts == 2) {
        CHECK_STR(e.rcpts[0], "two@example.org");
        CHECK_STR(e.rcpts[1], "one@example.org");
    }
    request_envelope_free(&e);
    CHECK_INT(e.nrcpts, 0);

    /* "<>" and an empty value are the null sender. */
    request_envelope_init(&e);
    CHECK_INT(request_envelope_header(&e, "X-Mail-From", "<>", 2), 0);
    CHECK_INT(request_envelope_header(&e, "X-Mail-From", "later@remote.test", 17), 0);
    CHECK_STR(e.sender, "");
    request_envelope_free(&e);
    request_envelope_init(&e);
    CHECK_INT(request_envelope_header(&e, "X-Mail-From", "  ", 2), 0);
    CHECK_STR(e.sender, "");
    CHECK(e.error == NULL);
    request_envelope_free(&e);

    /* Refusals: the reply, and everything after is ignored. */
    static const struct {
        const char *name, *value, *want;
    } bad[] = {
        {"X-Mail-To", "a@b> NOTIFY=NEVER", REQUEST_REPLY_BAD_RCPT},
        {"X-Mail-To", "<a@b>", REQUEST_REPLY_BAD_RCPT},
        {"X-Mail-To", "", REQUEST_REPLY_BAD_RCPT},
        {"X-Mail-To", "a@b, c@d", REQUEST_REPLY_BAD_RCPT},
        {"X-Mail-To", "a\x01@b", REQUEST_REPLY_BAD_RCPT},
        {"X-Mail-From", "<a@b>", REQUEST_REPLY_BAD_SENDER},
        {"X-Mail-From", "a b@c", REQUEST_REPLY_BAD_SENDER},
        {"X-Mail-From", "a@b>", REQUEST_REPLY_BAD_SENDER},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        request_envelope_init(&e);
        CHECK_INT(request_envelope_header(&e, "X-Mail-To", "ok@example.org", 14), 0);
        CHECKF(request_envelope_header(&e, bad[i].name, bad[i].value, strlen(bad[i].value)) == -1,
               "%s: %s", bad[i].name, bad[i].value);
        CHECK_STR(e.error, bad[i].want);
        CHECK_INT(request_envelope_header(&e, "X-Mail-To", "more@example.org", 16), 0);
        CHECK_INT(e.nrcpts, 1);
        request_envelope_free(&e);
    }

    /* A bad later X-Mail-From is refused even though it would not count. */
    request_envelope_init(&e);
    CHECK_INT(request_envelope_header(&e, "X-Mail-From", "a@b", 3), 0);
    CHECK_INT(request_envelope_header(&e, "X-Mail-From", "a@b> X=Y", 8), -1);
    CHECK_STR(e.error, REQUEST_REPLY_BAD_SENDER);
    request_envelope_free(&e);

    /* The recipient limit. */
    request_envelope_init(&e);
    for (int i = 0; i < REQUEST_MAX_RCPTS; i++) {
        char a[32];
        int n = snprintf(a, sizeof(a), "u%d@example.org", i);
        if (request_envelope_header(&e, "X-Mail-To", a, (size_t)n) != 0)
            break;
    }
    CHECK_INT(e.nrcpts, REQUEST_MAX_RCPTS);
    CHECK(e.error == NULL);
    CHECK_INT(request_envelope_header(&e, "X-Mail-To", "x@example.org", 13), -1);
    CHECK_STR(e.error, REQUEST_REPLY_TOO_MANY_RCPTS);
    CHECK_STR(e.rcpts[REQUEST_MAX_RCPTS - 1], "u999@example.org");
    request_envelope_free(&e);
}

/* Feeds in (len bytes) in pieces of `piece` bytes; returns the final status
 * and collects what was passed on in fwd (*fwd_len bytes). */
static enum request_body_status run_body(const char *in, size_t len, size_t piece, uint64_t max,
                                         char *fwd, size_t *fwd_len)
{
    struct request_body b;
    struct request_body_out out;
    enum request_body_status st = REQUEST_BODY_OK;
    size_t off = 0;

    *fwd_len = 0;
    request_body_init(&b, max);
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece;
        st = request_body_push(&b, in + off, n, &out);
        if (st != REQUEST_BODY_OK && (out.held_len != 0 || out.len != 0))
            unit_check_failed(__FILE__, __LINE__, "bytes passed on after a refusal");
        if (out.held_len > 0)
            memcpy(fwd + *fwd_len, out.held, out.held_len);
        *fwd_len += out.held_len;
        memcpy(fwd + *fwd_len, in + off, out.len);
        *fwd_len += out.len;
        off += n;
    }
    CHECK_INT(b.size, len);
    (void)st;
    return request_body_finish(&b);
}

/* Spec 3.4 vectors (upstream's unit tests). */
static const struct {
    const char *in;
    bool valid;
} vectors[] = {
    {"", false},
    {".", false},
    {"Hello!\n", false},
    {"Hello!\n\r", false},
    {"Hello\nworld!\r\n", false},
    {"Hello!\r\n\n", false},
    {"Hello\r\n.\r\n", false},
    {"Hello!\r\r\n", false},
    {"Hello!\r\r\n\n", false},
    {"Hello\rworld!\r\n", false},
    {"\n", false},
    {"\nHello\r\n", false},
    {"\r", false},
    {".\r\n", false},
    {".\r\nHello\r\n", false},
    {"..\r\n.\r\n", false},
    {".\r\n..\r\n", false},
    {"\r\n.\r\n", false},
    {"Hello!\r\n .\r\n", true},
    {"Hello!\r\n..\r\n", true},
    {"Hello!\r\n", true},
    {"Hello\r\n.world\r\n", true},
    {"..\r\n..\r\n", true},
    {" .\r\n", true},
    {"..\r\n", true},
    {"\r\n", true},
    /* Ours: the smuggling shapes, a dot line held across pieces. */
    {"a\r\n.\nMAIL FROM:<x@y>\r\n", false},
    {"a\n.\r\nRSET\r\n", false},
    {"a\r\n.\r", false},
    {"a\r\n.", false},
    {"a\r\n..", false},
    {"a\r\n...\r\n", true},
    {"a\r\n.b\r\n.\r\n", false},
    {"a\r\nb\r", false},
};

/* Issue 12 item 6: a folded X-Mail-To reached us as the header name
 * "X-Mail-Toevil@example.org" with the value "two@example.org", was ignored,
 * and the request was answered 200 with no recipient at all. */
static void test_folded_name_refused(void)
{
    static const struct {
        const char *name, *want;
    } cases[] = {
        {"X-Mail-Toevil@example.org", REQUEST_REPLY_BAD_RCPT},
        {"x-mail-to\tevil", REQUEST_REPLY_BAD_RCPT},
        {"X-Mail-Fromevil@example.org", REQUEST_REPLY_BAD_SENDER},
        {"X-Mail-Tos", REQUEST_REPLY_BAD_RCPT},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct request_envelope e;
        request_envelope_init(&e);
        CHECKF(request_envelope_header(&e, cases[i].name, "two@example.org", 15) == -1, "%s",
               cases[i].name);
        CHECK_STR(e.error, cases[i].want);
        CHECK_INT(e.nrcpts, 0);
        request_envelope_free(&e);
    }
    /* Names that merely share a prefix with nothing of ours stay ignored. */
    struct request_envelope e;
    request_envelope_init(&e);
    CHECK_INT(request_envelope_header(&e, "X-Mail", "a b", 3), 0);
    CHECK_INT(request_envelope_header(&e, "X-Mail-T", "a b", 3), 0);
    CHECK(e.error == NULL);
    request_envelope_free(&e);
}

/* Issue 12 item 6: a NUL inside X-Mail-To cut the value, and the request
 * was accepted for the part before it. The buffers below are laid out as
 * libmicrohttpd leaves its read buffer (line ends overwritten with NULs). */
static void test_value_cut_at_nul(void)
{
    /* CRLF line ends: two NULs after the value. */
    static const char crlf[] = "X-Mail-To\0two@example.org\0\0Host\0mx\0\0\0\0";
    const char *v = crlf + 10, *next = crlf + 27;
    CHECK_INT(request_value_len(v, 15, next), 15);
    /* LF line ends: the next header's name right after the one NUL. */
    static const char lf[] = "X-Mail-To\0two@example.org\0Host\0mx\0\0";
    CHECK_INT(request_value_len(lf + 10, 15, lf + 26), 15);
    /* The last header, then the empty line. */
    CHECK_INT(request_value_len(lf + 31, 2, NULL), 2);
    /* A NUL from the client, then more: the whole line counts, and the
     * address check refuses it. */
    static const char nul[] = "X-Mail-To\0two@example.org\0evil@example.org\0\0Host\0mx\0\0\0\0";
    size_t n = request_value_len(nul + 10, 15, nul + 44);
    CHECK_INT(n, 32);
    struct request_envelope e;
    request_envelope_init(&e);
    CHECK_INT(request_envelope_header(&e, "X-Mail-To", nul + 10, n), -1);
    CHECK_STR(e.error, REQUEST_REPLY_BAD_RCPT);
    request_envelope_free(&e);
    /* Also as the last header (no next name), and with LF line ends. */
    static const char last[] = "X-Mail-To\0a@b\0c\0\0\0";
    CHECK_INT(request_value_len(last + 10, 3, NULL), 5);
    static const char lfnext[] = "X-Mail-To\0a@b\0c\0Host\0mx\0\0";
    CHECK_INT(request_value_len(lfnext + 10, 3, lfnext + 16), 5);
}

static void test_body_vectors(void)
{
    char fwd[256];
    size_t fwd_len;

    for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++) {
        const char *in = vectors[i].in;
        size_t len = strlen(in);
        enum request_body_status want = vectors[i].valid ? REQUEST_BODY_OK : REQUEST_BODY_INVALID;
        for (size_t piece = 1; piece <= (len ? len : 1); piece++) {
            enum request_body_status got = run_body(in, len, piece, 1000, fwd, &fwd_len);
            CHECKF(got == want, "vector %zu piece %zu: status %d, want %d", i, piece, got, want);
            /* What was passed on is a prefix, and all of it when valid. */
            CHECKF(fwd_len <= len && memcmp(fwd, in, fwd_len) == 0, "vector %zu piece %zu", i,
                   piece);
            if (want == REQUEST_BODY_OK)
                CHECKF(fwd_len == len, "vector %zu piece %zu: passed on %zu of %zu", i, piece,
                       fwd_len, len);
            /* Never an end of data, whatever Postfix takes for a line end. */
            fwd[fwd_len] = '\0';
            CHECKF(strstr(fwd, "\n.\r\n") == NULL && strstr(fwd, "\n.\n") == NULL &&
                       strncmp(fwd, ".\r\n", 3) != 0 && strncmp(fwd, ".\n", 2) != 0,
                   "vector %zu piece %zu passed on an end of data", i, piece);
        }
    }
}

static void test_body_holds_back(void)
{
    struct request_body b;
    struct request_body_out out;

    request_body_init(&b, 1000);
    CHECK_INT(request_body_push(&b, "ab\r", 3, &out), REQUEST_BODY_OK);
    CHECK_INT(out.held_len, 0);
    CHECK_INT(out.len, 2); /* the CR waits for its LF */
    CHECK_INT(request_body_push(&b, "\n.", 2, &out), REQUEST_BODY_OK);
    CHECK_INT(out.held_len, 1);
    CHECK(out.held != NULL && out.held[0] == '\r');
    CHECK_INT(out.len, 1); /* the line-start dot waits */
    CHECK_INT(request_body_finish(&b), REQUEST_BODY_INVALID);
    CHECK_INT(request_body_push(&b, ".x\r\n", 4, &out), REQUEST_BODY_OK);
    CHECK_INT(out.held_len, 1);
    CHECK(out.held != NULL && out.held[0] == '.');
    CHECK_INT(out.len, 4);
    CHECK_INT(request_body_finish(&b), REQUEST_BODY_OK);
    CHECK_INT(b.size, 9);
}

static void test_body_size(void)
{
    char fwd[64];
    size_t fwd_len;
    const char *msg = "Subject: x\r\n\r\nbody\r\n"; /* 20 bytes */

    for (size_t piece = 1; piece <= 20; piece++) {
        CHECK_INT(run_body(msg, 20, piece, 20, fwd, &fwd_len), REQUEST_BODY_OK);
        CHECK_INT(run_body(msg, 20, piece, 19, fwd, &fwd_len), REQUEST_BODY_TOO_BIG);
        CHECK(fwd_len <= 19);
        /* Too big wins over invalid, wherever the invalid byte is. */
        CHECK_INT(run_body("a\nbcdefghij", 11, piece, 10, fwd, &fwd_len), REQUEST_BODY_TOO_BIG);
        CHECK_INT(run_body("abcdefghij\n", 11, piece, 10, fwd, &fwd_len), REQUEST_BODY_TOO_BIG);
    }
    /* The limit 0 refuses any body. */
    CHECK_INT(run_body("\r\n", 2, 2, 0, fwd, &fwd_len), REQUEST_BODY_TOO_BIG);
}

static void test_http_status(void)
{
    CHECK_INT(request_http_status(250), 200);
    CHECK_INT(request_http_status(251), 200);
    CHECK_INT(request_http_status(523), 400);
    CHECK_INT(request_http_status(554), 400);
    CHECK_INT(request_http_status(501), 400);
    CHECK_INT(request_http_status(500), 400);
    CHECK_INT(request_http_status(552), 413);
    CHECK_INT(request_http_status(450), 503);
    CHECK_INT(request_http_status(451), 503);
    CHECK_INT(request_http_status(421), 503);
    CHECK_INT(request_http_status(354), 503);
    CHECK_INT(request_http_status(0), 503);

    CHECK_INT(request_reply_code("523 Encryption Needed: Invalid Unencrypted Mail"), 523);
    CHECK_INT(request_reply_code("250 OK"), 250);
    CHECK_INT(request_reply_code("451"), 451);
    CHECK_INT(request_reply_code("250-more"), 250);
    CHECK_INT(request_reply_code("25"), 0);
    CHECK_INT(request_reply_code("2500"), 0);
    CHECK_INT(request_reply_code("650 x"), 0);
    CHECK_INT(request_reply_code(""), 0);
    CHECK_INT(request_reply_code("Method Not Allowed"), 0);
}

int main(void)
{
    UNIT_RUN(test_envelope);
    UNIT_RUN(test_folded_name_refused);
    UNIT_RUN(test_value_cut_at_nul);
    UNIT_RUN(test_body_vectors);
    UNIT_RUN(test_body_holds_back);
    UNIT_RUN(test_body_size);
    UNIT_RUN(test_http_status);
    return unit_summary();
}
