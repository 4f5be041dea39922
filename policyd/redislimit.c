/* redislimit: GCRA in Redis through one Lua script, over an asynchronous
 * hiredis connection driven by the caller's event loop (see redislimit.h). */
#include "redislimit.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <hiredis/async.h>
#include <hiredis/hiredis.h>

/* One GCRA step, as gcra_step() does it, on the Redis server's clock. */
const char REDISLIMIT_SCRIPT[] =
    "-- filtermail-policyd: one GCRA step for one sender, atomically.\n"
    "-- KEYS[1] the sender's key; ARGV[1] the emission interval T and ARGV[2]\n"
    "-- the tolerance tau = T * (burst - 1), both in microseconds; ARGV[3] the\n"
    "-- message's Postfix instance ('' when none). Returns {1, 0} when the\n"
    "-- message may go (one unit charged) or {0, wait} with the microseconds\n"
    "-- until the next may go. Another RCPT of a message already decided (same\n"
    "-- instance) gets the same answer, uncharged.\n"
    "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "local T = tonumber(ARGV[1])\n"
    "local tau = tonumber(ARGV[2])\n"
    "local inst = ARGV[3]\n"
    "local s = redis.call('HMGET', KEYS[1], 'tat', 'inst', 'ok')\n"
    "local tat = tonumber(s[1]) or now\n"
    "if inst ~= '' and s[2] == inst then\n"
    "  if s[3] == '1' then return {1, 0} end\n"
    "  return {0, math.max(tat - tau - now, 0)}\n"
    "end\n"
    "if now < tat - tau then\n"
    "  if inst ~= '' then redis.call('HSET', KEYS[1], 'inst', inst, 'ok', '0') end\n"
    "  return {0, tat - tau - now}\n"
    "end\n"
    "tat = math.max(tat, now) + T\n"
    "redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat), 'inst', inst, 'ok', '1')\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil((tat - now) / 1000) + 60000)\n"
    "return {1, 0}\n";

enum rl_state {
    RS_DOWN,       /* no connection; next attempt at retry_at */
    RS_CONNECTING, /* waiting for the TCP/unix connect */
    RS_HANDSHAKE,  /* AUTH, SELECT, SCRIPT LOAD sent */
    RS_READY,
};

struct redislimit_req {
    struct redislimit *r;
    redislimit_done_fn *done; /* NULL once cancelled */
    void *arg;
    uint64_t sent;
    bool evaled; /* already resent with EVAL after NOSCRIPT */
    TAILQ_ENTRY(redislimit_req) link; /* in the in-flight queue */
    size_t key_len;
    char *key; /* prefix + key, for a resend */
    char *instance;
};

/* glibc's <sys/queue.h>, as for the server's connection lists. */
TAILQ_HEAD(rl_req_queue, redislimit_req);

struct redislimit {
    struct redislimit_target target;
    char interval_us[24], tolerance_us[24];
    redisAsyncContext *ac;
    enum rl_state state;
    uint64_t state_since;
    uint64_t retry_at;
    uint64_t now;            /* the last time given to tick or check */
    bool dropping;           /* redisAsyncFree in progress */
    bool down_logged;        /* "cannot use Redis" said; say when it is back */
    uint64_t last_error_log; /* per-check errors are logged once a minute */
    unsigned long errors;    /* per-check errors since that line */
    int fd;
    bool want_read, want_write;
    char sha[41];
    struct rl_req_queue inflight; /* checks in flight, oldest first */
    redislimit_watch_fn *watch;
    redislimit_log_fn *log;
    void *arg;
};

