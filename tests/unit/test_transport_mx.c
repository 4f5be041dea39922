/* Tests for pipe-transport/mx.c: MX, address and TLSA answers. */
#include "mx.h"
#include "netio.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

/* MX RDATA: preference + uncompressed name. */
static struct dns_rr mx_rr(unsigned char *buf, unsigned pref, const char *name)
{
    size_t o = 0;
    buf[o++] = (unsigned char)(pref >> 8);
    buf[o++] = (unsigned char)pref;
    const char *p = name;
    while (*p != '\0') {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        buf[o++] = (unsigned char)l;
        memcpy(buf + o, p, l);
        o += l;
        p += l;
        if (*p == '.')
            p++;
    }
    buf[o++] = 0;
    return (struct dns_rr){buf, o};
}

static void test_sort_and_null(void)
{
    unsigned char b[6][300];
    struct dns_rr rr[6];
    struct mx_host h[MX_MAX_HOSTS];
    size_t n;
    rr[0] = mx_rr(b[0], 20, "b.example");
    rr[1] = mx_rr(b[1], 10, "A.example");
    rr[2] = mx_rr(b[2], 30, "c.example");
    rr[3] = mx_rr(b[3], 5, "a.example"); /* duplicate: the lower preference stays */
    CHECK(mx_from_records(rr, 4, 1, h, MX_MAX_HOSTS, &n) == MX_OK);
    CHECK_INT(n, 3);
    CHECK_STR(h[0].name, "a.example");
    CHECK_INT(h[0].pref, 5);
    CHECK_STR(h[1].name, "b.example");
    CHECK_STR(h[2].name, "c.example");
    CHECK(mx_from_records(rr, 4, 1, h, 2, &n) == MX_OK);
    CHECK_INT(n, 2);
    /* Null MX alone, and among others (ignored). */
    rr[4] = mx_rr(b[4], 0, "");
    CHECK(mx_from_records(&rr[4], 1, 1, h, MX_MAX_HOSTS, &n) == MX_NULL);
    CHECK(mx_from_records(&rr[2], 3, 1, h, MX_MAX_HOSTS, &n) == MX_OK);
    CHECK_INT(n, 2);
    /* Malformed only: a temporary failure. */
    unsigned char junk[3] = {0, 1, 99};
    rr[5] = (struct dns_rr){junk, 3};
    CHECK(mx_from_records(&rr[5], 1, 1, h, MX_MAX_HOSTS, &n) == MX_TEMPFAIL);
    CHECK(mx_from_records(rr, 0, 1, h, MX_MAX_HOSTS, &n) == MX_TEMPFAIL);
}

/* Equal preferences are shuffled by the random number, always completely. */
static void test_shuffle(void)
{
    unsigned char b[4][300];
    struct dns_rr rr[4];
    const char *names[4] = {"a.x", "b.x", "c.x", "d.x"};
    for (int i = 0; i < 4; i++)
        rr[i] = mx_rr(b[i], 10, names[i]);
    int first_seen[4] = {0};
    for (uint32_t r = 0; r < 64; r++) {
        struct mx_host h[MX_MAX_HOSTS];
        size_t n;
        CHECK(mx_from_records(rr, 4, r, h, MX_MAX_HOSTS, &n) == MX_OK);
        CHECK_INT(n, 4);
        for (int i = 0; i < 4; i++)
            if (strcmp(h[0].name, names[i]) == 0)
                first_seen[i]++;
    }
    for (int i = 0; i < 4; i++)
        CHECKF(first_seen[i] > 0, "%s never first", names[i]);
}

static struct dns_result answer(enum dns_status st, bool secure, struct dns_rr *rr, size_t n)
{
    struct dns_result r;
    memset(&r, 0, sizeof(r));
    r.status = st;
    r.secure = secure;
    r.rr = rr;
    r.n = n;
    return r;
}

