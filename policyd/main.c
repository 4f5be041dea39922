/* filtermail-policyd: per-sender rate limiting as a Postfix policy server.
 *
 * One thread, one epoll loop: Postfix's smtpd processes each keep a connection
 * open and send one request at a time; a request is parsed as its bytes
 * arrive (common/policy_proto.c), decided by the pure core (ratelimit.c, or
 * the Redis script in redislimit.c, whose connection this loop also drives),
 * and answered with one write. Nothing blocks: a slow or broken client costs
 * only its own connection, which is closed on malformed input, after a request
 * left unfinished for REQUEST_TIMEOUT, or after IDLE_TIMEOUT without one.
 *
 * The in-process state is written to filtermail_ratelimit_state (to a
 * temporary file, then renamed) on SIGTERM, and on SIGHUP and every
 * SNAPSHOT_EVERY seconds by a forked child, so the loop never waits for the
 * disk; it is read back at start, so a restart does not hand every sender a
 * new burst.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "fileio.h"
#include "listener.h"
#include "log.h"
#include "policy_proto.h"
#include "privs.h"
#include "ratelimit.h"
#include "redislimit.h"
#include "sdnotify.h"

#define TARGET "filtermail::policyd"
/* Upstream logs rate-limit hits under this target. */
#define TARGET_OUT "filtermail::outbound"

/* Connections served at once; Postfix opens one per smtpd process. */
#define MAX_CONNS 10000
/* Longer than Postfix's smtpd_policy_service_max_idle (300 s), so that
 * Postfix, not we, closes an idle connection and never races a request. */
#define IDLE_TIMEOUT 330
/* Postfix writes a request at once; one begun but not finished this long
 * after is from something else. */
#define REQUEST_TIMEOUT 10
#define SNAPSHOT_EVERY 60
#define READ_CHUNK 4096
#define OUT_MAX 2048
/* The longest reply: "action=450 ... <key> ..." with a RATELIMIT_KEY_MAX key. */
#define REPLY_MAX 700
#define NS CLOCK_NS_PER_SEC

enum watch_kind { W_LISTENER, W_SIGNAL, W_CONN, W_REDIS };

/* The first member of everything registered with epoll. */
struct watch {
    enum watch_kind kind;
};

enum conn_list { L_NONE, L_IDLE, L_REQUEST };

struct conn {
    struct watch w;
    int fd;
    bool dead;       /* closed; freed after this batch of events */
    uint32_t events; /* epoll interest registered */
    struct policy_parser *pp;
    struct ratelimit_session sess;
    char in[READ_CHUNK];
    size_t in_off, in_len; /* in[in_off..in_len) not parsed yet */
    char out[OUT_MAX];
    size_t out_off, out_len;        /* out[out_off..out_len) not written yet */
    struct redislimit_req *pending; /* a Redis check in flight */
    struct ratelimit_decision dec;  /* the request it is for */
    enum conn_list list;
    uint64_t deadline;
    struct conn *prev, *next; /* in the list, oldest first; or the dead list */
};

struct list {
    struct conn *head, *tail;
};

static struct config *cfg;
static const char *config_path;
static int epfd = -1;
static struct watch listener_w = {W_LISTENER}, signal_w = {W_SIGNAL}, redis_w = {W_REDIS};
static int listen_fd = -1, signal_fd = -1, redis_fd = -1;
static uint32_t redis_events;
static struct ratelimit *rl;
static struct redislimit *redis;
static bool fallback_defer;
static struct list idle_list, request_list;
static struct conn *dead;
static size_t nconns;
static bool dirty; /* the table changed since the last snapshot */
static uint64_t last_full_warning;
static uint64_t last_accept_warning;
static struct listener lsn;

static noreturn void config_fatal(const char *key, const char *value, const char *why)
{
    fprintf(stderr, "Failed to read config: %s: invalid %s %s: %s\n", config_path, key, value, why);
    exit(1);
}

/* ---- epoll */