static void rl_log(struct redislimit *r, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void rl_log(struct redislimit *r, enum log_level level, const char *fmt, ...)
{
    char text[512];
    va_list ap;

    if (r->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    r->log(r->arg, level, text);
}

/* ---- URL. */

static int url_error(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s", what);
    return -1;
}

static int url_number(const char *s, size_t n, long max, int *v_r)
{
    long v = 0;

    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v > max)
        return -1;
    *v_r = (int)v;
    return 0;
}

static int url_copy(char *dst, size_t dstlen, const char *s, size_t n)
{
    if (n >= dstlen)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int redislimit_parse_url(const char *url, struct redislimit_target *t, char *err, size_t errlen)
{
    const char *p, *end, *at, *slash, *hs, *he, *colon;

    memset(t, 0, sizeof(*t));
    t->port = 6379;
    if (strncmp(url, "unix:", 5) == 0) {
        const char *path = url + 5, *q = strchr(path, '?');
        size_t n = q != NULL ? (size_t)(q - path) : strlen(path);
        t->unix_socket = true;
        t->port = 0;
        if (n == 0 || path[0] != '/')
            return url_error(err, errlen, "unix: needs an absolute socket path");
        if (url_copy(t->host, sizeof(t->host), path, n) < 0)
            return url_error(err, errlen, "socket path too long");
        if (q != NULL &&
            (strncmp(q, "?db=", 4) != 0 || url_number(q + 4, strlen(q + 4), 1000000, &t->db) < 0))
            return url_error(err, errlen, "only ?db=<number> may follow the socket path");
        return 0;
    }
    if (strncmp(url, "redis://", 8) != 0)
        return url_error(err, errlen, "expected redis://host:port/db or unix:/path");
    p = url + 8;
    end = p + strlen(p);
    slash = memchr(p, '/', (size_t)(end - p));
    if (slash == NULL)
        slash = end;
    /* Credentials end at the last '@' before the path. */
    at = NULL;
    for (const char *c = p; c < slash; c++)
        if (*c == '@')
            at = c;
    if (at != NULL) {
        const char *sep = memchr(p, ':', (size_t)(at - p));
        if (sep == NULL)
            return url_error(err, errlen, "credentials must be [user]:password@");
        if (url_copy(t->user, sizeof(t->user), p, (size_t)(sep - p)) < 0 ||
            url_copy(t->password, sizeof(t->password), sep + 1, (size_t)(at - sep - 1)) < 0)
            return url_error(err, errlen, "user or password too long");
        p = at + 1;
    }
    if (p < slash && *p == '[') {
        he = memchr(p, ']', (size_t)(slash - p));
        if (he == NULL)
            return url_error(err, errlen, "unterminated [IPv6] host");
        hs = p + 1;
        colon = he + 1 < slash ? he + 1 : NULL;
        if (colon != NULL && *colon != ':')
            return url_error(err, errlen, "junk after the [IPv6] host");
    } else {
        hs = p;
        colon = memchr(p, ':', (size_t)(slash - p));
        he = colon != NULL ? colon : slash;
    }
    if (he == hs)
        return url_error(err, errlen, "no host");
    if (url_copy(t->host, sizeof(t->host), hs, (size_t)(he - hs)) < 0)
        return url_error(err, errlen, "host too long");
    if (colon != NULL &&
        (url_number(colon + 1, (size_t)(slash - colon - 1), 65535, &t->port) < 0 || t->port == 0))
        return url_error(err, errlen, "bad port");
    if (slash < end && slash + 1 < end &&
        url_number(slash + 1, (size_t)(end - slash - 1), 1000000, &t->db) < 0)
        return url_error(err, errlen, "bad database number");
    return 0;
}

/* ---- Event hooks hiredis calls. */

static void rl_update_watch(struct redislimit *r)
{
    if (r->watch != NULL && r->fd >= 0)
        r->watch(r->arg, r->fd, r->want_read, r->want_write);
}

static void ev_add_read(void *p)
{
    struct redislimit *r = p;
    if (!r->want_read) {
        r->want_read = true;
        rl_update_watch(r);
    }
}

static void ev_del_read(void *p)
{
    struct redislimit *r = p;
    if (r->want_read) {
        r->want_read = false;
        rl_update_watch(r);
    }
}

static void ev_add_write(void *p)
{
    struct redislimit *r = p;
    if (!r->want_write) {
        r->want_write = true;
        rl_update_watch(r);
    }
}

static void ev_del_write(void *p)
{
    struct redislimit *r = p;
    if (r->want_write) {
        r->want_write = false;
        rl_update_watch(r);
    }
}

static void ev_cleanup(void *p)
{
    struct redislimit *r = p;
    if (r->fd >= 0 && r->watch != NULL)
        r->watch(r->arg, r->fd, false, false);
    r->fd = -1;
    r->want_read = r->want_write = false;
}

/* ---- Connection. */

static void rl_set_state(struct redislimit *r, enum rl_state s)
{
    r->state = s;
    r->state_since = r->now;
}

/* Where Redis is, for log lines (never the password). */
static const char *rl_where(const struct redislimit *r, char *buf, size_t len)
{
    if (r->target.unix_socket)
        snprintf(buf, len, "unix:%s", r->target.host);
    else
        snprintf(buf, len, "%s:%d", r->target.host, r->target.port);
    return buf;
}

/* Logs a failure once per outage. */
static void rl_down(struct redislimit *r, const char *why)
{
    char where[300];

    if (!r->down_logged)
        rl_log(r, LOGL_WARN, "cannot use Redis at %s: %s", rl_where(r, where, sizeof(where)), why);
    r->down_logged = true;
}

/* The context is gone (freed by hiredis or by us). */
static void rl_lost(struct redislimit *r, const char *why)
{
    r->ac = NULL;
    if (r->state == RS_DOWN)
        return;
    rl_down(r, why);
    rl_set_state(r, RS_DOWN);
    r->retry_at = r->now + (uint64_t)REDISLIMIT_RETRY_MS * 1000000u;
}

/* Frees the context from outside any hiredis callback. */
static void rl_drop(struct redislimit *r, const char *why)
{
    redisAsyncContext *ac = r->ac;

    if (ac == NULL || r->dropping)
        return;
    r->dropping = true;
    rl_lost(r, why);
    redisAsyncFree(ac); /* runs the callbacks in flight with a NULL reply */
    r->ac = NULL;
    r->dropping = false;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct redislimit *r = ac->ev.data;
    rl_lost(r, status == REDIS_OK ? "closed" : (ac->errstr[0] ? ac->errstr : "error"));
}

static void on_script_load(redisAsyncContext *ac, void *reply_, void *priv)
{
    struct redislimit *r = ac->ev.data;
    redisReply *reply = reply_;

    (void)priv;
    if (reply == NULL)
        return; /* connection going away */
    if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
        if (!r->down_logged)
            rl_log(r, LOGL_ERROR, "Redis refused the rate-limit script: %.200s",
                   reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        /* Try again later; the failure may be AUTH or SELECT. */
        redisAsyncDisconnect(ac);
        return;
    }
    memcpy(r->sha, reply->str, 40);
    r->sha[40] = '\0';
    if (strcmp(r->sha, REDISLIMIT_SCRIPT_SHA1) != 0)
        rl_log(r, LOGL_WARN, "Redis gave the script SHA-1 %s, expected %s", r->sha,
               REDISLIMIT_SCRIPT_SHA1);
    rl_set_state(r, RS_READY);
    {
        char where[300];
        rl_log(r, LOGL_INFO, "Redis at %s %s", rl_where(r, where, sizeof(where)),
               r->down_logged ? "is reachable again" : "ready for rate limiting");
    }
    r->down_logged = false;
}

static void on_setup_reply(redisAsyncContext *ac, void *reply_, void *priv)
{
    struct redislimit *r = ac->ev.data;
    redisReply *reply = reply_;

    /* Said once per outage, not at every reconnection attempt. */
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR && !r->down_logged)
        rl_log(r, LOGL_ERROR, "Redis %s failed: %.200s", (const char *)priv, reply->str);
}

static void on_connect(const redisAsyncContext *cac, int status)
{
    redisAsyncContext *ac = (redisAsyncContext *)cac;
    struct redislimit *r = ac->ev.data;
    char db[16];

    if (status != REDIS_OK) {
        /* hiredis frees the context right after. */
        rl_lost(r, ac->errstr[0] ? ac->errstr : "connect failed");
        return;
    }
    rl_set_state(r, RS_HANDSHAKE);
    if (r->target.password[0] != '\0') {
        if (r->target.user[0] != '\0')
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s %s", r->target.user,
                              r->target.password);
        else
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s", r->target.password);
    }
    if (r->target.db != 0) {
        snprintf(db, sizeof(db), "%d", r->target.db);
        redisAsyncCommand(ac, on_setup_reply, "SELECT", "SELECT %s", db);
    }
    redisAsyncCommand(ac, on_script_load, NULL, "SCRIPT LOAD %s", REDISLIMIT_SCRIPT);
}

