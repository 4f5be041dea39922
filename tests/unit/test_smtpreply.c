/* Tests for common/smtpreply.c: replies and EHLO keywords. */
#include "smtpreply.h"
#include "unit.h"

#include <stdio.h>
#include <string.h>

struct want {
    int code;
    const char *enhanced, *text;
    size_t nlines;
};

static const struct {
    const char *name, *in;
    int result; /* 1 done, 0 more, -1 error */
    struct want w;
} cases[] = {
    {"simple", "250 OK\r\n", 1, {250, "", "OK", 1}},
    {"bare lf", "250 OK\n", 1, {250, "", "OK", 1}},
    {"code only", "250\r\n", 1, {250, "", "", 1}},
    {"enhanced", "550 5.1.1 <a@b>: unknown\r\n", 1, {550, "5.1.1", "5.1.1 <a@b>: unknown", 1}},
    {"enhanced class mismatch", "550 4.1.1 x\r\n", 1, {550, "", "4.1.1 x", 1}},
    {"enhanced too many digits", "450 4.1234.1 x\r\n", 1, {450, "", "4.1234.1 x", 1}},
    {"enhanced at end", "250 2.0.0\r\n", 1, {250, "2.0.0", "2.0.0", 1}},
    {"multi", "250-mx.example\r\n250-PIPELINING\r\n250 8BITMIME\r\n", 1,
     {250, "", "mx.example\nPIPELINING\n8BITMIME", 3}},
    {"incomplete", "250-mx.example\r\n250 OK", 0, {0, "", "", 0}},
    {"no code", "hello\r\n", -1, {0, "", "", 0}},
    {"bad first digit", "650 no\r\n", -1, {0, "", "", 0}},
    {"bad separator", "250_x\r\n", -1, {0, "", "", 0}},
    {"mixed codes", "250-a\r\n251 b\r\n", -1, {0, "", "", 0}},
    {"short", "25\r\n", -1, {0, "", "", 0}},
};

static int feed(const char *in, size_t n, bool bytewise, struct smtp_reply *r, size_t *used_total)
{
    struct smtp_reply_parser p;
    const char *why;
    smtp_reply_parser_init(&p, NULL);
    *used_total = 0;
    size_t step = bytewise ? 1 : n;
    for (size_t off = 0; off < n; off += step) {
        size_t len = n - off < step ? n - off : step, used;
        enum smtp_parse st = smtp_reply_push(&p, in + off, len, &used, r, &why);
        *used_total += used;
        if (st == SMTP_PARSE_DONE)
            return 1;
        if (st == SMTP_PARSE_ERROR)
            return -1;
    }
    return 0;
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (int bytewise = 0; bytewise < 2; bytewise++) {
            struct smtp_reply r;
            size_t used;
            int got = feed(cases[i].in, strlen(cases[i].in), bytewise, &r, &used);
            CHECKF(got == cases[i].result, "%s (bytewise %d): result %d", cases[i].name,
                   bytewise, got);
            if (got != 1 || cases[i].result != 1)
                continue;
            CHECKF(r.code == cases[i].w.code, "%s: code %d", cases[i].name, r.code);
            CHECKF(strcmp(r.enhanced, cases[i].w.enhanced) == 0, "%s: enhanced %s",
                   cases[i].name, r.enhanced);
            CHECKF(strcmp(r.text, cases[i].w.text) == 0, "%s: text [%s]", cases[i].name, r.text);
            CHECKF(r.nlines == cases[i].w.nlines, "%s: lines", cases[i].name);
            CHECKF(used == strlen(cases[i].in), "%s: used", cases[i].name);
        }
    }
}

/* Pipelined replies read at once are taken one at a time. */
static void test_pipelined(void)
{
    const char in[] = "250 2.1.0 Ok\r\n550 5.1.1 no\r\n250 2.1.5 Ok\r\n";
    struct smtp_reply_parser p;
    struct smtp_reply r;
    const char *why;
    size_t off = 0, used;
    int codes[3];
    smtp_reply_parser_init(&p, NULL);
    for (int k = 0; k < 3; k++) {
        CHECK(smtp_reply_push(&p, in + off, strlen(in) - off, &used, &r, &why) ==
              SMTP_PARSE_DONE);
        codes[k] = r.code;
        off += used;
    }
    CHECK_INT(codes[0], 250);
    CHECK_INT(codes[1], 550);
    CHECK_INT(codes[2], 250);
    CHECK_INT(off, strlen(in));
}

