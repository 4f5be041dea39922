/* server: the policy server's event loop; see server.h. */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "policy_proto.h"
#include "sdnotify.h"

#define TARGET "filtermail::policyd"
/* Upstream logs rate-limit hits under this target. */
#define TARGET_OUT "filtermail::outbound"

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
    struct server *srv;
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
    TAILQ_ENTRY(conn) link; /* in its timeout list, oldest first; or the dead list */
};

/* The lists are glibc's <sys/queue.h> tail queues (the BSDs' and OpenSMTPD's):
 * a documented library rather than one more hand-kept prev/next pair. */
TAILQ_HEAD(conn_queue, conn);

struct server {
    int epfd, listen_fd, redis_fd;
    struct watch listener_w, signal_w, redis_w;
    uint32_t redis_events;
    struct ratelimit *rl;
    struct redislimit *redis;
    bool fallback_defer;
    struct snapshot *snap;
    struct conn_queue idle_list, request_list, dead;
    size_t nconns;
    uint64_t next_tick, tick_ns;
    uint64_t last_full_warning, last_accept_warning, last_watchdog;
};

/* ---- epoll */

static void watch_set(struct server *s, int fd, struct watch *w, uint32_t *current, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = w};
    int op;

    if (*current == events)
        return;
    op = *current == 0 ? EPOLL_CTL_ADD : events == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(s->epfd, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL)
        panic("epoll_ctl(%d): %s", fd, strerror(errno));
    *current = events;
}

/* ---- Connections: timeout lists */

static struct conn_queue *list_of(struct server *s, enum conn_list l)
{
    return l == L_IDLE ? &s->idle_list : l == L_REQUEST ? &s->request_list : NULL;
}

static void list_remove(struct conn *c)
{
    struct conn_queue *l = list_of(c->srv, c->list);
    if (l == NULL)
        return;
    TAILQ_REMOVE(l, c, link);
    c->list = L_NONE;
}

static void list_append(struct conn *c, enum conn_list which, uint64_t deadline)
{
    c->list = which;
    c->deadline = deadline;
    TAILQ_INSERT_TAIL(list_of(c->srv, which), c, link);
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
    TAILQ_INSERT_TAIL(&c->srv->dead, c, link);
    c->srv->nconns--;
}

