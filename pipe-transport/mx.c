/* mx: MX, address and TLSA answers turned into delivery decisions. */
#include "mx.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"

/* Equal preferences are shuffled: the key orders them, the random number
 * picks the order. */
struct mx_sortable {
    struct mx_host h;
    uint32_t key;
};

static int mx_cmp(const void *a, const void *b)
{
    const struct mx_sortable *x = a, *y = b;
    if (x->h.pref != y->h.pref)
        return x->h.pref < y->h.pref ? -1 : 1;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return strcmp(x->h.name, y->h.name);
}

static uint32_t mx_mix(uint32_t random, const char *name)
{
    uint32_t h = 2166136261u ^ random;
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 12;
    return h;
}

enum mx_status mx_from_records(const struct dns_rr *rr, size_t n, uint32_t random,
                               struct mx_host *hosts, size_t max, size_t *n_r)
{
    struct mx_sortable *all = calloc(n ? n : 1, sizeof(*all));
    size_t k = 0, dots = 0;

    *n_r = 0;
    if (all == NULL)
        return MX_TEMPFAIL;
    for (size_t i = 0; i < n; i++) {
        struct mx_sortable s;
        if (dns_mx_parse(&rr[i], &s.h.pref, s.h.name, sizeof(s.h.name)) < 0)
            continue;
        if (s.h.name[0] == '\0') {
            dots++;
            continue;
        }
        /* Duplicates: the lowest preference stays. */
        bool dup = false;
        for (size_t j = 0; j < k; j++) {
            if (strcmp(all[j].h.name, s.h.name) == 0) {
                if (s.h.pref < all[j].h.pref)
                    all[j].h.pref = s.h.pref;
                dup = true;
            }
        }
        if (dup)
            continue;
        s.key = mx_mix(random, s.h.name);
        all[k++] = s;
    }
    if (k == 0) {
        free(all);
        return dots > 0 ? MX_NULL : MX_TEMPFAIL;
    }
    qsort(all, k, sizeof(*all), mx_cmp);
    for (size_t i = 0; i < k && i < max; i++)
        hosts[i] = all[i].h;
    *n_r = k < max ? k : max;
    free(all);
    return MX_OK;
}

void mx_lookup(struct dns_resolver *r, const char *domain, int timeout_ms, uint32_t random,
               struct mx_result *out)
{
    struct dns_result res;

    memset(out, 0, sizeof(*out));
    dns_lookup(r, domain, DNS_TYPE_MX, timeout_ms, &res);
    out->secure = res.secure;
    switch (res.status) {
    case DNS_OK:
        out->status = mx_from_records(res.rr, res.n, random, out->hosts, MX_MAX_HOSTS, &out->n);
        if (out->status == MX_TEMPFAIL)
            snprintf(out->why, sizeof(out->why), "malformed MX records");
        break;
    case DNS_NODATA:
        out->status = MX_IMPLICIT;
        snprintf(out->hosts[0].name, sizeof(out->hosts[0].name), "%s", domain);
        out->hosts[0].pref = 0;
        out->n = 1;
        break;
    case DNS_NXDOMAIN:
        out->status = MX_NXDOMAIN;
        break;
    case DNS_TEMPFAIL:
        out->status = MX_TEMPFAIL;
        snprintf(out->why, sizeof(out->why), "%s", res.why);
        break;
    }
    dns_result_free(&res);
}

void mx_addrs_interleave(struct sockaddr_storage *sa, size_t n)
{
    struct sockaddr_storage v6[MX_MAX_ADDRS * 2], v4[MX_MAX_ADDRS * 2];
    size_t n6 = 0, n4 = 0, o = 0;
    if (n > MX_MAX_ADDRS * 2)
        n = MX_MAX_ADDRS * 2;
    for (size_t i = 0; i < n; i++) {
        if (sa[i].ss_family == AF_INET6)
            v6[n6++] = sa[i];
        else
            v4[n4++] = sa[i];
    }
    for (size_t i = 0; o < n; i++) {
        if (i < n6)
            sa[o++] = v6[i];
        if (i < n4 && o < n)
            sa[o++] = v4[i];
    }
}

/* Adds the records of one answer; returns how many were usable. */
static size_t mx_add_answer(const struct dns_result *res, int family, uint16_t port,
                            struct sockaddr_storage *sa, size_t *n, size_t max)
{
    size_t added = 0;
    for (size_t i = 0; i < res->n && *n < max; i++) {
        struct sockaddr_storage s;
        memset(&s, 0, sizeof(s));
        if (family == AF_INET && res->rr[i].len == 4) {
            struct sockaddr_in *in = (struct sockaddr_in *)&s;
            in->sin_family = AF_INET;
            in->sin_port = htons(port);
            memcpy(&in->sin_addr, res->rr[i].data, 4);
        } else if (family == AF_INET6 && res->rr[i].len == 16) {
            struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&s;
            in6->sin6_family = AF_INET6;
            in6->sin6_port = htons(port);
            memcpy(&in6->sin6_addr, res->rr[i].data, 16);
        } else {
            continue;
        }
        sa[(*n)++] = s;
        added++;
    }
    return added;
}