static void rl_connect(struct redislimit *r)
{
    redisAsyncContext *ac;

    ac = r->target.unix_socket ? redisAsyncConnectUnix(r->target.host)
                               : redisAsyncConnect(r->target.host, r->target.port);
    r->retry_at = r->now + (uint64_t)REDISLIMIT_RETRY_MS * 1000000u;
    if (ac == NULL) {
        rl_log(r, LOGL_ERROR, "cannot connect to Redis: out of memory");
        return;
    }
    if (ac->err) {
        rl_down(r, ac->errstr);
        redisAsyncFree(ac);
        return;
    }
    r->ac = ac;
    r->fd = ac->c.fd;
    ac->ev.data = r;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    rl_set_state(r, RS_CONNECTING);
    /* The connect completes when the socket becomes writable. */
    r->want_read = true;
    r->want_write = true;
    rl_update_watch(r);
}

struct redislimit *redislimit_new(const struct redislimit_target *t, const struct gcra *g,
                                  redislimit_watch_fn *watch, redislimit_log_fn *log, void *arg)
{
    struct redislimit *r = calloc(1, sizeof(*r));
    uint64_t tu;

    if (r == NULL)
        return NULL;
    TAILQ_INIT(&r->inflight);
    r->target = *t;
    tu = g->interval / 1000;
    snprintf(r->interval_us, sizeof(r->interval_us), "%llu", (unsigned long long)(tu ? tu : 1));
    snprintf(r->tolerance_us, sizeof(r->tolerance_us), "%llu",
             (unsigned long long)(g->tolerance / 1000));
    r->fd = -1;
    r->watch = watch;
    r->log = log;
    r->arg = arg;
    r->state = RS_DOWN;
    return r;
}

