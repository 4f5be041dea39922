/* Tests for policy_proto.c: Postfix policy requests as Postfix 3.7 sends
 * them, streamed whole and in pieces of every size, and malformed input. */
#include "policy_proto.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Captured from Postfix 3.7.11 (the integration harness: submission with
 * XCLIENT LOGIN, check_policy_service in smtpd_sender_restrictions and
 * smtpd_data_restrictions): the two RCPTs of one message, then DATA. */
#define RCPT1                                                                                      \
    "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"                      \
    "client_address=127.0.0.1\nclient_name=unknown\nclient_port=44766\n"                           \
    "reverse_client_name=unknown\nserver_address=127.0.0.1\nserver_port=56561\n"                   \
    "helo_name=client.test\nsender=one@example.org\nrecipient=two@example.org\n"                   \
    "recipient_count=0\nqueue_id=\ninstance=6140.6b0d674e.9078c.0\nsize=0\netrn_domain=\n"         \
    "stress=\nsasl_method=XCLIENT\nsasl_username=one@example.org\nsasl_sender=\n"                  \
    "ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"               \
    "encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n"
#define RCPT2                                                                                      \
    "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"                      \
    "client_address=127.0.0.1\nclient_name=unknown\nclient_port=44766\n"                           \
    "reverse_client_name=unknown\nserver_address=127.0.0.1\nserver_port=56561\n"                   \
    "helo_name=client.test\nsender=one@example.org\nrecipient=three@example.org\n"                 \
    "recipient_count=0\nqueue_id=91B03A72411\ninstance=6140.6b0d674e.9078c.0\nsize=0\n"            \
    "etrn_domain=\nstress=\nsasl_method=XCLIENT\nsasl_username=one@example.org\nsasl_sender=\n"    \
    "ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"               \
    "encryption_protocol=\nencryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n"
#define DATA                                                                                       \
    "request=smtpd_access_policy\nprotocol_state=DATA\nprotocol_name=ESMTP\n"                      \
    "client_address=127.0.0.1\nclient_name=unknown\nclient_port=44766\n"                           \
    "reverse_client_name=unknown\nserver_address=127.0.0.1\nserver_port=56561\n"                   \
    "helo_name=client.test\nsender=one@example.org\nrecipient=\nrecipient_count=2\n"               \
    "queue_id=91B03A72411\ninstance=6140.6b0d674e.9078c.0\nsize=0\netrn_domain=\nstress=\n"        \
    "sasl_method=XCLIENT\nsasl_username=one@example.org\nsasl_sender=\nccert_subject=\n"           \
    "ccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\n"         \
    "encryption_cipher=\nencryption_keysize=0\npolicy_context=\n\n"
/* With TLS and a client certificate (SMTPD_POLICY_README's attribute list)
 * and a UTF-8 sender, as an SMTPUTF8 session would carry. */
#define TLS                                                                                        \
    "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"                      \
    "helo_name=some.domain.tld\nqueue_id=8045F2AB23\nsender=j\xc3\xb6rg@example.org\n"             \
    "recipient=bar@foo.tld\nrecipient_count=0\nclient_address=1.2.3.4\n"                           \
    "client_name=another.domain.tld\nreverse_client_name=another.domain.tld\ninstance=123.456.7\n" \
    "sasl_method=plain\nsasl_username=you\nsasl_sender=\nsize=12345\n"                             \
    "ccert_subject=CN=solaris9.porcupine.org, O=Porcupine\nccert_issuer=CN=Wietse CA\n"            \
    "ccert_fingerprint=C2:9D:F4:87:71:73:73:D9:18:E7:C2:F3:C1:DA:6E:04\n"                          \
    "ccert_pubkey_fingerprint=68:B3:29:DA:98:93:E3:40:99:C7:D8:AD:5C:B9:C9:40\n"                   \
    "encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n"                      \
    "encryption_keysize=256\netrn_domain=\nstress=\nserver_address=10.3.2.1\nserver_port=54321\n"  \
    "policy_context=submission\ncompatibility_level=3.6\nmail_version=3.8.0\nx-unknown="           \
    "ignored\n\n"

