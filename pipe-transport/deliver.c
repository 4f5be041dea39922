/* deliver: MX hosts, HTTPS first, SMTP second, with the shared host state. */
#include "deliver.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "https.h"
#include "log.h"
#include "mx.h"
#include "netio.h"
#include "smtpclient.h"
#include "tls.h"

#define TARGET "filtermail::transport"
#define MAX_OPS (3 * MX_MAX_HOSTS + 2)

_Static_assert(MX_MAX_ADDRS <= NETIO_HE_MAX_ADDRS, "every address of a host is tried");

void deliver_helo_name(const char *mail_domain, char *out, size_t outlen)
{
    unsigned char b[16];
    if (inet_pton(AF_INET, mail_domain, b) == 1)
        snprintf(out, outlen, "[%s]", mail_domain);
    else if (inet_pton(AF_INET6, mail_domain, b) == 1)
        snprintf(out, outlen, "[IPv6:%s]", mail_domain);
    else
        snprintf(out, outlen, "%s", mail_domain);
}

void deliver_summary(const struct envelope *env, const struct deliver_report *rep, double delay,
                     uint64_t size, const struct outcome *out, char *line, size_t linelen)
{
    bool sent = out->cls == OUTCOME_DELIVERED;
    const char *status = sent ? "sent" : out->cls == OUTCOME_BOUNCE ? "bounced" : "deferred";
    snprintf(line, linelen,
             "to=<%.300s>%s, relay=%s%s%s%s%s, delay=%.3f, size=%llu, status=%s (%s%s%s)",
             env->rcpts[0], env->nrcpts > 1 ? " and others" : "", rep->relay,
             rep->channel[0] ? "/" : "", rep->channel, rep->tls[0] ? ", tls=" : "", rep->tls,
             delay, (unsigned long long)size, status, sent ? "" : out->dsn, sent ? "" : " ",
             out->text);
}

struct run {
    const struct deliver_ctx *ctx;
    const struct envelope *env;
    const struct spool *msg;
    struct state_table table;
    struct state_op ops[MAX_OPS];
    size_t nops;
    struct tls_client *tls;   /* made when SMTP is first needed */
    char helo[300];
};

static void op(struct run *r, bool set, enum state_kind kind, const char *host, uint16_t port,
               int64_t until)
{
    if (r->ctx->state == NULL || r->nops >= MAX_OPS || r->env->kind == ENVELOPE_LITERAL)
        return;
    struct state_op *o = &r->ops[r->nops++];
    o->set = set;
    o->kind = kind;
    snprintf(o->host, sizeof(o->host), "%s", host);
    o->port = port;
    o->until = until;
}

static int remaining(const struct run *r, int limit_ms)
{
    int64_t left = r->ctx->deadline - (int64_t)clock_mono_ms();
    if (left < 0)
        left = 0;
    return left < limit_ms ? (int)left : limit_ms;
}

static void session_key(char *out, size_t outlen, const char *channel, const char *host,
                        uint16_t port, const char *tag)
{
    snprintf(out, outlen, "%s %s %u %s", channel, host, (unsigned)port, tag);
}

static void session_store(struct run *r, const char *key, const unsigned char *der, size_t len)
{
    if (r->ctx->state == NULL || der == NULL)
        return;
    if (state_session_save(r->ctx->state, key, der, len) < 0)
        log_debug(TARGET, "%s: cannot store the TLS session for %s", r->ctx->queue_id, key);
}

/* One HTTPS attempt. Returns true when delivered. */
static bool try_https(struct run *r, const char *host, const struct mx_addrs *addrs, bool verify,
                      struct outcome *out, struct deliver_report *rep)
{
    const struct config *cfg = r->ctx->cfg;
    struct https_job job = {
        .host = host,
        .port = cfg->transport_https_port,
        .addrs = addrs->sa,
        .naddrs = addrs->n,
        .verify = verify,
        .ca_file = cfg->tls_ca_file,
        .sender = r->env->sender,
        .rcpts = r->env->rcpts,
        .nrcpts = r->env->nrcpts,
        .msg = r->msg,
        .connect_timeout_ms = remaining(r, (int)cfg->transport_connect_timeout * 1000),
        .timeout_ms = remaining(r, (int)cfg->transport_https_timeout * 1000),
    };
    struct https_result res;
    char key[400];
    unsigned char *sess = NULL;
    size_t sess_len = 0;

