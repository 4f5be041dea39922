/* Tests for address.c: extraction as upstream (spec 3.3, 13.7 U3, U5). */
#include "address.h"
#include "unit.h"

#include <string.h>

static const struct {
    const char *in;
    const char *want; /* NULL: no address */
} extract_cases[] = {
    /* The reference table of spec 3.3. */
    {"MAIL FROM:<t1@example.org>", "t1@example.org"},
    {"MAIL FROM:<t2@example.org> SOMETHING=SOMETHING OTHER=OTHER", "t2@example.org"},
    {"MAIL FROM:<SRS1=HHH=example.com==HHH=TT=example.org=alice@example.net> abc=def",
     "srs1=hhh=example.com==hhh=tt=example.org=alice@example.net"},
    {"MAIL FROM:<abc+alice@example.net> abc=def", "abc+alice@example.net"},
    {"RCPT TO:<t3@example.org>", "t3@example.org"},
    {"mail from:<t4@example.org>", "t4@example.org"},
    {"Foo Bar <t5@example.org>", "t5@example.org"},
    {"t6@example.org", "t6@example.org"},
    {"t7@[192.0.2.0]", "t7@[192.0.2.0]"},
    {"<t7@[192.0.2.0]>", "t7@[192.0.2.0]"},
    {"t8@[IPv6:2001:db8::1]", NULL}, /* mailparse quirk Q10, copied */
    {"<t8@[IPv6:2001:db8::1]>", "t8@[ipv6:2001:db8::1]"},
    {"Mail Delivery Subsystem <MAILER-DAEMON@example.org>", "mailer-daemon@example.org"},
    /* mailparse addrparse behaviour. */
    {"\"User, One\" <User1@Example.org>", "user1@example.org"},
    {"\"a \\\" b\" <x@y>", "x@y"},
    {"x@y (comment)", "x@y (comment)"}, /* unquoted text runs on, as in mailparse... */
    {"<x@y> (comment)", "x@y"},         /* ...but a comment after <addr> is skipped */
    {"<x@y> junk", "x@y"},              /* cut after the first '>' */
    {"x@y, <z@w> junk, v", "x@y"},
    {"x@y, <z@w", NULL},
    {"<x@y>, <z@w>", "x@y"},
    {"x@y, z@w", "x@y"},
    {"x@y, broken", NULL},              /* every entry needs an '@' */
    {"group: a@b, c@d;", "a@b"},
    {"group: <a@b>;", NULL},            /* the cut after '>' leaves the group open */
    {"undisclosed-recipients:;", NULL},
    {"empty:; a@b", NULL},              /* the first entry is an empty group */
    {"a@b, group:", "a@b"},             /* a ':' at the very end is an empty group */
    {"a@b, group: c@d", NULL},          /* unterminated group */
    {"g: h: a@b;", NULL},               /* nested group */
    {"foo", NULL},
    {"", NULL},
    {"   ", NULL},
    {"<>", NULL},
    {"\"unterminated <a@b>", NULL},
    {"<a@b", NULL},                     /* the bracket never closes */
    {"Name <a@b> <c@d>", "a@b"},
    {"foo bar@x", "foo bar@x"},         /* unquoted words run together, as mailparse */
    {"\"A>B\" <a@b>", NULL},            /* cut after the first '>', as upstream */
    {"MAIL FROM:MAIL FROM:<a@b>", "a@b"},
    {"RCPT TO:RCPT TO:<a@b>", "a@b"},
    {"User1 <USER1@EXAMPLE.ORG>", "user1@example.org"},
};

static void test_extract(void)
{
    for (size_t i = 0; i < sizeof(extract_cases) / sizeof(extract_cases[0]); i++) {
        char out[ADDRESS_MAX];
        const char *in = extract_cases[i].in;
        int rc = address_extract(in, strlen(in), out, sizeof(out));
        if (extract_cases[i].want == NULL) {
            CHECKF(rc < 0, "%s: got %s, want none", in, rc == 0 ? out : "");
        } else {
            CHECKF(rc == 0, "%s: no address, want %s", in, extract_cases[i].want);
            if (rc == 0)
                CHECKF(strcmp(out, extract_cases[i].want) == 0, "%s: got %s, want %s", in, out,
                       extract_cases[i].want);
        }
    }
}

static void test_extract_bounds(void)
{
    char big[8192], out[ADDRESS_MAX], tiny[4];
    memset(big, 'a', sizeof(big));
    big[100] = '@';
    CHECK(address_extract(big, sizeof(big), out, sizeof(out)) < 0);   /* input too long */
    CHECK(address_extract(big, 2000, out, sizeof(out)) < 0);          /* address too long */
    CHECK(address_extract("a@b", 3, tiny, sizeof(tiny)) == 0);        /* fits exactly */
    CHECK(address_extract("ab@c", 4, tiny, sizeof(tiny)) < 0);        /* does not fit */
    CHECK(address_extract("a@b", 3, out, 0) < 0);
    /* A NUL cannot cut an address short ("user@victim\0@x"). */
    CHECK(address_extract("<a@b\0c>", 7, out, sizeof(out)) < 0);
    CHECK(address_extract("Name\0 <a@b>", 11, out, sizeof(out)) < 0);
}