/* What a stream parsed to: each request's attributes as "name=value;" and
 * "|" between requests, then "!error" or "+partial" at the end. */
static void describe(struct policy_parser *p, const char *in, size_t len, size_t piece, char *out,
                     size_t outlen)
{
    size_t o = 0, off = 0;
    enum policy_status st = POLICY_MORE;

    out[0] = '\0';
    policy_parser_reset(p);
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece, used_total = 0;
        while (used_total < n) {
            size_t used;
            st = policy_push(p, in + off + used_total, n - used_total, &used);
            used_total += used;
            if (st == POLICY_ERROR) {
                snprintf(out + o, outlen - o, "!%s", policy_error(p));
                return;
            }
            if (st == POLICY_REQUEST) {
                for (size_t i = 0; i < policy_count(p); i++) {
                    const char *name, *value;
                    policy_attr(p, i, &name, &value);
                    o += (size_t)snprintf(out + o, outlen - o, "%s=%s;", name, value);
                }
                o += (size_t)snprintf(out + o, outlen - o, "|");
            } else if (used == 0) {
                break;
            }
        }
        off += n;
    }
    if (!policy_idle(p))
        snprintf(out + o, outlen - o, "+partial");
}

static void test_postfix_request(void)
{
    struct policy_parser *p = policy_parser_new(NULL);
    const char *in = RCPT1;
    size_t used;

    CHECK(p != NULL);
    CHECK(policy_idle(p));
    CHECK_INT(policy_push(p, in, strlen(in), &used), POLICY_REQUEST);
    CHECK_INT(used, strlen(in));
    CHECK_INT(policy_count(p), 29);
    CHECK_STR(policy_get(p, "request"), "smtpd_access_policy");
    CHECK_STR(policy_get(p, "protocol_state"), "RCPT");
    CHECK_STR(policy_get(p, "sender"), "one@example.org");
    CHECK_STR(policy_get(p, "sasl_username"), "one@example.org");
    CHECK_STR(policy_get(p, "instance"), "6140.6b0d674e.9078c.0");
    CHECK_STR(policy_get(p, "queue_id"), "");
    CHECK_STR(policy_get(p, "policy_context"), "");
    CHECK_STR(policy_get(p, "missing"), NULL);
    CHECK_STR(policy_get(p, "sende"), NULL);
    CHECK(policy_idle(p));
    const char *name, *value;
    policy_attr(p, 0, &name, &value);
    CHECK_STR(name, "request");
    policy_attr(p, 28, &name, &value);
    CHECK_STR(name, "policy_context");
    policy_attr(p, 29, &name, &value);
    CHECK(name == NULL && value == NULL);

    in = TLS;
    CHECK_INT(policy_push(p, in, strlen(in), &used), POLICY_REQUEST);
    CHECK_STR(policy_get(p, "sender"), "j\xc3\xb6rg@example.org");
    CHECK_STR(policy_get(p, "ccert_subject"), "CN=solaris9.porcupine.org, O=Porcupine");
    CHECK_STR(policy_get(p, "x-unknown"), "ignored");
    CHECK_STR(policy_get(p, "instance"), "123.456.7");
    /* A push after a request forgets it. */
    CHECK_INT(policy_push(p, "", 0, &used), POLICY_MORE);
    CHECK_INT(policy_count(p), 0);
    CHECK_STR(policy_get(p, "request"), NULL);
    policy_parser_free(&p);
    CHECK(p == NULL);
    policy_parser_free(&p);
}