static void free_dead(struct server *s)
{
    struct conn *c;

    while ((c = TAILQ_FIRST(&s->dead)) != NULL) {
        TAILQ_REMOVE(&s->dead, c, link);
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
    watch_set(c->srv, c->fd, &c->w, &c->events, ev);

    if (c->pending != NULL) {
        list_remove(c); /* the Redis timeout covers it */
    } else if (policy_idle(c->pp) && !unparsed) {
        if (c->list != L_IDLE || c->deadline != now + SERVER_IDLE_TIMEOUT * NS) {
            list_remove(c);
            list_append(c, L_IDLE, now + SERVER_IDLE_TIMEOUT * NS);
        }
    } else if (c->list != L_REQUEST) {
        /* Set once when a request begins; more bytes do not extend it. */
        list_remove(c);
        list_append(c, L_REQUEST, now + SERVER_REQUEST_TIMEOUT * NS);
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
    struct server *s = c->srv;

    if (s->fallback_defer) {
        log_debug(TARGET, "Redis unavailable: deferring");
        reply(c, d, "451 4.3.0 Rate limiting temporarily unavailable, try again later");
        return;
    }
    ratelimit_check(s->rl, d, now);
    snapshot_touch(s->snap);
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
    if (redislimit_decide(res, wait_ns, now, &c->dec))
        finish(c, &c->dec, now);
    else
        fallback(c, &c->dec, now);
    if (!c->dead)
        conn_flush(c);
    conn_process(c, now);
}

static void handle_request(struct conn *c, uint64_t now)
{
    struct ratelimit_request req;
    struct ratelimit_decision *d = &c->dec;
    struct server *s = c->srv;
    char esc[200];

    req.request = policy_get(c->pp, "request");
    req.sender = policy_get(c->pp, "sender");
    req.sasl_username = policy_get(c->pp, "sasl_username");
    req.instance = policy_get(c->pp, "instance");
    ratelimit_classify(s->rl, &c->sess, &req, d);
    switch (d->verdict) {
    case RATELIMIT_INVALID:
        log_warn(TARGET, "not a policy request (request=%s); closing the connection",
                 req.request != NULL
                     ? log_escape(esc, sizeof(esc), req.request, strlen(req.request), 64)
                     : "(none)");
        conn_close(c);
        return;
    case RATELIMIT_CHECK:
        if (s->redis != NULL) {
            /* req's strings live in the parser until the next push, which
             * only comes after this request is answered. */
            c->pending =
                redislimit_check(s->redis, d->key, d->key_len, d->instance, now, redis_done, c);
            if (c->pending != NULL)
                return;
            fallback(c, d, now);
            return;
        }
        ratelimit_check(s->rl, d, now);
        snapshot_touch(s->snap);
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

static void accept_all(struct server *s, uint64_t now)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        struct conn *c;

        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
                return;
            if (now - s->last_accept_warning > 60 * NS) {
                log_err(TARGET, "Error accepting connection: %s", strerror(errno));
                s->last_accept_warning = now;
            }
            return;
        }
        if (s->nconns >= SERVER_MAX_CONNS) {
            if (now - s->last_accept_warning > 60 * NS) {
                log_err(TARGET, "%d connections open; refusing more", SERVER_MAX_CONNS);
                s->last_accept_warning = now;
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
        c->srv = s;
        c->fd = fd;
        s->nconns++;
        conn_update(c, now);
    }
}

static void expire(struct conn_queue *l, uint64_t now, bool idle)
{
    struct conn *c;

    while ((c = TAILQ_FIRST(l)) != NULL && c->deadline <= now) {
        if (idle)
            log_debug(TARGET, "closing a connection idle for %d s", SERVER_IDLE_TIMEOUT);
        else
            log_warn(TARGET, "request not finished within %d s; closing the connection",
                     SERVER_REQUEST_TIMEOUT);
        conn_close(c);
    }
}

/* ---- Redis wiring */

static void redis_watch(void *arg, int fd, bool rd, bool wr)
{
    struct server *s = arg;
    uint32_t ev = (rd ? EPOLLIN : 0) | (wr ? EPOLLOUT : 0);

    if (fd != s->redis_fd) {
        /* A new connection (the old fd, if any, was already dropped). */
        s->redis_events = 0;
        s->redis_fd = fd;
    }
    watch_set(s, fd, &s->redis_w, &s->redis_events, ev);
    if (ev == 0)
        s->redis_fd = -1;
}

static void redis_log(void *arg, enum log_level level, const char *text)
{
    struct server *s = arg;
    log_msg(level, TARGET, "%s%s", text,
            level == LOGL_WARN && strncmp(text, "cannot use", 10) == 0
                ? (s->fallback_defer ? "; deferring mail until it is back"
                                     : "; limiting on this node alone until it is back")
                : "");
}

/* ---- The loop */

static void tick(struct server *s, uint64_t now)
{
    struct ratelimit_stats st;
    unsigned wd = sdnotify_watchdog_interval_ms();

    if (wd > 0 && now - s->last_watchdog >= (uint64_t)wd * 1000000u) {
        sdnotify_watchdog();
        s->last_watchdog = now;
    }
    expire(&s->idle_list, now, true);
    expire(&s->request_list, now, false);
    snapshot_tick(s->snap, s->rl, now);
    if (s->redis != NULL)
        redislimit_tick(s->redis, now);
    /* A full pass over the table every ~30 s at one tick a second. */
    ratelimit_stats(s->rl, &st);
    ratelimit_sweep(s->rl, now, st.slots / 32 + 64);
    if (st.evicted_full > 0 && now - s->last_full_warning > 60 * NS) {
        log_warn(TARGET, "%zu senders tracked (the most); %" PRIu64 " evicted early so far",
                 st.senders, st.evicted_full);
        s->last_full_warning = now;
    }
}

struct server *server_new(const struct server_params *p, char *err, size_t errlen)
{
    struct server *s = calloc(1, sizeof(*s));
    uint32_t ev = 0;

    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->listener_w.kind = W_LISTENER;
    s->signal_w.kind = W_SIGNAL;
    s->redis_w.kind = W_REDIS;
    s->listen_fd = p->listen_fd;
    s->redis_fd = -1;
    TAILQ_INIT(&s->idle_list);
    TAILQ_INIT(&s->request_list);
    TAILQ_INIT(&s->dead);
    s->rl = p->rl;
    s->fallback_defer = p->fallback_defer;
    s->snap = p->snap;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        snprintf(err, errlen, "cannot set up the event loop: %s", strerror(errno));
        free(s);
        return NULL;
    }
    watch_set(s, s->listen_fd, &s->listener_w, &ev, EPOLLIN);
    if (p->redis != NULL) {
        s->redis = redislimit_new(p->redis, ratelimit_gcra(s->rl), redis_watch, redis_log, s);
        if (s->redis == NULL) {
            snprintf(err, errlen, "out of memory");
            close(s->epfd);
            free(s);
            return NULL;
        }
    }
    s->tick_ns = s->redis != NULL ? NS / 10 : NS;
    s->next_tick = clock_mono_ns();
    return s;
}

static void close_all(struct conn_queue *l)
{
    struct conn *c;

    while ((c = TAILQ_FIRST(l)) != NULL)
        conn_close(c);
}

void server_free(struct server **sp)
{
    struct server *s = *sp;
    if (s == NULL)
        return;
    redislimit_free(&s->redis); /* checks in flight complete as UNAVAILABLE */
    close_all(&s->idle_list);
    close_all(&s->request_list);
    free_dead(s);
    ratelimit_free(&s->rl);
    close(s->epfd);
    free(s);
    *sp = NULL;
}

int server_watch(struct server *s, int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &s->signal_w};
    return epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev);
}

