/* dns: libunbound with DNSSEC validation and bounded waits. */
#include "dns.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <unbound.h>

#include "clock.h"

struct dns_resolver {
    struct ub_ctx *ctx;
    pthread_t pump;
    int stop_pipe[2];     /* a byte here stops the pump */
    bool pump_running;
    pthread_mutex_t lock; /* guards every query's state */
};

enum query_state { Q_PENDING, Q_DONE, Q_ABANDONED };

struct dns_query {
    struct dns_resolver *r;
    int async_id;
    enum query_state state;
    int err;              /* libunbound error from the callback */
    struct ub_result *result;
    pthread_cond_t cond;
};

static void query_free(struct dns_query *q)
{
    if (q->result != NULL)
        ub_resolve_free(q->result);
    pthread_cond_destroy(&q->cond);
    free(q);
}

/* libunbound calls this from ub_process(), in the pump thread. */
static void dns_callback(void *arg, int err, struct ub_result *result)
{
    struct dns_query *q = arg;
    struct dns_resolver *r = q->r;

    pthread_mutex_lock(&r->lock);
    if (q->state == Q_ABANDONED) {
        /* The waiter gave up but the cancel came too late: we own it now. */
        pthread_mutex_unlock(&r->lock);
        if (result != NULL)
            ub_resolve_free(result);
        q->result = NULL;
        query_free(q);
        return;
    }
    q->err = err;
    q->result = result;
    q->state = Q_DONE;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&r->lock);
}

static void *dns_pump(void *arg)
{
    struct dns_resolver *r = arg;
    struct pollfd pfd[2] = {{.fd = ub_fd(r->ctx), .events = POLLIN},
                            {.fd = r->stop_pipe[0], .events = POLLIN}};
    for (;;) {
        int n = poll(pfd, 2, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (pfd[1].revents & (POLLIN | POLLHUP)))
            break;
        if (pfd[0].revents & POLLIN)
            ub_process(r->ctx);
    }
    return NULL;
}

struct dns_resolver *dns_resolver_new(const struct dns_config *cfg, char *err, size_t errlen)
{
    struct dns_resolver *r = calloc(1, sizeof(*r));
    int e;