static void test_several_per_connection(void)
{
    static const char stream[] = RCPT1 RCPT2 DATA TLS;
    struct policy_parser *p = policy_parser_new(NULL);
    const char *in = stream;
    size_t len = strlen(stream), used, off = 0;
    const char *want_state[] = {"RCPT", "RCPT", "DATA", "RCPT"};
    const char *want_rcpt[] = {"two@example.org", "three@example.org", "", "bar@foo.tld"};

    for (int k = 0; k < 4; k++) {
        CHECK_INT(policy_push(p, in + off, len - off, &used), POLICY_REQUEST);
        off += used;
        CHECK_STR(policy_get(p, "protocol_state"), want_state[k]);
        CHECK_STR(policy_get(p, "recipient"), want_rcpt[k]);
    }
    CHECK_INT(off, len);
    CHECK_INT(policy_push(p, in + off, 0, &used), POLICY_MORE);
    policy_parser_free(&p);
}

/* Every piece size, 1 byte up to the whole stream, gives the same requests;
 * so does every single cut point. */
static void test_split_everywhere(void)
{
    static const char stream[] = RCPT1 DATA TLS "request=x\r\nsender=\r\n\r\n" RCPT2;
    size_t len = strlen(stream);
    struct policy_parser *p = policy_parser_new(NULL);
    char *whole = malloc(16384), *got = malloc(16384);

    describe(p, stream, len, len, whole, 16384);
    CHECK(strstr(whole, "request=x;sender=;|") != NULL);
    CHECK(strchr(whole, '!') == NULL && strstr(whole, "+partial") == NULL);
    for (size_t piece = 1; piece < len; piece++) {
        describe(p, stream, len, piece, got, 16384);
        CHECKF(strcmp(got, whole) == 0, "piece size %zu", piece);
    }
    /* Two pieces, cut at every byte. */
    for (size_t cut = 1; cut < len; cut++) {
        size_t o = 0, used;
        char *w = got;
        policy_parser_reset(p);
        w[0] = '\0';
        for (int k = 0; k < 2; k++) {
            const char *s = k == 0 ? stream : stream + cut;
            size_t n = k == 0 ? cut : len - cut, off = 0;
            while (off < n) {
                enum policy_status st = policy_push(p, s + off, n - off, &used);
                off += used;
                if (st == POLICY_REQUEST) {
                    for (size_t i = 0; i < policy_count(p); i++) {
                        const char *name, *value;
                        policy_attr(p, i, &name, &value);
                        o += (size_t)snprintf(w + o, 16384 - o, "%s=%s;", name, value);
                    }
                    o += (size_t)snprintf(w + o, 16384 - o, "|");
                } else {
                    CHECK_INT(st, POLICY_MORE);
                    break;
                }
            }
        }
        CHECKF(strcmp(got, whole) == 0, "cut at %zu", cut);
    }
    free(whole);
    free(got);
    policy_parser_free(&p);
}

static const struct {
    const char *name;
    const char *in;
    size_t len; /* 0: strlen(in) */
    const char *want;
} cases[] = {
    {"empty input", "", 0, ""},
    {"no blank line yet", "request=smtpd_access_policy\nsender=a@b\n", 0, "+partial"},
    {"half a line", "request=smtpd_acc", 0, "+partial"},
    {"lone empty line", "\n", 0, "|"},
    {"lone CRLF", "\r\n", 0, "|"},
    {"CRLF lines", "a=1\r\nb=2\r\n\r\n", 0, "a=1;b=2;|"},
    {"CR inside a value is kept", "a=1\r2\n\n", 0, "a=1\r2;|"},
    {"two CRs: one dropped", "a=1\r\r\n\n", 0, "a=1\r;|"},
    {"value with '='", "a=b=c\n\n", 0, "a=b=c;|"},
    {"empty value", "a=\n\n", 0, "a=;|"},
    {"repeated name, last wins", "a=1\na=2\n\n", 0, "a=1;a=2;|"},
    {"8-bit value", "sender=\xff\xfe@x\n\n", 0, "sender=\xff\xfe@x;|"},
    {"no '='", "request\n\n", 0, "!attribute line without '='"},
    {"junk line", "GET / HTTP/1.0\n\n", 0, "!attribute line without '='"},
    {"empty name", "=value\n\n", 0, "!attribute with an empty name"},
    {"space in name", "a b=1\n\n", 0, "!invalid byte in an attribute name"},
    {"control byte in name", "a\x01=1\n\n", 0, "!invalid byte in an attribute name"},
    {"8-bit name", "\xc3\xa4=1\n\n", 0, "!invalid byte in an attribute name"},
    {"NUL in value", "a=1\0002\n\n", 8, "!NUL byte in a request"},
    {"NUL in name", "\0=1\n\n", 5, "!NUL byte in a request"},
    {"error after a good request", "a=1\n\nb\n\n", 0, "a=1;|!attribute line without '='"},
    {"binary junk", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, "!NUL byte in a request"},
};