static void test_count(void)
{
    static const struct {
        const char *in;
        int want;
    } cases[] = {
        {"a@b", 1},         {"Name <a@b>", 1},  {"a@b, c@d", 2},
        {"g: a@b, c@d;", 2}, {"g:;", 0},         {"a@b, junk", -1},
        {"", 0},            {"<a@b>, <c@d>", 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECKF(address_count(cases[i].in, strlen(cases[i].in)) == cases[i].want, "%s",
               cases[i].in);
}

static void test_domain(void)
{
    static const struct {
        const char *addr;
        int rc;
        enum address_domain_kind kind;
        const char *domain;
    } cases[] = {
        {"t1@example.org", 0, ADDRESS_DOMAIN_NAME, "example.org"},
        {"srs1=hhh=example.com==hhh=tt=example.org=alice@example.net", 0, ADDRESS_DOMAIN_NAME,
         "example.net"},
        {"t7@[192.0.2.0]", 0, ADDRESS_DOMAIN_LITERAL, "192.0.2.0"},
        {"t8@[IPv6:2001:db8::1]", 0, ADDRESS_DOMAIN_LITERAL, "2001:db8::1"},
        {"t8@[ipv6:2001:db8::1]", 0, ADDRESS_DOMAIN_LITERAL, "2001:db8::1"},
        {"invalid", -1, ADDRESS_DOMAIN_NAME, NULL},
        {"invalid@address@com", -1, ADDRESS_DOMAIN_NAME, NULL},
        {"a@", 0, ADDRESS_DOMAIN_NAME, ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum address_domain_kind kind;
        const char *d;
        size_t n;
        int rc = address_domain(cases[i].addr, &kind, &d, &n);
        CHECKF(rc == cases[i].rc, "%s: rc %d", cases[i].addr, rc);
        if (rc == 0) {
            CHECKF(kind == cases[i].kind, "%s: kind", cases[i].addr);
            CHECKF(n == strlen(cases[i].domain) && memcmp(d, cases[i].domain, n) == 0,
                   "%s: domain %.*s", cases[i].addr, (int)n, d);
        }
    }
}

static void test_valid_mailbox(void)
{
    CHECK(address_valid_mailbox("a@b"));
    CHECK(!address_valid_mailbox(""));
    CHECK(!address_valid_mailbox("ab"));
    CHECK(!address_valid_mailbox("a/b@c"));
    CHECK(!address_valid_mailbox("../x@y/.."));
    CHECK(address_valid_mailbox("..@x"));
}

static void test_strip_brackets(void)
{
    static const struct {
        const char *in;
        size_t outlen;
        const char *want;
    } cases[] = {
        {"<a@b>", 64, "a@b"}, {"<>", 64, ""},           {"a@b", 64, "a@b"},
        {"<a@b", 64, "<a@b"}, {"a@b>", 64, "a@b>"},     {"<", 64, "<"},
        {"", 64, ""},         {"<abcdef>", 4, "abc"},   {"<<a>>", 64, "<a>"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[64];
        address_strip_brackets(cases[i].in, out, cases[i].outlen);
        CHECKF(strcmp(out, cases[i].want) == 0, "%s: got %s", cases[i].in, out);
    }
}

static void test_envelope(void)
{
    static const struct {
        const char *path, *want;
    } cases[] = {
        {"<Alice@Example.ORG>", "alice@example.org"},
        {"Bob@X.org", "bob@x.org"},
        {"<>", ""},
        {"", ""},
        /* Not an address to the extractor: kept as given, lowercased. */
        {"<NoAt>", "noat"},
        {"<a@b@C>", "a@b@c"},
        {"<\"Quoted Local\"@Example.org>", "\"quoted local\"@example.org"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[ADDRESS_MAX];
        address_envelope(cases[i].path, out, sizeof(out));
        CHECKF(strcmp(out, cases[i].want) == 0, "%s: got %s", cases[i].path, out);
    }
}

static void test_from_domain(void)
{
    static const struct {
        const char *from, *want;
    } cases[] = {
        {"Alice <alice@Example.ORG>", "example.org"},
        {"bob@sub.example.net", "sub.example.net"},
        /* The extractor keeps a bare address's trailing text, as upstream's
         * does: such a domain never equals a d= (DKIM fails closed). */
        {"bob@sub.example.net (comment)", "sub.example.net (comment)"},
        {"", ""},
        {"not an address", ""},
        {"x@[192.0.2.1]", ""},          /* literal: no DKIM alignment */
        {"a@b.org, c@d.org", "b.org"},   /* the first; the count is checked elsewhere */
        {"Group: g@grp.example;", "grp.example"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        address_from_domain(cases[i].from, out, sizeof(out));
        CHECKF(strcmp(out, cases[i].want) == 0, "%s: got %s", cases[i].from, out);
    }
    /* A domain that does not fit gives "", never a cut domain. */
    char small[8];
    address_from_domain("a@example.org", small, sizeof(small));
    CHECK(strcmp(small, "") == 0);
    address_from_domain("a@abc.de", small, sizeof(small));
    CHECK(strcmp(small, "abc.de") == 0);
}

static void test_path_ok(void)
{
    static const struct {
        const char *in;
        bool want;
    } cases[] = {
        {"alice@example.org", true},
        {"SRS0=abc=XY=example.com=bob@example.net", true},
        {"t7@[192.0.2.0]", true},
        {"t8@[IPv6:2001:db8::1]", true},
        {"\"quoted\"@example.org", true},
        {"a@b", true},
        {"", false},
        {"<a@b>", false},
        {"a@b>", false},
        {"a@b> NOTIFY=NEVER", false},
        {"a@b NOTIFY=NEVER", false},
        {" a@b", false},
        {"a@b\t", false},
        {"a@b\r\nRSET", false},
        {"a@b\n", false},
        {"a\x01@b", false},
        {"a\x7f@b", false},
        {"j\xc3\xb6rg@example.org", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        CHECKF(address_path_ok(cases[i].in, strlen(cases[i].in)) == cases[i].want, "%s",
               cases[i].in);
    /* NUL inside the value (the HTTP parser gives lengths). */
    CHECK(!address_path_ok("a@b\0c", 5));

    char longest[ADDRESS_PATH_MAX + 2];
    memset(longest, 'a', sizeof(longest));
    longest[0] = 'x';
    longest[5] = '@';
    CHECK(address_path_ok(longest, ADDRESS_PATH_MAX));
    CHECK(!address_path_ok(longest, ADDRESS_PATH_MAX + 1));
}

static void test_path_safe(void)
{
    size_t len = 0;
    bool utf8 = false;
    CHECK(address_path_safe("a@b", 10, &len, &utf8) && len == 3 && !utf8);
    CHECK(address_path_safe("\"a b\"@b", 10, &len, &utf8) && len == 7 && !utf8);
    CHECK(address_path_safe("j\xc3\xb6rg@b", 20, &len, &utf8) && utf8);
    utf8 = false;
    CHECK(!address_path_safe("a\r\n@b", 20, &len, &utf8));
    CHECK(!address_path_safe("a\x7f@b", 20, &len, &utf8));
    CHECK(!address_path_safe("a@bcd", 4, &len, &utf8));
    CHECK(address_path_safe("", 4, &len, &utf8) && len == 0);
}

static void test_domain_name_ok(void)
{
    CHECK(address_domain_name_ok("a-b_c.example"));
    CHECK(address_domain_name_ok("xn--bcher-kva.example"));
    CHECK(!address_domain_name_ok(""));
    CHECK(!address_domain_name_ok(".a"));
    CHECK(!address_domain_name_ok("a."));
    CHECK(!address_domain_name_ok("a..b"));
    CHECK(!address_domain_name_ok("A.example"));
    CHECK(!address_domain_name_ok("a b"));
    CHECK(!address_domain_name_ok("b\xc3\xbc" "cher.example"));
    char label[80];
    memset(label, 'a', 64);
    label[64] = '\0';
    CHECK(!address_domain_name_ok(label));
    label[63] = '\0';
    CHECK(address_domain_name_ok(label));
    char name[300];
    memset(name, 'a', sizeof(name));
    for (size_t i = 50; i < sizeof(name); i += 51)
        name[i] = '.';
    name[253] = '\0';
    CHECK(address_domain_name_ok(name));
    name[253] = 'a';
    name[254] = '\0';
    CHECK(!address_domain_name_ok(name));
}

int main(void)
{
    UNIT_RUN(test_extract);
    UNIT_RUN(test_extract_bounds);
    UNIT_RUN(test_count);
    UNIT_RUN(test_domain);
    UNIT_RUN(test_valid_mailbox);
    UNIT_RUN(test_strip_brackets);
    UNIT_RUN(test_envelope);
    UNIT_RUN(test_from_domain);
    UNIT_RUN(test_path_ok);
    UNIT_RUN(test_path_safe);
    UNIT_RUN(test_domain_name_ok);
    return unit_summary();
}