    if (job.timeout_ms <= 0)
        return false;
    session_key(key, sizeof(key), "https", host, job.port, verify ? "verify" : "none");
    if (r->ctx->state != NULL && state_session_load(r->ctx->state, key, &sess, &sess_len) == 0) {
        job.session = sess;
        job.session_len = sess_len;
    }
    https_deliver(&job, &res);
    /* A connection kept by filtermail-deliverd, or a TLS 1.2 resumption,
     * hands back the session it was offered: nothing new to store. */
    bool same = sess != NULL && res.session != NULL && res.session_len == sess_len &&
                memcmp(res.session, sess, sess_len) == 0;
    free(sess);
    if (res.status == HTTPS_DELIVERED) {
        if (!same)
            session_store(r, key, res.session, res.session_len);
        snprintf(rep->relay, sizeof(rep->relay), "%s[%s]:%u", host, res.ip, (unsigned)job.port);
        snprintf(rep->channel, sizeof(rep->channel), "https");
        outcome_set(out, OUTCOME_DELIVERED, "2.0.0", "delivered via HTTPS to %s[%s]:%u (%ld)",
                    host, res.ip, (unsigned)job.port, res.http_code);
        free(res.session);
        return true;
    }
    free(res.session);
    log_debug(TARGET, "%s: HTTPS delivery to %s failed: %s", r->ctx->queue_id, host, res.err);
    return false;
}

struct upgrade_arg {
    struct run *r;
    struct tls_params params;
    bool used;
};

static int upgrade(void *arg, struct conn *c, char *err, size_t errlen)
{
    struct upgrade_arg *u = arg;
    u->used = true;
    return tls_connect(u->r->tls, c, &u->params, err, errlen);
}

enum host_result { HOST_DONE, HOST_NEXT };

/* SMTP to one host whose addresses are known. */
static enum host_result try_smtp(struct run *r, const char *host, bool literal, bool mx_secure,
                                 const struct mx_addrs *addrs, bool https_failed,
                                 struct outcome *out, struct deliver_report *rep,
                                 struct attempts *at, bool *down_r)
{
    const struct config *cfg = r->ctx->cfg;
    const struct envelope *env = r->env;
    uint16_t port = cfg->transport_smtp_port;
    bool plain = tls_policy_lookup(r->ctx->policy, env->domain) == TLS_POLICY_NO_STARTTLS &&
                 env->kind == ENVELOPE_NAME;
    struct mx_tlsa tlsa;
    struct upgrade_arg u = {.r = r};
    char err[300], addr[64], key[400] = "";
    unsigned char *sess = NULL;
    size_t sess_len = 0;

    u.params.host = literal ? NULL : host;
    if (literal || env->underscore) {
        u.params.mode = TLS_VERIFY_NONE;
    } else {
        u.params.mode = TLS_VERIFY_NAME;
        if (!plain && mx_secure && addrs->secure) {
            mx_tlsa_lookup(r->ctx->dns, host, port,
                           remaining(r, (int)cfg->dns_timeout * 1000), &tlsa);
            if (tlsa.status == MX_TLSA_TEMPFAIL) {
                attempts_note(at, "4.7.5", "TLSA lookup for %s failed: %s", host, tlsa.why);
                log_warn(TARGET, "%s: %s", r->ctx->queue_id, at->text);
                return HOST_NEXT;
            }
            if (tlsa.status == MX_TLSA_USABLE) {
                u.params.mode = TLS_VERIFY_DANE;
                u.params.tlsa = &tlsa;
            }
        }
    }
    if (!plain && r->tls == NULL) {
        r->tls = tls_client_new(cfg->tls_ca_file, err, sizeof(err));
        if (r->tls == NULL) {
            outcome_set(out, OUTCOME_TEMPFAIL, "4.3.5", "TLS setup failed: %s", err);
            log_err(TARGET, "%s: TLS setup failed: %s", r->ctx->queue_id, err);
            return HOST_DONE;
        }
    }
    if (!plain) {
        char tag[64];
        tls_policy_tag(&u.params, tag, sizeof(tag));
        session_key(key, sizeof(key), "smtp", host, port, tag);
        if (r->ctx->state != NULL &&
            state_session_load(r->ctx->state, key, &sess, &sess_len) == 0) {
            u.params.session = sess;
            u.params.session_len = sess_len;
        }
    }