static void watch_set(int fd, struct watch *w, uint32_t *current, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    int op;

    if (*current == events)
        return;
    op = *current == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(epfd, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
        panic("epoll_ctl(%d): %s", fd, strerror(errno));
    *current = events;
}

/* ---- Connections: timeout lists */

static struct list *list_of(enum conn_list l)
{
    return l == L_IDLE ? &idle_list : l == L_REQUEST ? &request_list : NULL;
}

static void list_remove(struct conn *c)
{
    struct list *l = list_of(c->list);
    if (l == NULL)
        return;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    c->prev = c->next = NULL;
    c->list = L_NONE;
}

static void list_append(struct conn *c, enum conn_list which, uint64_t deadline)
{
    struct list *l = list_of(which);
    c->list = which;
    c->deadline = deadline;
    c->prev = l->tail;
    c->next = NULL;
    if (l->tail != NULL)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
}

static void conn_close(struct conn *c)
{
    if (c->dead)
        return;
    if (c->pending != NULL) {
        redislimit_cancel(c->pending);
        c->pending = NULL;
    }
    list_remove(c);
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->dead = true;
    c->next = dead;
    dead = c;
    nconns--;
}

static void free_dead(void)
{
    while (dead != NULL) {
        struct conn *c = dead;
        dead = c->next;
        policy_parser_free(&c->pp);
        free(c);
    }
}

/* Puts c in the list its state calls for, and watches what it waits for. */
static void conn_update(struct conn *c, uint64_t now)
{
    uint32_t ev = 0;
    bool unparsed = c->in_off < c->in_len;

    if (c->dead)
        return;
    if (c->pending == NULL && !unparsed && c->out_len == 0)
        ev |= EPOLLIN;
    if (c->out_len > 0)
        ev |= EPOLLOUT;
    watch_set(c->fd, &c->w, &c->events, ev);

    if (c->pending != NULL) {
        list_remove(c); /* the Redis timeout covers it */
    } else if (policy_idle(c->pp) && !unparsed) {
        if (c->list != L_IDLE || c->deadline != now + IDLE_TIMEOUT * NS) {
            list_remove(c);
            list_append(c, L_IDLE, now + IDLE_TIMEOUT * NS);
        }
    } else if (c->list != L_REQUEST) {
        /* Set once when a request begins; more bytes do not extend it. */
        list_remove(c);
        list_append(c, L_REQUEST, now + REQUEST_TIMEOUT * NS);
    }
}

static void conn_flush(struct conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            log_debug(TARGET, "fd %d: write failed: %s", c->fd, strerror(errno));
            conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
}

/* ---- Decisions */

static void reply(struct conn *c, const struct ratelimit_decision *d, const char *action)
{
    char line[OUT_MAX], esc[RATELIMIT_KEY_MAX * 4 + 8];
    int n = policy_reply(line, sizeof(line), action);

    if (n < 0 || (size_t)n > sizeof(c->out) - c->out_len) {
        log_err(TARGET, "reply does not fit for %s; closing the connection",
                log_escape(esc, sizeof(esc), d->key, d->key_len, 200));
        conn_close(c);
        return;
    }
    memcpy(c->out + c->out_len, line, (size_t)n);
    c->out_len += (size_t)n;
}

/* Answers a decided request (PASS or LIMITED). */
static void finish(struct conn *c, struct ratelimit_decision *d, uint64_t now)
{
    char action[REPLY_MAX], esc[RATELIMIT_KEY_MAX * 4 + 8], until[48];
    uint64_t wall = clock_wall_ns();

    ratelimit_session_note(&c->sess, d);
    if (d->reason == RATELIMIT_R_ALLOWED || d->reason == RATELIMIT_R_LIMITED)
        dirty = true;
    if (d->reason == RATELIMIT_R_LIMITED) {
        /* Once per message, with upstream's words (which it logs at DEBUG). */
        ratelimit_format_until(d, now, wall, until, sizeof(until));
        log_info(TARGET_OUT, "%s rate-limited until %s",
                 log_escape(esc, sizeof(esc), d->key, d->key_len, 200), until);
    } else if (log_enabled(LOGL_DEBUG)) {
        log_debug(TARGET, "%s: %s (%s)", log_escape(esc, sizeof(esc), d->key, d->key_len, 200),
                  d->verdict == RATELIMIT_PASS ? "DUNNO" : "450", ratelimit_reason_name(d->reason));
    }
    if (ratelimit_action(d, now, wall, action, sizeof(action)) < 0) {
        log_err(TARGET, "cannot format the reply; closing the connection");
        conn_close(c);
        return;
    }
    reply(c, d, action);
}

/* No Redis answer: limit here, or make Postfix defer. */
static void fallback(struct conn *c, struct ratelimit_decision *d, uint64_t now)
{
    if (fallback_defer) {
        log_debug(TARGET, "Redis unavailable: deferring");
        reply(c, d, "451 4.3.0 Rate limiting temporarily unavailable, try again later");
        return;
    }
    ratelimit_check(rl, d, now);
    finish(c, d, now);
}

static void conn_process(struct conn *c, uint64_t now);

static void redis_done(void *arg, enum redislimit_result res, uint64_t wait_ns)
{
    struct conn *c = arg;
    uint64_t now = clock_mono_ns();

    c->pending = NULL;
    if (c->dead)
        return;
    switch (res) {
    case REDISLIMIT_ALLOWED:
        c->dec.verdict = RATELIMIT_PASS;
        c->dec.reason = RATELIMIT_R_ALLOWED;
        finish(c, &c->dec, now);
        break;
    case REDISLIMIT_LIMITED:
        c->dec.verdict = RATELIMIT_LIMITED;
        c->dec.reason = RATELIMIT_R_LIMITED;
        c->dec.allowed_at = now + wait_ns;
        finish(c, &c->dec, now);
        break;
    case REDISLIMIT_UNAVAILABLE:
    default:
        fallback(c, &c->dec, now);
        break;
    }
    if (!c->dead)
        conn_flush(c);
    conn_process(c, now);
}

static void handle_request(struct conn *c, uint64_t now)
{
    struct ratelimit_request req;
    struct ratelimit_decision *d = &c->dec;
    char esc[200];

    req.request = policy_get(c->pp, "request");
    req.sender = policy_get(c->pp, "sender");
    req.sasl_username = policy_get(c->pp, "sasl_username");
    req.instance = policy_get(c->pp, "instance");
    ratelimit_classify(rl, &c->sess, &req, d);
    switch (d->verdict) {
    case RATELIMIT_INVALID:
        log_warn(TARGET, "not a policy request (request=%s); closing the connection",
                 req.request != NULL
                     ? log_escape(esc, sizeof(esc), req.request, strlen(req.request), 64)
                     : "(none)");
        conn_close(c);
        return;
    case RATELIMIT_CHECK:
        if (redis != NULL) {
            /* req's strings live in the parser until the next push, which
             * only comes after this request is answered. */
            c->pending =
                redislimit_check(redis, d->key, d->key_len, d->instance, now, redis_done, c);
            if (c->pending != NULL)
                return;
            fallback(c, d, now);
            return;
        }
        ratelimit_check(rl, d, now);
        finish(c, d, now);
        return;
    case RATELIMIT_PASS:
    case RATELIMIT_LIMITED:
    default:
        finish(c, d, now);
        return;
    }
}

/* Parses what was read, answering requests until the input is used up or a
 * Redis check is in flight; then writes the replies. */
static void conn_process(struct conn *c, uint64_t now)
{
    char esc[64];

    while (!c->dead && c->pending == NULL && c->in_off < c->in_len &&
           c->out_len + REPLY_MAX <= sizeof(c->out)) {
        size_t used;
        enum policy_status st = policy_push(c->pp, c->in + c->in_off, c->in_len - c->in_off, &used);
        c->in_off += used;
        if (st == POLICY_ERROR) {
            log_warn(
                TARGET, "malformed policy request: %s; closing the connection",
                log_escape(esc, sizeof(esc), policy_error(c->pp), strlen(policy_error(c->pp)), 60));
            conn_close(c);
            return;
        }
        if (st == POLICY_REQUEST)
            handle_request(c, now);
    }
    if (c->dead)
        return;
    if (c->in_off == c->in_len)
        c->in_off = c->in_len = 0;
    if (c->out_len > 0)
        conn_flush(c);
    conn_update(c, now);
}

static void conn_readable(struct conn *c, uint64_t now)
{
    ssize_t n;

    if (c->in_off < c->in_len)
        return; /* still working on earlier input */
    n = recv(c->fd, c->in, sizeof(c->in), 0);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return;
        log_debug(TARGET, "fd %d: read failed: %s", c->fd, strerror(errno));
        conn_close(c);
        return;
    }
    if (n == 0) {
        if (!policy_idle(c->pp))
            log_warn(TARGET, "connection closed in the middle of a request");
        conn_close(c);
        return;
    }
    c->in_off = 0;
    c->in_len = (size_t)n;
    conn_process(c, now);
}