static void test_malformed(void)
{
    struct policy_parser *p = policy_parser_new(NULL);
    char got[1024];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        for (size_t piece = 1; piece <= (len ? len : 1); piece++) {
            describe(p, cases[i].in, len, piece, got, sizeof(got));
            CHECKF(strcmp(got, cases[i].want) == 0, "%s (pieces of %zu): got \"%s\"", cases[i].name,
                   piece, got);
        }
    }
    policy_parser_free(&p);

    /* The table shows every attribute line; a lookup gets the last one. */
    static const char repeated[] = "a=1\nb=x\na=2\n\n";
    size_t used;
    p = policy_parser_new(NULL);
    CHECK_INT(policy_push(p, repeated, strlen(repeated), &used), POLICY_REQUEST);
    CHECK_STR(policy_get(p, "a"), "2");
    CHECK_STR(policy_get(p, "b"), "x");
    policy_parser_free(&p);
}

static void test_error_is_sticky(void)
{
    struct policy_parser *p = policy_parser_new(NULL);
    size_t used;

    CHECK_INT(policy_push(p, "bad\n", 4, &used), POLICY_ERROR);
    CHECK_INT(used, 4);
    CHECK_INT(policy_push(p, "a=1\n\n", 5, &used), POLICY_ERROR);
    CHECK_INT(used, 0);
    CHECK_STR(policy_error(p), "attribute line without '='");
    policy_parser_reset(p);
    CHECK_STR(policy_error(p), "");
    CHECK_INT(policy_push(p, "a=1\n\n", 5, &used), POLICY_REQUEST);
    CHECK_STR(policy_get(p, "a"), "1");
    policy_parser_free(&p);
}