void mx_addrs_from_answers(const struct dns_result *a, const struct dns_result *aaaa,
                           uint16_t port, struct mx_addrs *out)
{
    struct sockaddr_storage all[MX_MAX_ADDRS * 2];
    size_t n = 0;
    bool secure = true, tempfail = false;
    const char *why = NULL;

    memset(out, 0, sizeof(*out));
    const struct dns_result *answers[2] = {aaaa, a};
    const int families[2] = {AF_INET6, AF_INET};
    for (int k = 0; k < 2; k++) {
        const struct dns_result *res = answers[k];
        if (res == NULL)
            continue;
        if (res->status == DNS_TEMPFAIL) {
            tempfail = true;
            why = res->why;
            continue;
        }
        /* Whatever is used must be validated for DANE, and so must a denial. */
        if (!res->secure)
            secure = false;
        if (res->status == DNS_OK)
            mx_add_answer(res, families[k], port, all, &n, n + MX_MAX_ADDRS);
    }
    if (n == 0) {
        out->status = tempfail ? MX_ADDR_TEMPFAIL : MX_ADDR_NONE;
        snprintf(out->why, sizeof(out->why), "%s",
                 tempfail ? why : "no A or AAAA record");
        return;
    }
    mx_addrs_interleave(all, n);
    if (n > MX_MAX_ADDRS)
        n = MX_MAX_ADDRS;
    memcpy(out->sa, all, n * sizeof(all[0]));
    out->n = n;
    out->status = MX_ADDR_OK;
    /* One family failing to validate must not make the other look secure. */
    out->secure = secure && !tempfail;
}

void mx_resolve(struct dns_resolver *r, const char *host, uint16_t port, int timeout_ms,
                struct mx_addrs *out)
{
    struct dns_result a, aaaa;
    struct dns_query *qa = dns_query_start(r, host, DNS_TYPE_A);
    struct dns_query *q6 = dns_query_start(r, host, DNS_TYPE_AAAA);

    uint64_t t0 = clock_mono_ms();
    memset(&a, 0, sizeof(a));
    memset(&aaaa, 0, sizeof(aaaa));
    if (qa != NULL) {
        dns_query_wait(qa, timeout_ms, &a);
    } else {
        a.status = DNS_TEMPFAIL;
        snprintf(a.why, sizeof(a.why), "cannot start the query");
    }
    if (q6 != NULL) {
        /* Both queries run at once: the second gets what is left of the one
         * timeout, so a host costs at most timeout_ms, not twice that. */
        uint64_t spent = clock_mono_ms() - t0;
        int left = spent >= (uint64_t)timeout_ms ? 0 : (int)((uint64_t)timeout_ms - spent);
        dns_query_wait(q6, left, &aaaa);
    } else {
        aaaa.status = DNS_TEMPFAIL;
        snprintf(aaaa.why, sizeof(aaaa.why), "cannot start the query");
    }
    mx_addrs_from_answers(&a, &aaaa, port, out);
    dns_result_free(&a);
    dns_result_free(&aaaa);
}

void mx_tlsa_from_records(const struct dns_rr *rr, size_t n, struct mx_tlsa *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < n && out->n < MX_MAX_TLSA; i++) {
        const unsigned char *d = rr[i].data;
        size_t len = rr[i].len;
        if (len < 4)
            continue;
        uint8_t usage = d[0], selector = d[1], mtype = d[2];
        size_t dl = len - 3;
        /* PKIX usages (0, 1) are not used for SMTP (RFC 7672 3.1.3). */
        if ((usage != 2 && usage != 3) || selector > 1 || mtype > 2)
            continue;
        if ((mtype == 1 && dl != 32) || (mtype == 2 && dl != 64) ||
            (mtype == 0 && dl > sizeof(out->rr[0].data)))
            continue;
        struct mx_tlsa_rr *t = &out->rr[out->n++];
        t->usage = usage;
        t->selector = selector;
        t->mtype = mtype;
        t->len = dl;
        memcpy(t->data, d + 3, dl);
    }
    out->status = out->n > 0 ? MX_TLSA_USABLE : (n > 0 ? MX_TLSA_UNUSABLE : MX_TLSA_NONE);
}

void mx_tlsa_lookup(struct dns_resolver *r, const char *host, uint16_t port, int timeout_ms,
                    struct mx_tlsa *out)
{
    char name[300];
    struct dns_result res;

    memset(out, 0, sizeof(*out));
    snprintf(name, sizeof(name), "_%u._tcp.%s", (unsigned)port, host);
    dns_lookup(r, name, DNS_TYPE_TLSA, timeout_ms, &res);
    if (res.status == DNS_TEMPFAIL) {
        out->status = MX_TLSA_TEMPFAIL;
        snprintf(out->why, sizeof(out->why), "%s", res.why);
    } else if (res.status == DNS_OK && res.secure) {
        mx_tlsa_from_records(res.rr, res.n, out);
    } else {
        out->status = MX_TLSA_NONE;
    }
    dns_result_free(&res);
}