static void conn_event(struct conn *c, uint32_t events, uint64_t now)
{
    if (c->dead)
        return;
    if (events & EPOLLOUT) {
        conn_flush(c);
        if (c->dead)
            return;
        if (c->out_len == 0) {
            conn_process(c, now); /* input held back while the reply was stuck */
            return;
        }
        conn_update(c, now);
    }
    if (events & (EPOLLHUP | EPOLLERR)) {
        /* The peer is gone both ways: nobody will read a reply. */
        conn_close(c);
        return;
    }
    if (events & EPOLLIN)
        conn_readable(c, now);
}

static void accept_all(uint64_t now)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct conn *c;

        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            if (now - last_accept_warning > 60 * NS) {
                log_err(TARGET, "Error accepting connection: %s", strerror(errno));
                last_accept_warning = now;
            }
            return;
        }
        if (nconns >= MAX_CONNS) {
            if (now - last_accept_warning > 60 * NS) {
                log_err(TARGET, "%d connections open; refusing more", MAX_CONNS);
                last_accept_warning = now;
            }
            close(fd);
            continue;
        }
        c = calloc(1, sizeof(*c));
        if (c != NULL)
            c->pp = policy_parser_new(NULL);
        if (c == NULL || c->pp == NULL) {
            log_err(TARGET, "out of memory accepting a connection");
            free(c);
            close(fd);
            return;
        }
        c->w.kind = W_CONN;
        c->fd = fd;
        nconns++;
        conn_update(c, now);
    }
}

