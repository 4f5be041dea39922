/* dkimcheck: libopendkim with strict alignment, DNSSEC keys and a TTL cache. */
#include "dkimcheck.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#include <opendkim/dkim.h>

#include "clock.h"

/* A key record, as fetched: normalised text and when it expires. */
struct key_entry {
    char name[256];
    char *txt;
    uint64_t expires_ns;       /* monotonic */
    struct key_entry *hnext;   /* hash chain */
    TAILQ_ENTRY(key_entry) lru;    /* LRU list, most recent first */
};

#define CACHE_BUCKETS 2048

/* glibc's <sys/queue.h> tail queue, as in the policy server's lists. */
TAILQ_HEAD(key_lru, key_entry);

struct dkimcheck {
    DKIM_LIB *lib;
    struct dns_resolver *dns;
    int timeout_ms;
    pthread_mutex_t lock;      /* guards the cache */
    struct key_entry *buckets[CACHE_BUCKETS];
    struct key_lru lru;
    size_t cached;
    uint64_t lookups, hits;
};

/* A key lookup started for one of the message's signatures. */
struct pending {
    char name[300];
    struct dns_query *q;       /* NULL once waited for */
};

struct dkimcheck_msg {
    struct dkimcheck *c;
    /* Key lookups: all started at the first one, sharing one deadline, so a
     * sender whose DNS never answers costs one timeout per message, not one
     * per signature. */
    bool lookups_started;
    uint64_t deadline_ns;      /* monotonic */
    struct pending pending[DKIMCHECK_MAX_SIGNATURES];
    size_t npending;
    /* Keys served from the cache, checked again when their signature fails. */
    char cached[DKIMCHECK_MAX_SIGNATURES][300];
    size_t ncached;
    DKIM *dkim;
    bool nosig;                /* libopendkim found no signature it will evaluate */
    size_t sig_fields;         /* DKIM-Signature fields seen */
    bool broken;               /* libopendkim refused the message early */
    bool finished;
    char from_domain[256];     /* lowercased; empty when there is none */
    bool tempfail;             /* an aligned signature's key lookup failed temporarily */
    char tempfail_why[512];
};

size_t dkimcheck_normalize_txt(char *txt, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char ch = txt[i];
        if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n' && ch != '"')
            txt[o++] = ch;
    }
    txt[o] = '\0';
    return o;
}

static unsigned cache_hash(const char *name)
{
    unsigned h = 2166136261u;
    for (; *name != '\0'; name++) {
        unsigned char ch = (unsigned char)*name;
        if (ch >= 'A' && ch <= 'Z')
            ch = (unsigned char)(ch - 'A' + 'a');
        h = (h ^ ch) * 16777619u;
    }
    return h % CACHE_BUCKETS;
}

/* Removes an entry (lock held). */
static void cache_remove(struct dkimcheck *c, struct key_entry *e)
{
    struct key_entry **pp = &c->buckets[cache_hash(e->name)];
    while (*pp != NULL && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp == e)
        *pp = e->hnext;
    TAILQ_REMOVE(&c->lru, e, lru);
    free(e->txt);
    free(e);
    c->cached--;
}

static struct key_entry *cache_find(struct dkimcheck *c, const char *name)
{
    for (struct key_entry *e = c->buckets[cache_hash(name)]; e != NULL; e = e->hnext)
        if (strcasecmp(e->name, name) == 0)
            return e;
    return NULL;
}

/* Copies a cached record into buf when fresh. Returns true on a hit. */
static bool cache_get(struct dkimcheck *c, const char *name, unsigned char *buf, size_t buflen)
{
    bool hit = false;
    pthread_mutex_lock(&c->lock);
    c->lookups++;
    struct key_entry *e = cache_find(c, name);
    if (e != NULL && e->expires_ns <= clock_mono_ns()) {
        cache_remove(c, e);
        e = NULL;
    }
    if (e != NULL && strlen(e->txt) < buflen) {
        memcpy(buf, e->txt, strlen(e->txt) + 1);
        TAILQ_REMOVE(&c->lru, e, lru);
        TAILQ_INSERT_HEAD(&c->lru, e, lru);
        c->hits++;
        hit = true;
    }
    pthread_mutex_unlock(&c->lock);
    return hit;
}