static void rl_req_free(struct redislimit_req *q)
{
    free(q->key);
    free(q->instance);
    free(q);
}

void redislimit_free(struct redislimit **rp)
{
    struct redislimit *r;

    if (rp == NULL || *rp == NULL)
        return;
    r = *rp;
    r->log = NULL; /* nothing to report while going away */
    rl_drop(r, "shutting down");
    free(r);
    *rp = NULL;
}

bool redislimit_ready(const struct redislimit *r)
{
    return r->state == RS_READY && r->ac != NULL && !r->dropping;
}

void redislimit_tick(struct redislimit *r, uint64_t now)
{
    uint64_t limit = (uint64_t)REDISLIMIT_TIMEOUT_MS * 1000000u;

    r->now = now;
    if (r->state == RS_DOWN && r->ac == NULL && now >= r->retry_at) {
        rl_connect(r);
        return;
    }
    if ((r->state == RS_CONNECTING || r->state == RS_HANDSHAKE) && now - r->state_since > limit) {
        rl_drop(r, "timed out connecting");
        return;
    }
    struct redislimit_req *oldest = TAILQ_FIRST(&r->inflight);
    if (oldest != NULL && now - oldest->sent > limit)
        rl_drop(r, "timed out waiting for a reply");
}

void redislimit_handle(struct redislimit *r, bool readable, bool writable)
{
    if (r->ac == NULL)
        return;
    if (writable)
        redisAsyncHandleWrite(r->ac);
    if (readable && r->ac != NULL)
        redisAsyncHandleRead(r->ac);
}

/* ---- Checks. */

static void on_check(redisAsyncContext *ac, void *reply_, void *priv);

/* An error answer to a check (a script error, OOM, BUSY, a read-only
 * replica): logged at most once a minute, with the count. */
static void rl_check_error(struct redislimit *r, const char *text)
{
    r->errors++;
    if (r->last_error_log != 0 && r->now - r->last_error_log < 60 * 1000000000ull)
        return;
    rl_log(r, LOGL_ERROR, "Redis rate-limit script failed (%lu times): %.200s", r->errors, text);
    r->errors = 0;
    r->last_error_log = r->now ? r->now : 1;
}