    if (r == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    r->stop_pipe[0] = r->stop_pipe[1] = -1;
    pthread_mutex_init(&r->lock, NULL);
    r->ctx = ub_ctx_create();
    if (r->ctx == NULL) {
        snprintf(err, errlen, "cannot create the libunbound context");
        goto fail;
    }
    if (cfg->unbound_config != NULL && cfg->unbound_config[0] != '\0') {
        e = ub_ctx_config(r->ctx, cfg->unbound_config);
        if (e != 0) {
            snprintf(err, errlen, "filtermail_unbound_config %s: %s", cfg->unbound_config,
                     ub_strerror(e));
            goto fail;
        }
    } else {
        e = ub_ctx_resolvconf(r->ctx, NULL);
        if (e != 0) {
            snprintf(err, errlen, "/etc/resolv.conf: %s", ub_strerror(e));
            goto fail;
        }
    }
    /* libunbound reads the anchor file only at the first query; check now so
     * a wrong path is a start-up error, not a temporary failure per message. */
    FILE *ta = fopen(cfg->trust_anchor, "r");
    if (ta == NULL) {
        snprintf(err, errlen, "filtermail_trust_anchor %s: %s", cfg->trust_anchor,
                 strerror(errno));
        goto fail;
    }
    fclose(ta);
    e = ub_ctx_add_ta_file(r->ctx, cfg->trust_anchor);
    if (e != 0) {
        snprintf(err, errlen, "filtermail_trust_anchor %s: %s", cfg->trust_anchor,
                 ub_strerror(e));
        goto fail;
    }
    /* A relay that was just set up must be reachable at once (upstream P10). */
    if ((e = ub_ctx_set_option(r->ctx, "cache-max-negative-ttl:", "0")) != 0 ||
        (e = ub_ctx_async(r->ctx, 1)) != 0) {
        snprintf(err, errlen, "libunbound: %s", ub_strerror(e));
        goto fail;
    }
    /* One local query makes libunbound read its files (trust anchor, auth
     * zones) now, while a daemon still has the privileges to read them; the
     * localhost zone is answered locally, without the network. */
    struct ub_result *warm = NULL;
    e = ub_resolve(r->ctx, "localhost.", 1 /* A */, 1 /* IN */, &warm);
    if (warm != NULL)
        ub_resolve_free(warm);
    if (e != 0) {
        snprintf(err, errlen, "libunbound: %s", ub_strerror(e));
        goto fail;
    }
    if (pipe2(r->stop_pipe, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    if (!cfg->start_later && dns_resolver_start(r, err, errlen) < 0)
        goto fail;
    return r;
fail:
    dns_resolver_free(&r);
    return NULL;
}

/* libunbound's own worker thread starts at the first asynchronous query
 * (the warm-up above is synchronous, in the caller's thread). */
int dns_resolver_start(struct dns_resolver *r, char *err, size_t errlen)
{
    int e;
    if (r->pump_running)
        return 0;
    if ((e = pthread_create(&r->pump, NULL, dns_pump, r)) != 0) {
        snprintf(err, errlen, "cannot start the DNS thread: %s", strerror(e));
        return -1;
    }
    r->pump_running = true;
    return 0;
}

void dns_resolver_free(struct dns_resolver **rp)
{
    struct dns_resolver *r = *rp;
    if (r == NULL)
        return;
    if (r->pump_running) {
        if (write(r->stop_pipe[1], "x", 1) != 1) {
            /* the pipe cannot be full: nothing else writes to it */
        }
        pthread_join(r->pump, NULL);
    }
    if (r->stop_pipe[0] >= 0)
        close(r->stop_pipe[0]);
    if (r->stop_pipe[1] >= 0)
        close(r->stop_pipe[1]);
    if (r->ctx != NULL)
        ub_ctx_delete(r->ctx);
    pthread_mutex_destroy(&r->lock);
    free(r);
    *rp = NULL;
}

struct dns_query *dns_query_start(struct dns_resolver *r, const char *name, enum dns_type type)
{
    struct dns_query *q = calloc(1, sizeof(*q));
    pthread_condattr_t ca;

    if (q == NULL)
        return NULL;
    q->r = r;
    q->state = Q_PENDING;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&q->cond, &ca);
    pthread_condattr_destroy(&ca);
    /* The lock keeps the callback from running before async_id is known. */
    pthread_mutex_lock(&r->lock);
    int e = ub_resolve_async(r->ctx, name, (int)type, 1, q, dns_callback, &q->async_id);
    pthread_mutex_unlock(&r->lock);
    if (e != 0) {
        query_free(q);
        return NULL;
    }
    return q;
}

/* Fills res from a libunbound result, in the mandatory order: error, bogus,
 * SERVFAIL, NXDOMAIN, NODATA, data. */
static void dns_fill(struct dns_result *res, int err, struct ub_result *u)
{
    memset(res, 0, sizeof(*res));
    if (err != 0 || u == NULL) {
        res->status = DNS_TEMPFAIL;
        snprintf(res->why, sizeof(res->why), "resolver error: %s", ub_strerror(err));
        if (u != NULL)
            ub_resolve_free(u);
        return;
    }
    res->priv = u;
    res->secure = u->secure != 0;
    if (u->bogus) {
        res->status = DNS_TEMPFAIL;
        res->secure = false;
        snprintf(res->why, sizeof(res->why), "DNSSEC validation failed (bogus): %.120s",
                 u->why_bogus != NULL ? u->why_bogus : "no reason given");
        return;
    }
    if (u->rcode == 3 || u->nxdomain) {
        res->status = DNS_NXDOMAIN;
        return;
    }
    if (u->rcode != 0) {
        res->status = DNS_TEMPFAIL;
        snprintf(res->why, sizeof(res->why), "server failure (rcode %d)", u->rcode);
        return;
    }
    if (!u->havedata) {
        res->status = DNS_NODATA;
        return;
    }
    size_t n = 0;
    while (u->data[n] != NULL)
        n++;
    struct dns_rr *rr = calloc(n ? n : 1, sizeof(*rr));
    if (rr == NULL) {
        res->status = DNS_TEMPFAIL;
        snprintf(res->why, sizeof(res->why), "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        rr[i].data = (const unsigned char *)u->data[i];
        rr[i].len = u->len[i] > 0 ? (size_t)u->len[i] : 0;
    }
    res->rr = rr;
    res->n = n;
    res->ttl = u->ttl > 0 ? (uint32_t)u->ttl : 0;
    res->status = DNS_OK;
}

void dns_query_wait(struct dns_query *q, int timeout_ms, struct dns_result *res)
{
    struct dns_resolver *r = q->r;
    struct timespec deadline = clock_mono_deadline(timeout_ms > 0 ? (uint64_t)timeout_ms : 0);

    pthread_mutex_lock(&r->lock);
    while (q->state == Q_PENDING) {
        if (pthread_cond_timedwait(&q->cond, &r->lock, &deadline) == ETIMEDOUT &&
            q->state == Q_PENDING)
            break;
    }
    if (q->state == Q_PENDING) {
        /* Too late: cancel. If the result is being delivered right now the
         * callback finds Q_ABANDONED and frees the query itself. */
        q->state = Q_ABANDONED;
        bool cancelled = ub_cancel(r->ctx, q->async_id) == 0;
        pthread_mutex_unlock(&r->lock);
        if (cancelled)
            query_free(q);
        memset(res, 0, sizeof(*res));
        res->status = DNS_TEMPFAIL;
        snprintf(res->why, sizeof(res->why), "timed out after %d ms", timeout_ms);
        return;
    }
    pthread_mutex_unlock(&r->lock);
    struct ub_result *u = q->result;
    q->result = NULL;
    dns_fill(res, q->err, u);
    query_free(q);
}

void dns_query_cancel(struct dns_query *q)
{
    if (q == NULL)
        return;
    struct dns_resolver *r = q->r;
    pthread_mutex_lock(&r->lock);
    if (q->state == Q_DONE) {
        pthread_mutex_unlock(&r->lock);
        query_free(q);
        return;
    }
    /* As for a timeout: whoever comes last frees it. */
    q->state = Q_ABANDONED;
    bool cancelled = ub_cancel(r->ctx, q->async_id) == 0;
    pthread_mutex_unlock(&r->lock);
    if (cancelled)
        query_free(q);
}

void dns_lookup(struct dns_resolver *r, const char *name, enum dns_type type, int timeout_ms,
                struct dns_result *res)
{
    struct dns_query *q = dns_query_start(r, name, type);
    if (q == NULL) {
        memset(res, 0, sizeof(*res));
        res->status = DNS_TEMPFAIL;
        snprintf(res->why, sizeof(res->why), "cannot start the query");
        return;
    }
    dns_query_wait(q, timeout_ms, res);
}

void dns_result_free(struct dns_result *res)
{
    if (res->priv != NULL)
        ub_resolve_free(res->priv);
    free((void *)res->rr);
    memset(res, 0, sizeof(*res));
}

int dns_txt_join(const struct dns_rr *rr, char *out, size_t outlen)
{
    size_t i = 0, o = 0;
    if (outlen == 0)
        return -1;
    while (i < rr->len) {
        size_t n = rr->data[i++];
        if (n > rr->len - i || n >= outlen - o)
            return -1;
        memcpy(out + o, rr->data + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
    return (int)o;
}

int dns_name_to_text(const unsigned char *data, size_t len, size_t *off, char *out, size_t outlen)
{
    size_t i = *off, o = 0;
    if (outlen == 0)
        return -1;
    for (;;) {
        if (i >= len)
            return -1;
        size_t l = data[i++];
        if (l == 0)
            break;
        if (l > 63 || l > len - i) /* compression pointers never appear in RDATA here */
            return -1;
        if (o != 0) {
            if (o + 1 >= outlen)
                return -1;
            out[o++] = '.';
        }
        if (l >= outlen - o)
            return -1;
        for (size_t k = 0; k < l; k++) {
            unsigned char c = data[i + k];
            /* Hostnames only: anything else would be unsafe to use further. */
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '-' || c == '_'))
                return -1;
            out[o++] = (char)((c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c);
        }
        i += l;
    }
    out[o] = '\0';
    *off = i;
    return 0;
}

int dns_mx_parse(const struct dns_rr *rr, uint16_t *pref_r, char *name, size_t namelen)
{
    size_t off = 2;
    if (rr->len < 3)
        return -1;
    *pref_r = (uint16_t)((rr->data[0] << 8) | rr->data[1]);
    if (dns_name_to_text(rr->data, rr->len, &off, name, namelen) < 0 || off != rr->len)
        return -1;
    return 0;
}