static void cache_put(struct dkimcheck *c, const char *name, const char *txt, uint32_t ttl)
{
    if (ttl == 0 || strlen(name) >= sizeof(((struct key_entry *)0)->name))
        return;
    if (ttl > DKIMCHECK_CACHE_MAX_TTL)
        ttl = DKIMCHECK_CACHE_MAX_TTL;
    struct key_entry *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return;
    n->txt = strdup(txt);
    if (n->txt == NULL) {
        free(n);
        return;
    }
    snprintf(n->name, sizeof(n->name), "%s", name);
    n->expires_ns = clock_mono_ns() + (uint64_t)ttl * CLOCK_NS_PER_SEC;
    pthread_mutex_lock(&c->lock);
    struct key_entry *old = cache_find(c, name);
    if (old != NULL)
        cache_remove(c, old);
    while (c->cached >= DKIMCHECK_CACHE_SIZE && !TAILQ_EMPTY(&c->lru))
        cache_remove(c, TAILQ_LAST(&c->lru, key_lru));
    unsigned h = cache_hash(name);
    n->hnext = c->buckets[h];
    c->buckets[h] = n;
    TAILQ_INSERT_HEAD(&c->lru, n, lru);
    c->cached++;
    pthread_mutex_unlock(&c->lock);
}

static void cache_drop(struct dkimcheck *c, const char *name)
{
    pthread_mutex_lock(&c->lock);
    struct key_entry *e = cache_find(c, name);
    if (e != NULL)
        cache_remove(c, e);
    pthread_mutex_unlock(&c->lock);
}

void dkimcheck_cache_stats(struct dkimcheck *c, uint64_t *lookups_r, uint64_t *hits_r)
{
    pthread_mutex_lock(&c->lock);
    *lookups_r = c->lookups;
    *hits_r = c->hits;
    pthread_mutex_unlock(&c->lock);
}

/* True when s is a dot-separated hostname-like name: labels of 1 to 63
 * letters, digits, '-' or '_' (no empty label: no leading, trailing or
 * double dot). */
static bool dns_name_ok(const char *s)
{
    size_t label = 0;
    if (*s == '\0')
        return false;
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '.') {
            if (label == 0)
                return false;
            label = 0;
        } else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_') {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0;
}

/* Builds <selector>._domainkey.<domain> from signature tags, which come from
 * the peer: only well-formed names go to the resolver. A malformed one
 * (s=a..b, a 64-character label, s=.a, s=a.) is the signer's fault and makes
 * that signature fail for good (no key), never a DNS failure retried for
 * days: libunbound would refuse the name. */
static int key_name(DKIM_SIGINFO *sig, char *out, size_t outlen)
{
    const char *sel = (const char *)dkim_sig_getselector(sig);
    const char *dom = (const char *)dkim_sig_getdomain(sig);
    if (sel == NULL || dom == NULL || !dns_name_ok(sel) || !dns_name_ok(dom))
        return -1;
    int n = snprintf(out, outlen, "%s._domainkey.%s", sel, dom);
    return (n < 0 || (size_t)n >= outlen || n > 253) ? -1 : 0;
}

static bool cache_has(struct dkimcheck *c, const char *name)
{
    pthread_mutex_lock(&c->lock);
    struct key_entry *e = cache_find(c, name);
    bool fresh = e != NULL && e->expires_ns > clock_mono_ns();
    pthread_mutex_unlock(&c->lock);
    return fresh;
}

/* At the first key lookup of a message: starts the lookups of every
 * signature still evaluated whose key is not cached, at once, and sets the
 * one deadline they share. */
static void start_lookups(struct dkimcheck_msg *m, DKIM *dkim)
{
    DKIM_SIGINFO **sigs = NULL;
    int nsigs = 0;

    m->lookups_started = true;
    m->deadline_ns = clock_mono_ns() + (uint64_t)m->c->timeout_ms * CLOCK_NS_PER_MS;
    if (dkim_getsiglist(dkim, &sigs, &nsigs) != DKIM_STAT_OK)
        return;
    for (int i = 0; i < nsigs && m->npending < DKIMCHECK_MAX_SIGNATURES; i++) {
        struct pending *p = &m->pending[m->npending];
        if ((dkim_sig_getflags(sigs[i]) & DKIM_SIGFLAG_IGNORE) ||
            key_name(sigs[i], p->name, sizeof(p->name)) < 0 || cache_has(m->c, p->name))
            continue;
        bool dup = false;
        for (size_t k = 0; k < m->npending && !dup; k++)
            dup = strcasecmp(m->pending[k].name, p->name) == 0;
        if (dup)
            continue;
        p->q = dns_query_start(m->c->dns, p->name, DNS_TYPE_TXT);
        if (p->q != NULL)
            m->npending++;
    }
}

