/* Tests for pipe-transport/envelope.c and deliver_helo_name(). */
#include "deliver.h"
#include "envelope.h"
#include "unit.h"

#include <arpa/inet.h>
#include <string.h>

static void test_ok(void)
{
    struct envelope env;
    char err[256];
    const char *r1[] = {"bob@Example.ORG", "carol@example.org."};
    CHECK(envelope_check("alice@example.net", r1, 2, &env, err, sizeof(err)) == ENVELOPE_OK);
    CHECK_STR(env.domain, "example.org");
    CHECK(env.kind == ENVELOPE_NAME && !env.underscore && !env.smtputf8);
    const char *r2[] = {"\"john doe\"@[127.0.0.2]", "x@[127.0.0.2]"};
    CHECK(envelope_check("", r2, 2, &env, err, sizeof(err)) == ENVELOPE_OK);
    CHECK_STR(env.domain, "127.0.0.2");
    CHECK(env.kind == ENVELOPE_LITERAL && env.family == AF_INET);
    const char *r3[] = {"a@[IPv6:2001:DB8::1]", "b@[ipv6:2001:db8:0::1]"};
    CHECK(envelope_check("", r3, 2, &env, err, sizeof(err)) == ENVELOPE_OK);
    CHECK_STR(env.domain, "2001:db8::1");
    CHECK(env.family == AF_INET6);
    const char *r4[] = {"a@_test.example"};
    CHECK(envelope_check("", r4, 1, &env, err, sizeof(err)) == ENVELOPE_OK);
    CHECK(env.underscore);
    const char *r5[] = {"j\xc3\xb6rg@example.org"};
    CHECK(envelope_check("", r5, 1, &env, err, sizeof(err)) == ENVELOPE_OK);
    CHECK(env.smtputf8);
    /* An internationalised domain is kept in its ASCII form (UTS #46 maps
     * upper case); both spellings are one destination. */
    const char *r6[] = {"bob@B\xc3\xbc" "cher.example", "eve@xn--bcher-kva.EXAMPLE",
                        "zoe@b\xc3\xbc" "cher.example."};
    CHECK(envelope_check("", r6, 3, &env, err, sizeof(err)) == ENVELOPE_OK);
    CHECK_STR(env.domain, "xn--bcher-kva.example");
    CHECK(env.kind == ENVELOPE_NAME && env.smtputf8);
    const char *r7[] = {"a@m\xc3\xbcnchen.example", "b@muenchen.example"};
    CHECK(envelope_check("", r7, 2, &env, err, sizeof(err)) == ENVELOPE_MIXED);
}

static void test_errors(void)
{
    struct envelope env;
    char err[256];
    static const struct {
        const char *rcpt;
        enum envelope_status want;
    } bad[] = {
        {"noat", ENVELOPE_BAD_ADDRESS},       {"@example.org", ENVELOPE_BAD_ADDRESS},
        {"a@", ENVELOPE_BAD_ADDRESS},         {"a@exa mple.org", ENVELOPE_BAD_ADDRESS},
        {"a@[1.2.3]", ENVELOPE_BAD_ADDRESS},  {"a@[IPv6:1.2.3.4]", ENVELOPE_BAD_ADDRESS},
        {"a@[]", ENVELOPE_BAD_ADDRESS},       {"a@b..c", ENVELOPE_BAD_ADDRESS},
        {"a@[127.000.0.2]", ENVELOPE_BAD_ADDRESS}, /* inet_pton: no leading zeros */
        {"a\r\n@b.c", ENVELOPE_BAD_ADDRESS},  {"a@b\x7f.c", ENVELOPE_BAD_ADDRESS},
        /* Internationalised domains that IDNA refuses: bad UTF-8, a label
         * too long once in its xn-- form, a symbol IDNA2008 disallows. */
        {"a@b\xff.c", ENVELOPE_BAD_ADDRESS},
        {"a@\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4\xc3\xa4"
         "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.c",
         ENVELOPE_BAD_ADDRESS},
        {"a@\xe2\x98\x83.example", ENVELOPE_BAD_ADDRESS},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *r[] = {bad[i].rcpt};
        CHECKF(envelope_check("", r, 1, &env, err, sizeof(err)) == bad[i].want, "%s",
               bad[i].rcpt);
    }
    const char *mixed[] = {"a@one.example", "b@two.example"};
    CHECK(envelope_check("", mixed, 2, &env, err, sizeof(err)) == ENVELOPE_MIXED);
    CHECK(strstr(err, "one.example") != NULL && strstr(err, "two.example") != NULL);
    const char *lit[] = {"a@[127.0.0.1]", "b@127.0.0.1"};
    CHECK(envelope_check("", lit, 2, &env, err, sizeof(err)) == ENVELOPE_MIXED);
    CHECK(envelope_check("", lit, 0, &env, err, sizeof(err)) == ENVELOPE_NO_RECIPIENT);
    CHECK(envelope_check("a\nb", lit, 1, &env, err, sizeof(err)) == ENVELOPE_BAD_ADDRESS);
    char longaddr[600];
    memset(longaddr, 'a', sizeof(longaddr));
    memcpy(longaddr + 580, "@example.org", 13);
    const char *lr[] = {longaddr};
    CHECK(envelope_check("", lr, 1, &env, err, sizeof(err)) == ENVELOPE_BAD_ADDRESS);
}

static void test_helo(void)
{
    char out[100];
    deliver_helo_name("chat.example.org", out, sizeof(out));
    CHECK_STR(out, "chat.example.org");
    deliver_helo_name("192.0.2.1", out, sizeof(out));
    CHECK_STR(out, "[192.0.2.1]");
    deliver_helo_name("2001:db8::1", out, sizeof(out));
    CHECK_STR(out, "[IPv6:2001:db8::1]");
}

int main(void)
{
    UNIT_RUN(test_ok);
    UNIT_RUN(test_errors);
    UNIT_RUN(test_helo);
    return unit_summary();
}