static void expire(struct list *l, uint64_t now, bool idle)
{
    while (l->head != NULL && l->head->deadline <= now) {
        struct conn *c = l->head;
        if (idle)
            log_debug(TARGET, "closing a connection idle for %d s", IDLE_TIMEOUT);
        else
            log_warn(TARGET, "request not finished within %d s; closing the connection",
                     REQUEST_TIMEOUT);
        conn_close(c);
    }
}

/* ---- Redis wiring */

static void redis_watch(void *arg, int fd, bool rd, bool wr)
{
    uint32_t ev = (rd ? EPOLLIN : 0) | (wr ? EPOLLOUT : 0);

    (void)arg;
    if (fd != redis_fd) {
        /* A new connection (the old fd, if any, was already dropped). */
        redis_events = 0;
        redis_fd = fd;
    }
    watch_set(fd, &redis_w, &redis_events, ev);
    if (ev == 0)
        redis_fd = -1;
}

static void redis_log(void *arg, enum log_level level, const char *text)
{
    (void)arg;
    log_msg(level, TARGET, "%s%s", text,
            level == LOGL_WARN && strncmp(text, "cannot use", 10) == 0
                ? (fallback_defer ? "; deferring mail until it is back"
                                  : "; limiting on this node alone until it is back")
                : "");
}

/* ---- Snapshot */

/* Failed saves in a row; a failing disk is reported at the first failure
 * and then every tenth (every ten minutes), not every minute. */
static unsigned save_failures;

/* Writes the state file (a temporary file renamed over it). Returns 0 or -1
 * (logged). */