/* The answer for name within what is left of the message's deadline. */
static void lookup_within_budget(struct dkimcheck_msg *m, const char *name, struct dns_result *r)
{
    uint64_t now = clock_mono_ns();
    int left_ms = now >= m->deadline_ns ? 0 : (int)((m->deadline_ns - now) / CLOCK_NS_PER_MS);
    for (size_t i = 0; i < m->npending; i++) {
        struct pending *p = &m->pending[i];
        if (p->q != NULL && strcasecmp(p->name, name) == 0) {
            dns_query_wait(p->q, left_ms, r);
            p->q = NULL;
            return;
        }
    }
    /* Not started with the others (the same name asked twice, or the start
     * failed): on its own, within the same budget. */
    dns_lookup(m->c->dns, name, DNS_TYPE_TXT, left_ms, r);
}

/* The key record of an answer: of up to three records, each normalised
 * (spec 6.5), the first that carries a key (p=). */
static bool key_record(const struct dns_result *r, char *buf, size_t buflen)
{
    char txt[4096];
    for (size_t i = 0; i < r->n && i < 3; i++) {
        int n = dns_txt_join(&r->rr[i], txt, sizeof(txt));
        if (n < 0)
            continue;
        size_t len = dkimcheck_normalize_txt(txt, (size_t)n);
        if ((strncmp(txt, "p=", 2) == 0 || strstr(txt, ";p=") != NULL) && len < buflen) {
            memcpy(buf, txt, len + 1);
            return true;
        }
    }
    return false;
}

/* A signature failed with a cached key: the key may have been rotated, or the
 * signature forged. Asks DNS again (within the message's budget) and
 * replaces the cached record only when DNS now says something else, so
 * forged signatures cannot evict a popular domain's key. */
static void recheck_cached_key(struct dkimcheck_msg *m, const char *name)
{
    struct dns_result r;
    char rec[4096];
    bool served = false;

    for (size_t i = 0; i < m->ncached && !served; i++)
        served = strcasecmp(m->cached[i], name) == 0;
    if (!served)
        return; /* fetched for this message: nothing older to doubt */
    lookup_within_budget(m, name, &r);
    if (r.status == DNS_NXDOMAIN || r.status == DNS_NODATA)
        cache_drop(m->c, name); /* the key was withdrawn */
    else if (r.status == DNS_OK && key_record(&r, rec, sizeof(rec)))
        cache_put(m->c, name, rec, r.ttl); /* the same record: a fresh TTL */
    dns_result_free(&r);
}

/* libopendkim's key lookup, over the DNSSEC-validating resolver. */
static DKIM_CBSTAT key_lookup(DKIM *dkim, DKIM_SIGINFO *sig, u_char *buf, size_t buflen)
{
    struct dkimcheck_msg *m = dkim_get_user_context(dkim);
    struct dkimcheck *c = m->c;
    struct dns_result r;
    char name[300];
    bool found = false;

    if (key_name(sig, name, sizeof(name)) < 0)
        return DKIM_CBSTAT_NOTFOUND;
    if (!m->lookups_started)
        start_lookups(m, dkim);
    if (cache_get(c, name, buf, buflen)) {
        if (m->ncached < DKIMCHECK_MAX_SIGNATURES)
            snprintf(m->cached[m->ncached++], sizeof(m->cached[0]), "%s", name);
        return DKIM_CBSTAT_CONTINUE;
    }
    lookup_within_budget(m, name, &r);
    switch (r.status) {
    case DNS_TEMPFAIL:
        m->tempfail = true;
        snprintf(m->tempfail_why, sizeof(m->tempfail_why), "%s: %s", name, r.why);
        dkim_sig_setdnssec(sig, strstr(r.why, "bogus") ? DKIM_DNSSEC_BOGUS : DKIM_DNSSEC_UNKNOWN);
        dns_result_free(&r);
        return DKIM_CBSTAT_TRYAGAIN;
    case DNS_NXDOMAIN:
    case DNS_NODATA:
        dns_result_free(&r);
        return DKIM_CBSTAT_NOTFOUND;
    case DNS_OK:
        break;
    }
    found = key_record(&r, (char *)buf, buflen);
    dkim_sig_setdnssec(sig, r.secure ? DKIM_DNSSEC_SECURE : DKIM_DNSSEC_INSECURE);
    if (found)
        cache_put(c, name, (const char *)buf, r.ttl);
    dns_result_free(&r);
    return found ? DKIM_CBSTAT_CONTINUE : DKIM_CBSTAT_NOTFOUND;
}