static void test_addrs(void)
{
    unsigned char v4[3][4] = {{192, 0, 2, 1}, {192, 0, 2, 2}, {192, 0, 2, 3}};
    unsigned char v6[2][16] = {{0x20, 0x01, 0x0d, 0xb8, [15] = 1}, {0x20, 0x01, 0x0d, 0xb8, [15] = 2}};
    struct dns_rr a_rr[3] = {{v4[0], 4}, {v4[1], 4}, {v4[2], 4}};
    struct dns_rr aaaa_rr[2] = {{v6[0], 16}, {v6[1], 16}};
    struct dns_result a = answer(DNS_OK, true, a_rr, 3), aaaa = answer(DNS_OK, true, aaaa_rr, 2);
    struct mx_addrs out;
    char text[64];
    mx_addrs_from_answers(&a, &aaaa, 25, &out);
    CHECK(out.status == MX_ADDR_OK && out.secure);
    CHECK_INT(out.n, 5);
    const char *want[5] = {"2001:db8::1", "192.0.2.1", "2001:db8::2", "192.0.2.2", "192.0.2.3"};
    for (size_t i = 0; i < out.n && i < 5; i++) {
        netio_addr_text(&out.sa[i], text, sizeof(text));
        CHECKF(strcmp(text, want[i]) == 0, "address %zu: %s", i, text);
    }
    CHECK_INT(ntohs(((struct sockaddr_in *)&out.sa[1])->sin_port), 25);
    /* One family failing leaves the other, not secure for DANE. */
    struct dns_result fail = answer(DNS_TEMPFAIL, false, NULL, 0);
    mx_addrs_from_answers(&a, &fail, 25, &out);
    CHECK(out.status == MX_ADDR_OK && !out.secure);
    CHECK_INT(out.n, 3);
    /* An insecure answer makes the set insecure. */
    struct dns_result nodata = answer(DNS_NODATA, false, NULL, 0);
    mx_addrs_from_answers(&a, &nodata, 25, &out);
    CHECK(out.status == MX_ADDR_OK && !out.secure);
    struct dns_result nodata_s = answer(DNS_NODATA, true, NULL, 0);
    mx_addrs_from_answers(&a, &nodata_s, 25, &out);
    CHECK(out.secure);
    struct dns_result nx = answer(DNS_NXDOMAIN, true, NULL, 0);
    mx_addrs_from_answers(&nx, &nx, 25, &out);
    CHECK(out.status == MX_ADDR_NONE);
    mx_addrs_from_answers(&nx, &fail, 25, &out);
    CHECK(out.status == MX_ADDR_TEMPFAIL);
    /* Wrong lengths are skipped. */
    struct dns_rr odd[1] = {{v6[0], 5}};
    struct dns_result bad = answer(DNS_OK, true, odd, 1);
    mx_addrs_from_answers(&bad, NULL, 25, &out);
    CHECK(out.status == MX_ADDR_NONE);
    /* At most MX_MAX_ADDRS, both families kept. */
    unsigned char many4[12][4], many6[12][16];
    struct dns_rr m4[12], m6[12];
    for (int i = 0; i < 12; i++) {
        memcpy(many4[i], v4[0], 4);
        many4[i][3] = (unsigned char)i;
        memcpy(many6[i], v6[0], 16);
        many6[i][15] = (unsigned char)i;
        m4[i] = (struct dns_rr){many4[i], 4};
        m6[i] = (struct dns_rr){many6[i], 16};
    }
    struct dns_result A = answer(DNS_OK, true, m4, 12), AAAA = answer(DNS_OK, true, m6, 12);
    mx_addrs_from_answers(&A, &AAAA, 25, &out);
    CHECK_INT(out.n, MX_MAX_ADDRS);
    CHECK(out.sa[0].ss_family == AF_INET6 && out.sa[1].ss_family == AF_INET);
}

static void test_tlsa(void)
{
    unsigned char ee[35] = {3, 1, 1}, ta[67] = {2, 0, 2}, pkix[35] = {1, 1, 1},
                  badlen[20] = {3, 1, 1}, full[200] = {3, 0, 0};
    struct dns_rr rr[5] = {{ee, 35}, {ta, 67}, {pkix, 35}, {badlen, 20}, {full, 200}};
    struct mx_tlsa t;
    mx_tlsa_from_records(rr, 5, &t);
    CHECK(t.status == MX_TLSA_USABLE);
    CHECK_INT(t.n, 3);
    CHECK(t.rr[0].usage == 3 && t.rr[0].len == 32);
    CHECK(t.rr[1].usage == 2 && t.rr[1].mtype == 2 && t.rr[1].len == 64);
    CHECK(t.rr[2].mtype == 0 && t.rr[2].len == 197);
    mx_tlsa_from_records(&rr[2], 2, &t);
    CHECK(t.status == MX_TLSA_UNUSABLE);
    mx_tlsa_from_records(rr, 0, &t);
    CHECK(t.status == MX_TLSA_NONE);
}

int main(void)
{
    UNIT_RUN(test_sort_and_null);
    UNIT_RUN(test_shuffle);
    UNIT_RUN(test_addrs);
    UNIT_RUN(test_tlsa);
    return unit_summary();
}