    size_t winner = 0;
    int fd = netio_he_connect(addrs->sa, addrs->n, NETIO_HE_STAGGER_MS,
                              remaining(r, (int)cfg->transport_connect_timeout * 1000),
                              r->ctx->deadline, &winner, err, sizeof(err));
    if (fd < 0) {
        free(sess);
        attempts_note(at, "4.4.1", "connect to %s: %s", host, err);
        log_warn(TARGET, "%s: Connection error relaying to mail server %s: %s", r->ctx->queue_id,
                 host, err);
        *down_r = true;
        return HOST_NEXT;
    }
    netio_addr_text(&addrs->sa[winner], addr, sizeof(addr));
    struct conn c;
    conn_init(&c, fd, (int)cfg->transport_io_timeout * 1000, r->ctx->deadline);
    struct smtp_job job = {
        .helo = r->helo,
        .sender = env->sender,
        .rcpts = env->rcpts,
        .nrcpts = env->nrcpts,
        .msg = r->msg,
        .smtputf8 = env->smtputf8,
        .starttls = !plain,
        .tls_upgrade = upgrade,
        .tls_arg = &u,
    };
    struct smtp_result *res = malloc(sizeof(*res));
    if (res == NULL) {
        free(sess);
        conn_close(&c);
        outcome_set(out, OUTCOME_TEMPFAIL, "4.3.0", "out of memory");
        return HOST_DONE;
    }
    smtp_deliver(&c, &job, res);
    free(sess);
    tls_describe(&c, u.params.mode, rep->tls, sizeof(rep->tls));
    snprintf(rep->relay, sizeof(rep->relay), "%s[%s]:%u", host, addr, (unsigned)port);
    snprintf(rep->channel, sizeof(rep->channel), "smtp");

    struct smtp_peer peer = {.host = host, .addr = addr, .port = port, .domain = env->domain,
                             .nrcpts = env->nrcpts,
                             .tls_failed = u.used && tls_conn_ssl(&c) == NULL};
    enum host_result hr = smtp_result_outcome(res, &peer, out, at) ? HOST_NEXT : HOST_DONE;
    switch (res->status) {
    case SMTP_SENT:
        if (https_failed)
            op(r, true, STATE_HTTPS_REFUSED, host, cfg->transport_https_port,
               r->ctx->now_unix + STATE_HTTPS_REFUSED_TIME);
        if (key[0] != '\0') {
            unsigned char *der;
            size_t len;
            if (tls_session_export(&c, &der, &len) == 0) {
                session_store(r, key, der, len);
                free(der);
            }
        }
        break;
    case SMTP_CONN_ERROR:
        /* Upstream: HTTPS is tried at once next time. */
        op(r, false, STATE_HTTPS_REFUSED, host, cfg->transport_https_port, 0);
        log_warn(TARGET, "%s: Connection error relaying to mail server %s: %s", r->ctx->queue_id,
                 host, at->text);
        break;
    case SMTP_REJECTED:
    case SMTP_NO_STARTTLS:
        log_warn(TARGET, "%s: Message rejected by mail server %s: %s", r->ctx->queue_id, host,
                 out->text);
        break;
    default:
        break;
    }
    if (res->status != SMTP_CONN_ERROR)
        op(r, false, STATE_DOWN, host, port, 0);
    free(res);
    conn_close(&c);
    return hr;
}