/* Before any key lookup: keep the first ten signatures, drop those whose d= is
 * not the From domain and those that can never pass (SHA-1). */
static DKIM_CBSTAT prescreen(DKIM *dkim, DKIM_SIGINFO **sigs, int nsigs)
{
    struct dkimcheck_msg *m = dkim_get_user_context(dkim);
    for (int i = 0; i < nsigs; i++) {
        const char *d = (const char *)dkim_sig_getdomain(sigs[i]);
        dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
        dkim_sig_getsignalg(sigs[i], &alg);
        if (i >= DKIMCHECK_MAX_SIGNATURES || d == NULL || m->from_domain[0] == '\0' ||
            strcasecmp(d, m->from_domain) != 0 || alg == DKIM_SIGN_RSASHA1)
            dkim_sig_ignore(sigs[i]);
    }
    return DKIM_CBSTAT_CONTINUE;
}

struct dkimcheck *dkimcheck_new(struct dns_resolver *dns, int dns_timeout_ms, char *err,
                                size_t errlen)
{
    struct dkimcheck *c = calloc(1, sizeof(*c));
    unsigned flags = DKIM_LIBFLAGS_DELAYSIGPROC | DKIM_LIBFLAGS_BADSIGHANDLES;
    unsigned minbits = 1024;
    uint64_t drift = 300;

    if (c == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->lock, NULL);
    TAILQ_INIT(&c->lru);
    c->dns = dns;
    c->timeout_ms = dns_timeout_ms;
    c->lib = dkim_init(NULL, NULL);
    if (c->lib == NULL) {
        snprintf(err, errlen, "cannot initialise libopendkim");
        dkimcheck_free(&c);
        return NULL;
    }
    if (!dkim_libfeature(c->lib, DKIM_FEATURE_ED25519)) {
        snprintf(err, errlen, "libopendkim lacks Ed25519 (RFC 8463) support");
        dkimcheck_free(&c);
        return NULL;
    }
    if (dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_FLAGS, &flags, sizeof(flags)) !=
            DKIM_STAT_OK ||
        dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_MINKEYBITS, &minbits, sizeof(minbits)) !=
            DKIM_STAT_OK ||
        dkim_options(c->lib, DKIM_OP_SETOPT, DKIM_OPTS_CLOCKDRIFT, &drift, sizeof(drift)) !=
            DKIM_STAT_OK ||
        dkim_set_key_lookup(c->lib, key_lookup) != DKIM_STAT_OK ||
        dkim_set_prescreen(c->lib, prescreen) != DKIM_STAT_OK) {
        snprintf(err, errlen, "cannot configure libopendkim");
        dkimcheck_free(&c);
        return NULL;
    }
    return c;
}

void dkimcheck_free(struct dkimcheck **cp)
{
    struct dkimcheck *c = *cp;
    if (c == NULL)
        return;
    while (!TAILQ_EMPTY(&c->lru))
        cache_remove(c, TAILQ_FIRST(&c->lru));
    if (c->lib != NULL)
        dkim_close(c->lib);
    pthread_mutex_destroy(&c->lock);
    free(c);
    *cp = NULL;
}

struct dkimcheck_msg *dkimcheck_msg_new(struct dkimcheck *c, const char *id)
{
    struct dkimcheck_msg *m = calloc(1, sizeof(*m));
    DKIM_STAT st;
    if (m == NULL)
        return NULL;
    m->c = c;
    m->dkim = dkim_verify(c->lib, (const unsigned char *)(id != NULL ? id : "msg"), NULL, &st);
    if (m->dkim == NULL) {
        free(m);
        return NULL;
    }
    dkim_set_user_context(m->dkim, m);
    return m;
}

void dkimcheck_msg_free(struct dkimcheck_msg **mp)
{
    struct dkimcheck_msg *m = *mp;
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->npending; i++)
        dns_query_cancel(m->pending[i].q);
    if (m->dkim != NULL)
        dkim_free(m->dkim);
    free(m);
    *mp = NULL;
}

void dkimcheck_header(struct dkimcheck_msg *m, const char *field, size_t len)
{
    static const char name[] = "DKIM-Signature:";
    if (len >= sizeof(name) - 1 && strncasecmp(field, name, sizeof(name) - 1) == 0)
        m->sig_fields++;
    if (m->broken || m->nosig)
        return;
    if (dkim_header(m->dkim, (u_char *)field, len) != DKIM_STAT_OK)
        m->broken = true;
}