static int rl_send(struct redislimit *r, struct redislimit_req *q)
{
    const char *argv[7];
    size_t argvlen[7];
    int argc = 0;

    if (q->evaled) {
        argv[argc] = "EVAL";
        argvlen[argc++] = 4;
        argv[argc] = REDISLIMIT_SCRIPT;
        argvlen[argc++] = sizeof(REDISLIMIT_SCRIPT) - 1;
    } else {
        argv[argc] = "EVALSHA";
        argvlen[argc++] = 7;
        argv[argc] = r->sha;
        argvlen[argc++] = 40;
    }
    argv[argc] = "1";
    argvlen[argc++] = 1;
    argv[argc] = q->key;
    argvlen[argc++] = q->key_len;
    argv[argc] = r->interval_us;
    argvlen[argc++] = strlen(r->interval_us);
    argv[argc] = r->tolerance_us;
    argvlen[argc++] = strlen(r->tolerance_us);
    argv[argc] = q->instance;
    argvlen[argc++] = strlen(q->instance);
    return redisAsyncCommandArgv(r->ac, on_check, q, argc, argv, argvlen) == REDIS_OK ? 0 : -1;
}

static void rl_complete(struct redislimit_req *q, enum redislimit_result res, uint64_t wait_ns)
{
    redislimit_done_fn *done = q->done;
    void *arg = q->arg;

    TAILQ_REMOVE(&q->r->inflight, q, link);
    rl_req_free(q);
    if (done != NULL)
        done(arg, res, wait_ns);
}

static void on_check(redisAsyncContext *ac, void *reply_, void *priv)
{
    struct redislimit_req *q = priv;
    struct redislimit *r = q->r;
    redisReply *reply = reply_;

    (void)ac;
    if (reply == NULL) {
        rl_complete(q, REDISLIMIT_UNAVAILABLE, 0);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (!q->evaled && strncmp(reply->str, "NOSCRIPT", 8) == 0 && r->ac != NULL &&
            !r->dropping) {
            /* The script cache was flushed (or a failover): send it whole. */
            q->evaled = true;
            if (rl_send(r, q) == 0)
                return;
        }
        rl_check_error(r, reply->str);
        rl_complete(q, REDISLIMIT_UNAVAILABLE, 0);
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        rl_check_error(r, "unexpected reply");
        rl_complete(q, REDISLIMIT_UNAVAILABLE, 0);
        return;
    }
    if (reply->element[0]->integer == 1) {
        rl_complete(q, REDISLIMIT_ALLOWED, 0);
    } else {
        long long w = reply->element[1]->integer;
        rl_complete(q, REDISLIMIT_LIMITED, w > 0 ? (uint64_t)w * 1000u : 0);
    }
}

struct redislimit_req *redislimit_check(struct redislimit *r, const char *key, size_t key_len,
                                        const char *instance, uint64_t now,
                                        redislimit_done_fn *done, void *arg)
{
    struct redislimit_req *q;
    size_t plen = sizeof(REDISLIMIT_KEY_PREFIX) - 1;

    r->now = now;
    if (!redislimit_ready(r))
        return NULL;
    q = calloc(1, sizeof(*q));
    if (q == NULL)
        return NULL;
    q->r = r;
    q->done = done;
    q->arg = arg;
    q->sent = now;
    q->key_len = plen + key_len;
    q->key = malloc(q->key_len + 1);
    q->instance = strdup(instance != NULL ? instance : "");
    if (q->key == NULL || q->instance == NULL) {
        rl_req_free(q);
        return NULL;
    }
    memcpy(q->key, REDISLIMIT_KEY_PREFIX, plen);
    memcpy(q->key + plen, key, key_len);
    q->key[q->key_len] = '\0';
    if (rl_send(r, q) < 0) {
        rl_req_free(q);
        return NULL;
    }
    TAILQ_INSERT_TAIL(&r->inflight, q, link);
    return q;
}

void redislimit_cancel(struct redislimit_req *q)
{
    if (q != NULL) {
        q->done = NULL;
        q->arg = NULL;
    }
}

bool redislimit_decide(enum redislimit_result res, uint64_t wait_ns, uint64_t now,
                       struct ratelimit_decision *d)
{
    switch (res) {
    case REDISLIMIT_ALLOWED:
        d->verdict = RATELIMIT_PASS;
        d->reason = RATELIMIT_R_ALLOWED;
        return true;
    case REDISLIMIT_LIMITED:
        d->verdict = RATELIMIT_LIMITED;
        d->reason = RATELIMIT_R_LIMITED;
        d->allowed_at = now + wait_ns;
        return true;
    case REDISLIMIT_UNAVAILABLE:
    default:
        return false;
    }
}
