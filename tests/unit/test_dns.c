/* Tests for dns.c against DNSSEC-signed zones served offline by libunbound
 * (tests/support/mkzone.py), plus a silent forwarder for timeouts. */
#include "dns.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static char dir[128];
static char conf[256], anchors[256];
static struct dns_resolver *res;

static const char zone[] =
    "@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n"
    "@ IN NS ns.example.test.\n"
    "ns IN A 127.0.0.1\n"
    "@ IN MX 20 mx2.example.test.\n"
    "@ IN MX 10 mx.example.test.\n"
    "mx IN A 127.0.0.10\n"
    "mx IN AAAA ::1\n"
    "nomx IN A 127.0.0.11\n"
    "nullmx IN MX 0 .\n"
    "s1._domainkey IN TXT \"v=DKIM1; k=rsa; \" \"p=ABC\"\n"
    "bad._domainkey IN TXT \"v=DKIM1; p=XYZ\" ;BOGUS\n"
    "bogusa IN A 127.0.0.12 ;BOGUS\n";

static void setup(void)
{
    char cmd[1024], path[300];
    FILE *f;
    int udp;
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t sl = sizeof(sa);

    snprintf(dir, sizeof(dir), "/tmp/filtermail-dns-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof(path), "%s/example.test.zone", dir);
    f = fopen(path, "w");
    if (f == NULL)
        abort();
    fputs(zone, f);
    fclose(f);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/support/mkzone.py %s/out example.test=%s",
             dir, path);
    if (system(cmd) != 0) {
        fprintf(stderr, "mkzone.py failed (ldnsutils installed? see tests/deps.sh)\n");
        exit(1);
    }
    /* A forwarder that never answers, for the timeout case. */
    udp = socket(AF_INET, SOCK_DGRAM, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (udp < 0 || bind(udp, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
        getsockname(udp, (struct sockaddr *)&sa, &sl) < 0)
        abort();
    snprintf(conf, sizeof(conf), "%s/out/unbound.conf", dir);
    snprintf(anchors, sizeof(anchors), "%s/out/trust-anchors", dir);
    f = fopen(conf, "a");
    if (f == NULL)
        abort();
    fprintf(f, "server:\n  do-not-query-localhost: no\n  domain-insecure: \"slow.test.\"\n"
               "forward-zone:\n  name: \"slow.test.\"\n  forward-addr: 127.0.0.1@%u\n",
            ntohs(sa.sin_port));
    fclose(f);
    /* udp stays open (and silent) for the life of the test. */
}

static void test_new(void)
{
    char err[256];
    struct dns_config c = {.unbound_config = conf, .trust_anchor = anchors};
    struct dns_config bad = {.unbound_config = "/nonexistent.conf", .trust_anchor = anchors};
    struct dns_config badta = {.unbound_config = conf, .trust_anchor = "/nonexistent.key"};

    CHECK(dns_resolver_new(&bad, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "/nonexistent.conf") != NULL);
    CHECK(dns_resolver_new(&badta, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "filtermail_trust_anchor") != NULL);
    res = dns_resolver_new(&c, err, sizeof(err));
    CHECKF(res != NULL, "dns_resolver_new: %s", err);
    if (res == NULL)
        exit(1);
}

static void test_mx(void)
{
    struct dns_result r;
    uint16_t pref;
    char name[256];
    int seen10 = 0, seen20 = 0;

    dns_lookup(res, "example.test", DNS_TYPE_MX, 5000, &r);
    CHECKF(r.status == DNS_OK, "status %d %s", r.status, r.why);
    CHECK(r.secure);
    CHECK_INT(r.n, 2);
    CHECK(r.ttl > 0 && r.ttl <= 300);
    for (size_t i = 0; i < r.n; i++) {
        CHECK(dns_mx_parse(&r.rr[i], &pref, name, sizeof(name)) == 0);
        if (pref == 10 && strcmp(name, "mx.example.test") == 0)
            seen10++;
        if (pref == 20 && strcmp(name, "mx2.example.test") == 0)
            seen20++;
    }
    CHECK(seen10 == 1 && seen20 == 1);
    dns_result_free(&r);

    dns_lookup(res, "nullmx.example.test.", DNS_TYPE_MX, 5000, &r);
    CHECK(r.status == DNS_OK && r.n == 1);
    if (r.n == 1) {
        CHECK(dns_mx_parse(&r.rr[0], &pref, name, sizeof(name)) == 0);
        CHECK(pref == 0 && name[0] == '\0');
    }
    dns_result_free(&r);

    dns_lookup(res, "nomx.example.test", DNS_TYPE_MX, 5000, &r);
    CHECKF(r.status == DNS_NODATA, "status %d", r.status);
    CHECK(r.secure);
    dns_result_free(&r);

    dns_lookup(res, "nx.example.test", DNS_TYPE_MX, 5000, &r);
    CHECKF(r.status == DNS_NXDOMAIN, "status %d", r.status);
    CHECK(r.secure);
    dns_result_free(&r);
}

static void test_txt(void)
{
    struct dns_result r;
    char txt[512];

    dns_lookup(res, "s1._domainkey.example.test", DNS_TYPE_TXT, 5000, &r);
    CHECK(r.status == DNS_OK && r.n == 1);
    if (r.n == 1) {
        CHECK(dns_txt_join(&r.rr[0], txt, sizeof(txt)) == 21);
        CHECK_STR(txt, "v=DKIM1; k=rsa; p=ABC");
        CHECK(dns_txt_join(&r.rr[0], txt, 5) == -1);
    }
    dns_result_free(&r);
}

static void test_bogus(void)
{
    struct dns_result r;

    dns_lookup(res, "bad._domainkey.example.test", DNS_TYPE_TXT, 5000, &r);
    CHECKF(r.status == DNS_TEMPFAIL, "status %d", r.status);
    CHECK(!r.secure);
    CHECK(strstr(r.why, "bogus") != NULL);
    CHECK(r.n == 0);
    dns_result_free(&r);
    dns_lookup(res, "bogusa.example.test", DNS_TYPE_A, 5000, &r);
    CHECKF(r.status == DNS_TEMPFAIL, "status %d", r.status);
    dns_result_free(&r);
}

static void test_timeout(void)
{
    struct dns_result r;
    dns_lookup(res, "x.slow.test", DNS_TYPE_A, 300, &r);
    CHECKF(r.status == DNS_TEMPFAIL, "status %d", r.status);
    CHECK(strstr(r.why, "timed out") != NULL);
    dns_result_free(&r);
}

/* Threads of this process (/proc/self/status). */
static unsigned threads(void)
{
    char line[256];
    unsigned n = 0;
    FILE *f = fopen("/proc/self/status", "re");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "Threads: %u", &n) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return n;
}

/* start_later: the resolver reads its files (zones, anchors) at once but
 * starts no thread until dns_resolver_start (a daemon drops privileges in
 * between); then it answers. */
static void test_start_later(void)
{
    char err[256];
    struct dns_config c = {.unbound_config = conf, .trust_anchor = anchors, .start_later = true};
    unsigned before = threads();
    struct dns_resolver *r = dns_resolver_new(&c, err, sizeof(err));
    CHECKF(r != NULL, "%s", err);
    if (r == NULL)
        return;
    CHECK_INT(threads(), before);
    CHECK_INT(dns_resolver_start(r, err, sizeof(err)), 0);
    CHECK(threads() > before);
    struct dns_result a;
    dns_lookup(r, "mx.example.test", DNS_TYPE_A, 5000, &a);
    CHECK(a.status == DNS_OK && a.secure);
    dns_result_free(&a);
    dns_resolver_free(&r);
}

/* A query given up without waiting (cancelled while pending, or after its
 * answer came) frees everything (LeakSanitizer) and leaves the resolver
 * answering. */
static void test_cancel(void)
{
    for (int i = 0; i < 20; i++) {
        dns_query_cancel(dns_query_start(res, "x.slow.test", DNS_TYPE_A));
        struct dns_query *q = dns_query_start(res, "mx.example.test", DNS_TYPE_A);
        if (i % 2)
            poll(NULL, 0, 20); /* the answer has come */
        dns_query_cancel(q);
    }
    dns_query_cancel(NULL);
    struct dns_result a;
    dns_lookup(res, "mx.example.test", DNS_TYPE_A, 5000, &a);
    CHECK(a.status == DNS_OK);
    dns_result_free(&a);
}

static void *worker(void *arg)
{
    int *ok = arg;
    for (int i = 0; i < 50; i++) {
        struct dns_result r;
        dns_lookup(res, (i % 2) ? "mx.example.test" : "bogusa.example.test", DNS_TYPE_A, 5000,
                   &r);
        if ((i % 2) ? r.status == DNS_OK : r.status == DNS_TEMPFAIL)
            (*ok)++;
        dns_result_free(&r);
    }
    return NULL;
}

static void test_threads(void)
{
    pthread_t t[8];
    int ok[8] = {0};
    for (int i = 0; i < 8; i++)
        pthread_create(&t[i], NULL, worker, &ok[i]);
    for (int i = 0; i < 8; i++) {
        pthread_join(t[i], NULL);
        CHECK_INT(ok[i], 50);
    }
}

static void test_rdata(void)
{
    static const unsigned char mx[] = {0, 5, 2, 'm', 'x', 7, 'E', 'x', 'a', 'm', 'p', 'l', 'e',
                                       0};
    static const unsigned char loop[] = {0, 5, 0xc0, 0x02};
    static const unsigned char evil[] = {0, 5, 3, 'a', '/', 'b', 0};
    static const unsigned char txt_bad[] = {5, 'a', 'b'};
    struct dns_rr rr = {mx, sizeof(mx)};
    uint16_t pref;
    char name[64];

    CHECK(dns_mx_parse(&rr, &pref, name, sizeof(name)) == 0);
    CHECK(pref == 5);
    CHECK_STR(name, "mx.example");
    CHECK(dns_mx_parse(&rr, &pref, name, 5) == -1);
    rr = (struct dns_rr){loop, sizeof(loop)};
    CHECK(dns_mx_parse(&rr, &pref, name, sizeof(name)) == -1);
    rr = (struct dns_rr){evil, sizeof(evil)};
    CHECK(dns_mx_parse(&rr, &pref, name, sizeof(name)) == -1);
    rr = (struct dns_rr){txt_bad, sizeof(txt_bad)};
    CHECK(dns_txt_join(&rr, name, sizeof(name)) == -1);
}

int main(void)
{
    char cmd[300];
    setup();
    UNIT_RUN(test_new);
    UNIT_RUN(test_mx);
    UNIT_RUN(test_txt);
    UNIT_RUN(test_bogus);
    UNIT_RUN(test_timeout);
    UNIT_RUN(test_threads);
    UNIT_RUN(test_start_later);
    UNIT_RUN(test_cancel);
    UNIT_RUN(test_rdata);
    dns_resolver_free(&res);
    CHECK(res == NULL);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", dir);
    return unit_summary();
}