void dkimcheck_eoh(struct dkimcheck_msg *m, const char *from_domain)
{
    if (from_domain != NULL && strlen(from_domain) < sizeof(m->from_domain))
        snprintf(m->from_domain, sizeof(m->from_domain), "%s", from_domain);
    if (m->broken || m->nosig)
        return;
    DKIM_STAT st = dkim_eoh(m->dkim);
    if (st == DKIM_STAT_NOSIG)
        m->nosig = true; /* none left after prescreen; the handle is done */
    else if (st != DKIM_STAT_OK)
        m->broken = true;
}

void dkimcheck_body(struct dkimcheck_msg *m, const void *data, size_t len)
{
    if (m->broken || m->nosig)
        return;
    if (dkim_body(m->dkim, (u_char *)data, len) != DKIM_STAT_OK)
        m->broken = true;
}

enum verdict_origin dkimcheck_finish(struct dkimcheck_msg *m, size_t from_count,
                                     size_t from_addresses, char *why, size_t whylen)
{
    const char *from_domain = m->from_domain;
    DKIM_SIGINFO **sigs = NULL;
    int nsigs = 0;
    bool aligned_seen = false;

    snprintf(why, whylen, "no valid signature");
    if (m->finished)
        return ORIGIN_NO_VALID_SIGNATURE;
    m->finished = true;
    if (m->sig_fields == 0) {
        snprintf(why, whylen, "no DKIM-Signature field");
        return ORIGIN_NO_SIGNATURE;
    }
    if (from_count != 1 || from_addresses != 1 || from_domain[0] == '\0') {
        snprintf(why, whylen, "%zu From fields, %zu addresses in the first; need exactly one",
                 from_count, from_addresses);
        return ORIGIN_NO_VALID_SIGNATURE;
    }
    if (m->nosig) {
        snprintf(why, whylen, "no signature with d=%s among the first %d", from_domain,
                 DKIMCHECK_MAX_SIGNATURES);
        return ORIGIN_NO_VALID_SIGNATURE;
    }
    if (m->broken) {
        snprintf(why, whylen, "malformed message or signature (%s)", dkim_geterror(m->dkim)
                                                                        ? dkim_geterror(m->dkim)
                                                                        : "libopendkim");
        return ORIGIN_NO_VALID_SIGNATURE;
    }
    DKIM_STAT st = dkim_eom(m->dkim, NULL);
    if (dkim_getsiglist(m->dkim, &sigs, &nsigs) != DKIM_STAT_OK)
        nsigs = 0;
    for (int i = 0; i < nsigs; i++) {
        DKIM_SIGINFO *s = sigs[i];
        if (dkim_sig_getflags(s) & DKIM_SIGFLAG_IGNORE)
            continue;
        aligned_seen = true;
        dkim_alg_t alg = DKIM_SIGN_UNKNOWN;
        dkim_sig_getsignalg(s, &alg);
        const char *d = (const char *)dkim_sig_getdomain(s);
        if (DKIM_SIG_CHECK(s) && dkim_sig_geterror(s) == DKIM_SIGERROR_OK &&
            alg != DKIM_SIGN_RSASHA1 && d != NULL && strcasecmp(d, from_domain) == 0) {
            snprintf(why, whylen, "d=%s s=%s verified", d, dkim_sig_getselector(s));
            return ORIGIN_PASS;
        }
        int e = dkim_sig_geterror(s);
        if (e == DKIM_SIGERROR_BADSIG || e == DKIM_SIGERROR_KEYDECODE ||
            dkim_sig_getbh(s) == DKIM_SIGBH_MISMATCH) {
            char name[300];
            if (key_name(s, name, sizeof(name)) == 0)
                recheck_cached_key(m, name);
        }
        snprintf(why, whylen, "d=%s s=%s: %s", d != NULL ? d : "?",
                 dkim_sig_getselector(s) != NULL ? (const char *)dkim_sig_getselector(s) : "?",
                 dkim_sig_getbh(s) == DKIM_SIGBH_MISMATCH
                     ? "body hash mismatch"
                     : dkim_sig_geterrorstr(e) != NULL ? dkim_sig_geterrorstr(e)
                                                       : dkim_getresultstr(st));
    }
    if (m->tempfail) {
        snprintf(why, whylen, "key lookup failed: %s", m->tempfail_why);
        return ORIGIN_TEMPFAIL;
    }
    if (!aligned_seen)
        snprintf(why, whylen, "no signature with d=%s among the first %d", from_domain,
                 DKIMCHECK_MAX_SIGNATURES);
    return ORIGIN_NO_VALID_SIGNATURE;
}