static int snapshot_write(const char *why)
{
    const char *path = cfg->ratelimit_state;
    struct fileio_atomic w;
    char err[256];
    FILE *f = NULL;
    int fd;
    long n;

    if (fileio_atomic_begin(&w, AT_FDCWD, path, 0600, err, sizeof(err)) < 0) {
        if (save_failures % 10 == 0)
            log_err(TARGET, "cannot save the rate-limit state to %s: %s", path, err);
        return -1;
    }
    fd = dup(w.fd);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        snprintf(err, sizeof(err), "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    n = ratelimit_save(rl, f, clock_mono_ns(), clock_wall_ns());
    if (n < 0 || fflush(f) != 0) {
        snprintf(err, sizeof(err), "%s", strerror(errno));
        fclose(f);
        goto fail;
    }
    if (fclose(f) != 0) {
        snprintf(err, sizeof(err), "%s", strerror(errno));
        goto fail;
    }
    if (fileio_atomic_commit(&w, err, sizeof(err)) < 0) {
        log_err(TARGET, "cannot save the rate-limit state to %s: %s", path, err);
        return -1;
    }
    log_debug(TARGET, "saved %ld senders to %s (%s)", n, path, why);
    return 0;
fail:
    fileio_atomic_abort(&w);
    log_err(TARGET, "cannot save the rate-limit state to %s: %s", path, err);
    return -1;
}

/* A child writing the state in the background, or -1. */
static pid_t saver = -1;

/* Waits for (block) or looks at (!block) the background writer. */
static void snapshot_reap(bool block)
{
    int st;

    if (saver < 0 || waitpid(saver, &st, block ? 0 : WNOHANG) != saver)
        return;
    saver = -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        dirty = true; /* it logged why; try again next time */
        save_failures++;
    } else {
        save_failures = 0;
    }
}

/* Saves without stopping the loop: a forked child writes its copy-on-write
 * image of the table (a million senders take about a second to write). */
static void snapshot_save_background(const char *why)
{
    pid_t pid;

    if (cfg->ratelimit_state[0] == '\0' || saver >= 0)
        return;
    pid = fork();
    if (pid == 0)
        _exit(snapshot_write(why) == 0 ? 0 : 1);
    if (pid < 0) {
        if (snapshot_write(why) == 0)
            dirty = false;
        return;
    }
    saver = pid;
    dirty = false;
}

/* Saves now (at shutdown), after any background writer is done. */
static void snapshot_save(const char *why)
{
    if (cfg->ratelimit_state[0] == '\0')
        return;
    snapshot_reap(true);
    if (snapshot_write(why) == 0)
        dirty = false;
}

static void snapshot_load(void)
{
    char err[256];
    const char *path = cfg->ratelimit_state;
    FILE *f;
    long n;

    if (path[0] == '\0')
        return;
    f = fopen(path, "re");
    if (f == NULL) {
        if (errno != ENOENT)
            log_warn(TARGET, "cannot read the rate-limit state %s: %s; starting empty", path,
                     strerror(errno));
        return;
    }
    n = ratelimit_load(rl, f, clock_mono_ns(), clock_wall_ns(), err, sizeof(err));
    fclose(f);
    if (n < 0)
        log_warn(TARGET, "ignoring the rate-limit state %s: %s", path, err);
    else
        log_info(TARGET, "restored %ld senders from %s", n, path);
}

/* ---- Start-up */

static void usage(const char *argv0)
{
    fprintf(stderr, "Usage: %s <config_file>\n", argv0);
    fprintf(stderr, "  the relay's chatmail.ini; see filtermail-policyd(8)\n");
}