bool server_poll(struct server *s)
{
    struct epoll_event evs[256];
    uint64_t now = clock_mono_ns();
    int timeout = (int)((s->next_tick > now ? s->next_tick - now : 0) / 1000000u) + 1;
    int n = epoll_wait(s->epfd, evs, (int)(sizeof(evs) / sizeof(evs[0])), timeout);
    bool signalled = false;

    if (n < 0 && errno != EINTR)
        fatal("epoll_wait: %s", strerror(errno));
    now = clock_mono_ns();
    for (int i = 0; i < n; i++) {
        struct watch *w = evs[i].data.ptr;
        switch (w->kind) {
        case W_LISTENER:
            accept_all(s, now);
            break;
        case W_SIGNAL:
            signalled = true;
            break;
        case W_REDIS:
            if (s->redis != NULL)
                redislimit_handle(s->redis, (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0,
                                  (evs[i].events & (EPOLLOUT | EPOLLERR)) != 0);
            break;
        case W_CONN:
            conn_event((struct conn *)w, evs[i].events, now);
            break;
        }
    }
    free_dead(s);
    if (now >= s->next_tick) {
        tick(s, now);
        free_dead(s);
        s->next_tick = now + s->tick_ns;
    }
    return signalled;
}

struct ratelimit *server_ratelimit(struct server *s)
{
    return s->rl;
}

void server_set_ratelimit(struct server *s, struct ratelimit *rl)
{
    ratelimit_free(&s->rl);
    s->rl = rl;
}

bool server_shared(const struct server *s)
{
    return s->redis != NULL;
}