/* Limits: a long line is cut, too many lines are an error. */
static void test_limits(void)
{
    static char in[20000];
    struct smtp_reply r;
    size_t used;
    memcpy(in, "250 ", 4);
    memset(in + 4, 'x', 5000);
    memcpy(in + 5004, "\r\n", 3);
    CHECK(feed(in, strlen(in), false, &r, &used) == 1);
    CHECK(r.len < SMTP_REPLY_LINE_MAX);
    size_t o = 0;
    for (int i = 0; i < SMTP_REPLY_MAX_LINES + 5; i++)
        o += (size_t)snprintf(in + o, sizeof(in) - o, "250-line %d\r\n", i);
    snprintf(in + o, sizeof(in) - o, "250 end\r\n");
    CHECK(feed(in, strlen(in), false, &r, &used) == -1);
    /* Text past the maximum is cut, not overflowed. */
    o = 0;
    for (int i = 0; i < 20; i++)
        o += (size_t)snprintf(in + o, sizeof(in) - o, "250-%0900d\r\n", i);
    snprintf(in + o, sizeof(in) - o, "250 end\r\n");
    CHECK(feed(in, strlen(in), false, &r, &used) == 1);
    CHECK(r.len <= SMTP_REPLY_TEXT_MAX - 1);
    CHECK(strlen(r.text) == r.len);
    /* A line that never ends is an error once past SMTP_REPLY_LINE_LIMIT. */
    memcpy(in, "250 ", 4);
    memset(in + 4, 'x', SMTP_REPLY_LINE_LIMIT);
    in[4 + SMTP_REPLY_LINE_LIMIT] = '\0';
    CHECK(feed(in, strlen(in), false, &r, &used) == -1);
}

/* Parses in (whole, or in pieces) with limits into "code|last line|P" per
 * reply (P: PIPELINING announced), "!" for a malformed one, "+" when input
 * is left unfinished. */
static void describe(const struct smtp_reply_limits *lim, const char *in, size_t len,
                     size_t piece, char *out, size_t outlen)
{
    struct smtp_reply_parser p;
    static struct smtp_reply r;
    size_t off = 0, o = 0;
    const char *why;

    out[0] = '\0';
    smtp_reply_parser_init(&p, lim);
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece, used;
        enum smtp_parse st = smtp_reply_push(&p, in + off, n, &used, &r, &why);
        if (st == SMTP_PARSE_ERROR) {
            snprintf(out + o, outlen - o, "!");
            return;
        }
        CHECKF(used <= n, "used %zu of %zu", used, n);
        off += used;
        if (st == SMTP_PARSE_DONE) {
            char line[600];
            struct smtp_caps caps;
            smtp_reply_last_line(&r, line, sizeof(line));
            smtp_caps_parse(&r, &caps);
            o += (size_t)snprintf(out + o, outlen - o, "%d|%s|%s;", r.code, line,
                                  caps.pipelining ? "P" : "");
        }
    }
    if (p.linetotal > 0 || p.cur.nlines > 0)
        snprintf(out + o, outlen - o, "+");
}

/* mxdeliv's limits towards Postfix's reinjection smtpd. */
static const struct smtp_reply_limits reinject_limits = {.line_max = 2048, .lines_max = 100};

/* The last line, as mxdeliv passes a refusal on: fed whole and in pieces of
 * every size, both must agree. */
static void test_last_line(void)
{
    static const struct {
        const char *in, *want;
    } lines[] = {
        {"220 mx.example.org ESMTP\r\n", "220|220 mx.example.org ESMTP|;"},
        {"250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250 8BITMIME\r\n",
         "250|250 8BITMIME|P;"},
        {"250-mx\r\n250-pipelining\r\n250 OK\r\n", "250|250 OK|P;"},
        /* The first line of an EHLO reply is the server's name, not a keyword. */
        {"250 PIPELINING\r\n", "250|250 PIPELINING|;"},
        {"250-PIPELININGX\r\n250-XPIPELINING\r\n250 OK\r\n", "250|250 OK|;"},
        {"250-mx PIPELINING\r\n250 OK\r\n", "250|250 OK|;"},
        {"250\r\n", "250|250|;"},
        {"250 \r\n", "250|250 |;"},
        {"354 End data with <CR><LF>.<CR><LF>\r\n", "354|354 End data with <CR><LF>.<CR><LF>|;"},
        {"250 ok\n", "250|250 ok|;"},
        {"523 a\rb\r\n", "523|523 a?b|;"},
        {"554 5.7.1 caf\xc3\xa9\x01\r\n", "554|554 5.7.1 caf???|;"},
        {"550-5.1.1 first\r\n550 5.1.1 second\r\n", "550|550 5.1.1 second|;"},
        {"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 go\r\n",
         "250|250 2.1.0 Ok|;250|250 2.1.5 Ok|;354|354 go|;"},
        {"250 ok\r\n250-partial\r\n", "250|250 ok|;+"},
        {"250 ok", "+"},
        {"25 x\r\n", "!"},
        {"2500 x\r\n", "!"},
        {"650 x\r\n", "!"},
        {"150 x\r\n", "!"},
        {"abc\r\n", "!"},
        {"\r\n", "!"},
        {"250-a\r\n251 b\r\n", "!"},
        {"250_x\r\n", "!"},
    };
    char whole[1024], part[1024];

    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        size_t len = strlen(lines[i].in);
        describe(&reinject_limits, lines[i].in, len, len ? len : 1, whole, sizeof(whole));
        CHECKF(strcmp(whole, lines[i].want) == 0, "case %zu: got \"%s\", want \"%s\"", i, whole,
               lines[i].want);
        for (size_t piece = 1; piece < len; piece++) {
            describe(&reinject_limits, lines[i].in, len, piece, part, sizeof(part));
            CHECKF(strcmp(part, whole) == 0, "case %zu piece %zu: \"%s\" vs \"%s\"", i, piece, part,
                   whole);
        }
    }
}