void deliver_run(const struct deliver_ctx *ctx, const struct envelope *env,
                 const struct spool *msg, struct outcome *out, struct deliver_report *rep)
{
    struct run r = {.ctx = ctx, .env = env, .msg = msg};
    const struct config *cfg = ctx->cfg;
    struct mx_result *mx = calloc(1, sizeof(*mx));
    struct attempts at = {0};
    bool done = false;

    memset(rep, 0, sizeof(*rep));
    snprintf(rep->relay, sizeof(rep->relay), "none");
    state_table_init(&r.table);
    deliver_helo_name(cfg->mail_domain, r.helo, sizeof(r.helo));
    if (mx == NULL) {
        outcome_set(out, OUTCOME_TEMPFAIL, "4.3.0", "out of memory");
        return;
    }

    if (env->kind == ENVELOPE_LITERAL) {
        mx->status = MX_OK;
        mx->n = 1;
        snprintf(mx->hosts[0].name, sizeof(mx->hosts[0].name), "%s", env->domain);
    } else {
        mx_lookup(ctx->dns, env->domain, remaining(&r, (int)cfg->dns_timeout * 1000),
                  ctx->random, mx);
        switch (mx->status) {
        case MX_NXDOMAIN:
            outcome_set(out, OUTCOME_BOUNCE, "5.1.2", "Domain %s does not exist", env->domain);
            goto finish;
        case MX_NULL:
            outcome_set(out, OUTCOME_BOUNCE, "5.1.10",
                        "Permanent failure: Recipient address has null MX (%s)", env->domain);
            goto finish;
        case MX_TEMPFAIL:
            outcome_set(out, OUTCOME_TEMPFAIL, "4.4.3", "DNS resolution failed for %s: %s",
                        env->domain, mx->why);
            log_warn(TARGET, "%s: %s", ctx->queue_id, out->text);
            goto finish;
        case MX_OK:
        case MX_IMPLICIT:
            break;
        }
        if (ctx->state != NULL && state_load(ctx->state, ctx->now_unix, &r.table) < 0)
            log_warn(TARGET, "%s: cannot read the transport state", ctx->queue_id);
    }

    for (size_t i = 0; i < mx->n && !done; i++) {
        const char *host = mx->hosts[i].name;
        bool literal = env->kind == ENVELOPE_LITERAL;
        struct mx_addrs addrs;

        if (remaining(&r, 1) <= 0) {
            attempts_note(&at, "4.4.7", "delivery deadline of %u s reached",
                          (unsigned)cfg->transport_deadline);
            break;
        }
        if (!literal && state_has(&r.table, STATE_DOWN, host, cfg->transport_smtp_port,
                                  ctx->now_unix)) {
            log_debug(TARGET, "%s: skipping %s: it failed to answer recently", ctx->queue_id,
                      host);
            at.skipped++;
            continue;
        }
        if (literal) {
            memset(&addrs, 0, sizeof(addrs));
            addrs.status = MX_ADDR_OK;
            addrs.n = 1;
            if (env->family == AF_INET6) {
                struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&addrs.sa[0];
                s6->sin6_family = AF_INET6;
                s6->sin6_port = htons(cfg->transport_smtp_port);
                inet_pton(AF_INET6, env->domain, &s6->sin6_addr);
            } else {
                struct sockaddr_in *s4 = (struct sockaddr_in *)&addrs.sa[0];
                s4->sin_family = AF_INET;
                s4->sin_port = htons(cfg->transport_smtp_port);
                inet_pton(AF_INET, env->domain, &s4->sin_addr);
            }
        } else {
            mx_resolve(ctx->dns, host, cfg->transport_smtp_port,
                       remaining(&r, (int)cfg->dns_timeout * 1000), &addrs);
            if (addrs.status == MX_ADDR_TEMPFAIL) {
                attempts_note(&at, "4.4.3", "DNS resolution failed for %s: %s", host, addrs.why);
                log_warn(TARGET, "%s: %s", ctx->queue_id, at.text);
                continue;
            }
            if (addrs.status == MX_ADDR_NONE) {
                at.noaddr++;
                attempts_note(&at, "4.4.4", "no address for %s", host);
                continue;
            }
        }
        at.tried++;
        bool verify = !literal && !env->underscore;
        bool https_failed = false;
        if (!literal && state_has(&r.table, STATE_HTTPS_REFUSED, host, cfg->transport_https_port,
                                  ctx->now_unix)) {
            log_debug(TARGET, "%s: Skipping HTTP delivery to host that failed recently: %s",
                      ctx->queue_id, host);
        } else if (try_https(&r, host, &addrs, verify, out, rep)) {
            op(&r, false, STATE_DOWN, host, cfg->transport_smtp_port, 0);
            done = true;
            break;
        } else {
            https_failed = true;
        }
        bool down = false;
        enum host_result hr = try_smtp(&r, host, literal, mx->secure, &addrs, https_failed, out,
                                       rep, &at, &down);
        if (down && remaining(&r, 1) > 0)
            op(&r, true, STATE_DOWN, host, cfg->transport_smtp_port,
               ctx->now_unix + cfg->transport_down_time);
        if (hr == HOST_DONE)
            done = true;
    }
    if (!done) {
        at.hosts = mx->n;
        outcome_from_attempts(out, &at, env->domain, cfg->transport_down_time);
    }
    if (ctx->settled != NULL)
        ctx->settled(out);
    if (ctx->state != NULL && r.nops > 0) {
        char err[300];
        if (state_update(ctx->state, ctx->now_unix, r.ops, r.nops, err, sizeof(err)) < 0)
            log_warn(TARGET, "%s: cannot update the transport state: %s", ctx->queue_id, err);
    }
finish:
    tls_client_free(&r.tls);
    state_table_free(&r.table);
    free(mx);
}