static void raise_fd_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < MAX_CONNS + 64) {
        r.rlim_cur = r.rlim_max < MAX_CONNS + 64 ? r.rlim_max : MAX_CONNS + 64;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

static void tick(uint64_t now)
{
    static uint64_t last_watchdog;
    struct ratelimit_stats st;
    unsigned wd = sdnotify_watchdog_interval_ms();

    if (wd > 0 && now - last_watchdog >= (uint64_t)wd * 1000000u) {
        sdnotify_watchdog();
        last_watchdog = now;
    }
    expire(&idle_list, now, true);
    expire(&request_list, now, false);
    snapshot_reap(false);
    if (redis != NULL)
        redislimit_tick(redis, now);
    /* A full pass over the table every ~30 s at one tick a second. */
    ratelimit_stats(rl, &st);
    ratelimit_sweep(rl, now, st.slots / 32 + 64);
    if (st.evicted_full > 0 && now - last_full_warning > 60 * NS) {
        log_warn(TARGET, "%zu senders tracked (the most); %" PRIu64 " evicted early so far",
                 st.senders, st.evicted_full);
        last_full_warning = now;
    }
}

/* SIGHUP: re-reads the configuration. New limits and exemptions apply at once,
 * with every sender's state carried over (saved and loaded as the snapshot
 * is, so waits are cut to what the new limits allow); connections stay open.
 * Socket, user, log level, Redis and snapshot settings need a restart, which
 * is logged; with Redis the limits do too (its client holds them). A file
 * that does not load keeps the running configuration. The new configuration
 * replaces the old one whole, so any number of reloads keeps one. */
static void reload_config(void)
{
    static const char *const limit_keys[] = {
        "max_user_send_per_minute", "max_user_send_burst_size", "filtermail_ratelimit_exempt",
        NULL,
    };
    char err[1024];
    struct config *n;
    const char *restart;

    if (config_reload(config_path, cfg, CONFIG_PROG_POLICYD, redis != NULL ? limit_keys : NULL,
                      &n, &restart, err, sizeof(err)) < 0) {
        log_err("filtermail", "Failed to reload config: %s (keeping the running configuration)",
                err);
        return;
    }
    if (restart != NULL)
        log_warn("filtermail", "%s (and the other start-up settings) changed in %s: takes "
                 "effect at the next restart", restart, config_path);
    if (config_changed(cfg, n, limit_keys) != NULL) {
        struct ratelimit_config rc = {
            .per_minute = n->max_user_send_per_minute,
            .burst = n->max_user_send_burst_size,
            .exempt = &n->ratelimit_exempt,
        };
        struct ratelimit *nrl = NULL;
        if (getrandom(rc.seed, sizeof(rc.seed), 0) == (ssize_t)sizeof(rc.seed))
            nrl = ratelimit_rebuild(rl, &rc, clock_mono_ns(), clock_wall_ns());
        if (nrl == NULL) {
            log_err("filtermail", "Failed to reload config: cannot carry the senders' state "
                    "over (keeping the running configuration)");
            config_free(&n);
            return;
        }
        ratelimit_free(&rl);
        rl = nrl;
        dirty = true;
    }
    config_free(&cfg);
    cfg = n;
    log_info("filtermail", "configuration reloaded from %s: %u messages a minute, bursts of %u",
             config_path, cfg->max_user_send_per_minute, cfg->max_user_send_burst_size);
}

int main(int argc, char **argv)
{
    char err[1024];
    struct listener_addr laddr;
    struct config *c;
    struct ratelimit_config rc;
    struct redislimit_target rt;
    struct epoll_event evs[256];
    sigset_t sigs;
    uint64_t now, next_tick, next_snapshot, tick_ns;
    bool stop = false;

    if (argc == 2 && strcmp(argv[1], "-V") == 0) {
        printf("filtermail-policyd %s\n", FILTERMAIL_VERSION);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(argv[0]);
        return 1;
    }
    config_path = argv[1];
    if (config_load(argv[1], &c, err, sizeof(err)) < 0) {
        fprintf(stderr, "Failed to read config: %s\n", err);
        return 1;
    }
    cfg = c;
    log_init(argv[0], cfg->log_level);

    if (listener_parse(cfg->policy_socket, &laddr, err, sizeof(err)) < 0)
        config_fatal("filtermail_policy_socket", cfg->policy_socket, err); /* checked at load */
    if (cfg->ratelimit_redis[0] != '\0' &&
        redislimit_parse_url(cfg->ratelimit_redis, &rt, err, sizeof(err)) < 0)
        config_fatal("filtermail_ratelimit_redis", "value", err);
    fallback_defer = strcmp(cfg->ratelimit_redis_fallback, "defer") == 0;

    memset(&rc, 0, sizeof(rc));
    rc.per_minute = cfg->max_user_send_per_minute;
    rc.burst = cfg->max_user_send_burst_size;
    rc.exempt = &cfg->ratelimit_exempt;
    if (getrandom(rc.seed, sizeof(rc.seed), 0) != (ssize_t)sizeof(rc.seed))
        fatal("getrandom: %s", strerror(errno));
    rl = ratelimit_new(&rc);
    if (rl == NULL)
        fatal("out of memory");

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (signal_fd < 0 || epfd < 0)
        fatal("cannot set up the event loop: %s", strerror(errno));

    if (listener_open(&lsn, &laddr, 1024, SOCK_NONBLOCK, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: %s\n", err);
        return 1;
    }
    listen_fd = lsn.fd;
    if (privs_drop(cfg->user, cfg->policy_socket, cfg->socket_group, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: %s\n", err);
        return 1;
    }
    snapshot_load();

    {
        uint32_t ev = 0;
        watch_set(listen_fd, &listener_w, &ev, EPOLLIN);
        ev = 0;
        watch_set(signal_fd, &signal_w, &ev, EPOLLIN);
    }
    if (cfg->ratelimit_redis[0] != '\0') {
        redis = redislimit_new(&rt, ratelimit_gcra(rl), redis_watch, redis_log, NULL);
        if (redis == NULL)
            fatal("out of memory");
    }

    log_info("filtermail", "entering serving loop");
    log_info(TARGET, "listening on %s: %u messages a minute, bursts of %u, %s", cfg->policy_socket,
             cfg->max_user_send_per_minute, cfg->max_user_send_burst_size,
             redis == NULL    ? "state in this process"
             : fallback_defer ? "state in Redis (deferring mail when it is unavailable)"
                              : "state in Redis (limiting locally when it is unavailable)");

    sdnotify_ready(redis == NULL ? "serving, state in this process" : "serving, state in Redis");
    tick_ns = redis != NULL ? NS / 10 : NS;
    now = clock_mono_ns();
    next_tick = now;
    next_snapshot = now + SNAPSHOT_EVERY * NS;
    while (!stop) {
        int timeout = (int)((next_tick > now ? next_tick - now : 0) / 1000000u) + 1;
        int n = epoll_wait(epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout);
        if (n < 0 && errno != EINTR)
            fatal("epoll_wait: %s", strerror(errno));
        now = clock_mono_ns();
        for (int i = 0; i < n; i++) {
            struct watch *w = evs[i].data.ptr;
            switch (w->kind) {
            case W_LISTENER:
                accept_all(now);
                break;
            case W_SIGNAL: {
                struct signalfd_siginfo si;
                while (read(signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                    if (si.ssi_signo == SIGHUP) {
                        snapshot_save_background("SIGHUP");
                        reload_config();
                        continue;
                    }
                    log_info(TARGET, "shutting down on signal %u", si.ssi_signo);
                    stop = true;
                }
                break;
            }
            case W_REDIS:
                if (redis != NULL)
                    redislimit_handle(redis, (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0,
                                      (evs[i].events & (EPOLLOUT | EPOLLERR)) != 0);
                break;
            case W_CONN:
                conn_event((struct conn *)w, evs[i].events, now);
                break;
            }
        }
        free_dead();
        if (now >= next_tick) {
            tick(now);
            free_dead();
            next_tick = now + tick_ns;
        }
        if (now >= next_snapshot) {
            if (dirty)
                snapshot_save_background("periodic");
            next_snapshot = now + SNAPSHOT_EVERY * NS;
        }
    }

    sdnotify_stopping();
    snapshot_save("shutdown");
    redislimit_free(&redis);
    listener_close(&lsn);
    ratelimit_free(&rl);
    config_free(&cfg);
    return 0;
}