/* Limits a client sets: a line of exactly line_max bytes passes (its text
 * cut), one byte more is malformed; lines_max lines pass, one more not. */
static void test_client_limits(void)
{
    static char buf[4096 + 1000];
    char out[1200];
    size_t n;

    memcpy(buf, "250 ", 4);
    memset(buf + 4, 'x', 2048 - 4);
    memcpy(buf + 2048, "\r\n", 2);
    describe(&reinject_limits, buf, 2048 + 2, 2048 + 2, out, sizeof(out));
    CHECK(strncmp(out, "250|250 xxx", 11) == 0);
    CHECK_INT(strlen(out), 4 + 599 + 2); /* cut to describe()'s line[600] */
    memcpy(buf, "250 ", 4);
    memset(buf + 4, 'x', 2048 - 3);
    memcpy(buf + 2049, "\r\n", 2);
    describe(&reinject_limits, buf, 2048 + 3, 7, out, sizeof(out));
    CHECK_STR(out, "!");
    /* Not even the line end is needed to refuse it. */
    describe(&reinject_limits, buf, 2049, 2049, out, sizeof(out));
    CHECK_STR(out, "!");

    n = 0;
    for (int i = 0; i < 100 - 1; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "250-x\r\n");
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "250 y\r\n");
    describe(&reinject_limits, buf, n, n, out, sizeof(out));
    CHECK_STR(out, "250|250 y|;");
    n = 0;
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "250-x\r\n");
    n += (size_t)snprintf(buf + n, sizeof(buf) - n, "250 y\r\n");
    describe(&reinject_limits, buf, n, 3, out, sizeof(out));
    CHECK_STR(out, "!");
    /* Zero fields take the defaults. */
    const struct smtp_reply_limits zero = {0};
    describe(&zero, buf, n, n, out, sizeof(out));
    CHECK_STR(out, "!");
}

static void test_oneline(void)
{
    struct smtp_reply r;
    size_t used;
    char out[64];
    static const char in[] = "550-5.1.1 first\r\n550 second\xff\r\n";
    CHECK(feed(in, sizeof(in) - 1, false, &r, &used) == 1);
    smtp_reply_oneline(&r, out, sizeof(out));
    CHECK_STR(out, "550 5.1.1 first second?");
    smtp_reply_oneline(&r, out, 8);
    CHECK_STR(out, "550 5.1");
}

static void test_caps(void)
{
    struct smtp_reply r;
    struct smtp_caps c;
    size_t used;
    const char *in = "250-mx.example STARTTLS PIPELINING\r\n250-pipelining\r\n250-SIZE 10240000\r\n"
                     "250-8bitmime\r\n250-SMTPUTF8\r\n250 STARTTLS\r\n";
    CHECK(feed(in, strlen(in), false, &r, &used) == 1);
    smtp_caps_parse(&r, &c);
    CHECK(c.starttls && c.pipelining && c.eightbitmime && c.smtputf8 && c.size);
    CHECK_INT(c.size_limit, 10240000);
    /* The greeting line's words are not keywords. */
    in = "250-mx.example STARTTLS PIPELINING\r\n250-SIZE\r\n250 STARTTLSX\r\n";
    CHECK(feed(in, strlen(in), false, &r, &used) == 1);
    smtp_caps_parse(&r, &c);
    CHECK(!c.starttls && !c.pipelining && c.size && c.size_limit == 0);
    in = "250-x\r\n250 SIZE 99999999999999999999999\r\n";
    CHECK(feed(in, strlen(in), false, &r, &used) == 1);
    smtp_caps_parse(&r, &c);
    CHECK(c.size && c.size_limit == 0);
}

int main(void)
{
    UNIT_RUN(test_table);
    UNIT_RUN(test_pipelined);
    UNIT_RUN(test_limits);
    UNIT_RUN(test_last_line);
    UNIT_RUN(test_client_limits);
    UNIT_RUN(test_oneline);
    UNIT_RUN(test_caps);
    return unit_summary();
}