static void test_limits(void)
{
    struct policy_limits lim = {.max_line = 16, .max_attrs = 3, .max_request = 64};
    struct policy_parser *p = policy_parser_new(&lim);
    char line[64], got[256];

    /* A line of exactly max_line bytes, with or without a CR, is fine. */
    snprintf(line, sizeof(line), "a=%s\n\n", "xxxxxxxxxxxxxx");
    describe(p, line, strlen(line), 1, got, sizeof(got));
    CHECK_STR(got, "a=xxxxxxxxxxxxxx;|");
    snprintf(line, sizeof(line), "a=%s\r\n\r\n", "xxxxxxxxxxxxxx");
    describe(p, line, strlen(line), 3, got, sizeof(got));
    CHECK_STR(got, "a=xxxxxxxxxxxxxx;|");
    /* One more byte is not, in whatever pieces it comes, CR or not. */
    for (size_t piece = 1; piece < 24; piece++) {
        snprintf(line, sizeof(line), "a=%s\n\n", "xxxxxxxxxxxxxxx");
        describe(p, line, strlen(line), piece, got, sizeof(got));
        CHECKF(strcmp(got, "!attribute line too long") == 0, "piece %zu: %s", piece, got);
        snprintf(line, sizeof(line), "a=%s\r\n\n", "xxxxxxxxxxxxxxx");
        describe(p, line, strlen(line), piece, got, sizeof(got));
        CHECKF(strcmp(got, "!attribute line too long") == 0, "piece %zu: %s", piece, got);
        snprintf(line, sizeof(line), "a=%s", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        describe(p, line, strlen(line), piece, got, sizeof(got));
        CHECKF(strcmp(got, "!attribute line too long") == 0, "piece %zu: %s", piece, got);
    }
    describe(p, "a=1\nb=2\nc=3\n\n", 13, 1, got, sizeof(got));
    CHECK_STR(got, "a=1;b=2;c=3;|");
    describe(p, "a=1\nb=2\nc=3\nd=4\n\n", 17, 1, got, sizeof(got));
    CHECK_STR(got, "!too many attributes");
    /* 64 bytes in all, LFs included (51 here). */
    describe(p, "a=xxxxxxxxxxxxxx\nb=xxxxxxxxxxxxxx\nc=xxxxxxxxxxxxx\n\n", 51, 5, got, sizeof(got));
    CHECK_STR(got, "a=xxxxxxxxxxxxxx;b=xxxxxxxxxxxxxx;c=xxxxxxxxxxxxx;|");
    struct policy_limits lim2 = {.max_line = 100, .max_attrs = 100, .max_request = 20};
    struct policy_parser *q = policy_parser_new(&lim2);
    describe(q, "a=xxxxxxx\nb=xxxxxxx\n\n", 21, 1, got, sizeof(got));
    CHECK_STR(got, "!request too large");
    describe(q, "a=xxxxxxx\nb=xxxxxx\n\n", 20, 1, got, sizeof(got));
    CHECK_STR(got, "a=xxxxxxx;b=xxxxxx;|");
    /* A blank line without the attributes still counts against the total. */
    describe(q, "a=xxxxxxx\nb=xxxxxxxx\n", 21, 7, got, sizeof(got));
    CHECK_STR(got, "!request too large");
    policy_parser_free(&q);
    policy_parser_free(&p);
}

static void test_defaults_take_big_requests(void)
{
    struct policy_parser *p = policy_parser_new(NULL);
    size_t cap = POLICY_DEFAULT_MAX_REQUEST + 100, n = 0, used;
    char *big = malloc(cap);

    /* 100 attributes of 300 bytes: 30 KB, inside the defaults. */
    for (int i = 0; i < 100; i++) {
        n += (size_t)snprintf(big + n, cap - n, "a%02d=", i);
        memset(big + n, 'v', 295);
        n += 295;
        big[n++] = '\n';
    }
    big[n++] = '\n';
    CHECK_INT(policy_push(p, big, n, &used), POLICY_REQUEST);
    CHECK_INT(policy_count(p), 100);
    CHECK(strlen(policy_get(p, "a99")) == 295);
    /* The next request starts small again. */
    CHECK_INT(policy_push(p, "a=1\n\n", 5, &used), POLICY_REQUEST);
    CHECK_STR(policy_get(p, "a"), "1");
    free(big);
    policy_parser_free(&p);
}

static void test_reply(void)
{
    char out[64];

    CHECK_INT(policy_reply(out, sizeof(out), "DUNNO"), 14);
    CHECK_STR(out, "action=DUNNO\n\n");
    CHECK_INT(policy_reply(out, sizeof(out), "450 4.7.1 a\nb\r\x01\xff"), 25);
    CHECK_STR(out, "action=450 4.7.1 a?b???\n\n");
    CHECK_INT(policy_reply(out, 15, "DUNNO"), 14);
    CHECK_INT(policy_reply(out, 14, "DUNNO"), -1);
}

int main(void)
{
    UNIT_RUN(test_postfix_request);
    UNIT_RUN(test_several_per_connection);
    UNIT_RUN(test_split_everywhere);
    UNIT_RUN(test_malformed);
    UNIT_RUN(test_error_is_sticky);
    UNIT_RUN(test_limits);
    UNIT_RUN(test_defaults_take_big_requests);
    UNIT_RUN(test_reply);
    return unit_summary();
}
