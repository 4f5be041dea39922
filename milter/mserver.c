/* mserver: the milter server; see mserver.h and, for why it is not
 * libmilter, mproto.h. */
#include "mserver.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include "buf.h"
#include "fdio.h"
#include "log.h"
#include "mproto.h"

#define TARGET "filtermail::milter"

/* Macros kept per session (Postfix sends a handful per stage). */
#define MAX_MACROS 64
/* Bytes of macro names and values kept per session. */
#define MAX_MACRO_BYTES (64 * 1024)
/* Bytes read at once; a packet larger than this grows the buffer up to
 * MPROTO_MAX_PACKET. */
#define READ_CHUNK (128 * 1024)
/* Missing bytes of a packet from which the rest is awaited in one read. */
#define WAITALL_MIN 8192

struct mserver {
    int lfd;
    int wake_pipe[2];            /* non-blocking; a byte wakes mserver_run */
    volatile sig_atomic_t stop_asked, reload_asked;
    struct mserver_config cfg;
    pthread_mutex_t lock;        /* guards the session list and stopping */
    pthread_cond_t ended;        /* signalled when the last session ends */
    struct msess *sessions;      /* running sessions */
    unsigned nsessions;
    bool stopping;               /* no new message; idle sessions end */
};

struct macro {
    char stage;
    char *name, *value;
};

struct msess {
    struct mserver *srv;
    struct msess *prev, *next;   /* in srv->sessions */
    int fd;
    bool in_txn;         /* from MAIL to end of message or ABORT */
    bool idle;           /* waiting for a packet outside a message (srv->lock) */
    void *priv;
    uint32_t actions, protocol;
    bool connected;      /* negotiated; connect callback ran */
    bool in_eom;         /* modifications are allowed */
    bool have_reply;
    char reply[1024];
    struct macro macros[MAX_MACROS];
    size_t nmacros;
    struct buf out;
    unsigned char *in;
    size_t inlen, incap;
};

/* ------------------------------------------------------------------------ */
/* Session API. */

void *msess_getpriv(struct msess *s)
{
    return s->priv;
}

void msess_setpriv(struct msess *s, void *priv)
{
    s->priv = priv;
}

uint32_t msess_protocol(const struct msess *s)
{
    return s->protocol;
}

const char *msess_getsymval(struct msess *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->nmacros; i++) {
        const char *m = s->macros[i].name;
        /* Postfix sends "{name}" for long names; accept either spelling. */
        if (strcmp(m, name) == 0 ||
            (m[0] == '{' && strlen(m) == n + 2 && strncmp(m + 1, name, n) == 0) ||
            (name[0] == '{' && strlen(m) + 2 == n && strncmp(name + 1, m, n - 2) == 0))
            return s->macros[i].value;
    }
    return NULL;
}

int msess_setreply(struct msess *s, const char *code, const char *xcode, const char *text)
{
    int n = snprintf(s->reply, sizeof(s->reply), "%s%s%s %s", code,
                     xcode != NULL && xcode[0] != '\0' ? " " : "", xcode != NULL ? xcode : "",
                     text);
    if (n < 0 || (size_t)n >= sizeof(s->reply)) {
        s->have_reply = false;
        return -1;
    }
    s->have_reply = true;
    return 0;
}

int msess_delrcpt(struct msess *s, const char *rcpt)
{
    if (!s->in_eom || !(s->actions & SMFIF_DELRCPT))
        return -1;
    return mproto_put_str(&s->out, SMFIR_DELRCPT, rcpt);
}

int msess_chgfrom(struct msess *s, const char *from)
{
    if (!s->in_eom || !(s->actions & SMFIF_CHGFROM))
        return -1;
    return mproto_put_chgfrom(&s->out, from);
}

int msess_insheader(struct msess *s, uint32_t idx, const char *name, const char *value)
{
    if (!s->in_eom || !(s->actions & SMFIF_ADDHDRS))
        return -1;
    return mproto_put_insheader(&s->out, idx, name, value);
}

/* ------------------------------------------------------------------------ */
/* One connection. */

static void macros_clear(struct msess *s, char stage)
{
    size_t o = 0;
    for (size_t i = 0; i < s->nmacros; i++) {
        if (stage == 0 || s->macros[i].stage == stage) {
            free(s->macros[i].name);
            free(s->macros[i].value);
        } else {
            s->macros[o++] = s->macros[i];
        }
    }
    s->nmacros = o;
}

/* Stores the macros of one stage. Returns 0, or -1 when they cannot all be
 * kept (more than MAX_MACROS, MAX_MACRO_BYTES in all, or out of memory): a
 * dropped {auth_authen} or {daemon_name} would change the message's
 * direction, so the connection is closed and Postfix answers with its
 * milter_default_action (tempfail). */
static int macros_set(struct msess *s, const struct mpacket *p)
{
    const char *name, *value;
    size_t off = 1;
    if (p->len < 1)
        return 0;
    macros_clear(s, (char)p->data[0]);
    size_t bytes = 0;
    for (size_t i = 0; i < s->nmacros; i++)
        bytes += strlen(s->macros[i].name) + strlen(s->macros[i].value);
    while (mproto_macro(p, &off, &name, &value)) {
        bytes += strlen(name) + strlen(value);
        if (s->nmacros >= MAX_MACROS || bytes > MAX_MACRO_BYTES) {
            log_warn(TARGET, "more macros than the limits (%d, %d bytes); closing the connection",
                     MAX_MACROS, MAX_MACRO_BYTES);
            return -1;
        }
        struct macro *m = &s->macros[s->nmacros];
        m->stage = (char)p->data[0];
        m->name = strdup(name);
        m->value = strdup(value);
        if (m->name == NULL || m->value == NULL) {
            free(m->name);
            free(m->value);
            log_err(TARGET, "out of memory storing macros; closing the connection");
            return -1;
        }
        s->nmacros++;
    }
    return 0;
}

/* Queues the answer to a command; nothing when no reply was negotiated. */
static int respond(struct msess *s, enum mstatus st, uint32_t nr_flag)
{
    if (nr_flag != 0 && (s->protocol & nr_flag))
        return 0;
    switch (st) {
    case MS_ACCEPT:
        return mproto_put(&s->out, SMFIR_ACCEPT, NULL, 0);
    case MS_REJECT:
    case MS_TEMPFAIL:
        if (s->have_reply) {
            s->have_reply = false;
            return mproto_put_str(&s->out, SMFIR_REPLYCODE, s->reply);
        }
        return mproto_put(&s->out, st == MS_REJECT ? SMFIR_REJECT : SMFIR_TEMPFAIL, NULL, 0);
    case MS_DISCARD:
        return mproto_put(&s->out, SMFIR_DISCARD, NULL, 0);
    case MS_CONTINUE:
    case MS_NOREPLY:
    default:
        return mproto_put(&s->out, SMFIR_CONTINUE, NULL, 0);
    }
}

static void session_end(struct msess *s)
{
    const struct mserver_callbacks *cb = s->srv->cfg.cb;
    s->in_txn = false;
    if (s->connected && cb->close != NULL)
        cb->close(s);
    s->connected = false;
    s->priv = NULL;
    s->have_reply = false;
    macros_clear(s, 0);
}

/* Handles one packet. Returns 0, 1 to close the connection, -1 on error. */
static int handle(struct msess *s, const struct mpacket *p)
{
    const struct mserver_callbacks *cb = s->srv->cfg.cb;
    const struct mserver_config *cfg = &s->srv->cfg;
    uint32_t version, actions, protocol;
    const char *a, *b;

    switch (p->cmd) {
    case SMFIC_OPTNEG:
        if (mproto_parse_optneg(p, &version, &actions, &protocol) < 0) {
            log_warn(TARGET, "malformed option negotiation from the MTA; closing the connection");
            return -1;
        }
        if (version < 6) {
            log_err(TARGET, "the MTA offers milter protocol version %u; version 6 is needed",
                    (unsigned)version);
            return -1;
        }
        s->actions = actions & cfg->actions;
        s->protocol = protocol & cfg->protocol;
        if (mproto_put_optneg(&s->out, 6, s->actions, s->protocol, cfg->symlist_stage,
                              (s->actions & SMFIF_SETSYMLIST) ? cfg->symlist : NULL) < 0)
            return -1;
        if (s->connected)
            session_end(s);
        s->connected = true;
        if (cb->connect != NULL && cb->connect(s) != MS_CONTINUE)
            return -1;
        return 0;
    case SMFIC_MACRO:
        return macros_set(s, p);
    case SMFIC_MAIL:
        s->in_txn = true;
        a = mproto_string(p, 0);
        return respond(s, cb->envfrom(s, a != NULL ? a : "<>"), SMFIP_NR_MAIL);
    case SMFIC_RCPT:
        a = mproto_string(p, 0);
        return respond(s, cb->envrcpt(s, a != NULL ? a : ""), SMFIP_NR_RCPT);
    case SMFIC_HEADER:
        a = mproto_string(p, 0);
        b = mproto_string(p, 1);
        if (a == NULL || b == NULL)
            return -1;
        return respond(s, cb->header(s, a, b), SMFIP_NR_HDR);
    case SMFIC_BODY:
        return respond(s, cb->body(s, p->data, p->len), SMFIP_NR_BODY);
    case SMFIC_BODYEOB: {
        enum mstatus st = MS_CONTINUE;
        if (p->len > 0)
            st = cb->body(s, p->data, p->len);
        s->in_eom = true;
        if (st == MS_CONTINUE || st == MS_NOREPLY)
            st = cb->eom(s);
        s->in_eom = false;
        s->in_txn = false;
        int rc = respond(s, st, 0);
        s->have_reply = false;
        return rc;
    }
    case SMFIC_ABORT:
        s->in_txn = false;
        if (cb->abort != NULL)
            cb->abort(s);
        s->have_reply = false;
        return 0;
    case SMFIC_QUIT:
        return 1;
    case SMFIC_QUIT_NC:
        session_end(s);
        s->connected = true;
        if (cb->connect != NULL && cb->connect(s) != MS_CONTINUE)
            return -1;
        return 0;
    case SMFIC_CONNECT:
        return respond(s, MS_CONTINUE, SMFIP_NR_CONN);
    case SMFIC_HELO:
        return respond(s, MS_CONTINUE, SMFIP_NR_HELO);
    case SMFIC_DATA:
        return respond(s, MS_CONTINUE, SMFIP_NR_DATA);
    case SMFIC_EOH:
        return respond(s, MS_CONTINUE, SMFIP_NR_EOH);
    case SMFIC_UNKNOWN:
        return respond(s, MS_CONTINUE, SMFIP_NR_UNKN);
    default:
        log_warn(TARGET, "unknown milter command 0x%02x", (unsigned char)p->cmd);
        return -1;
    }
}

static int flush(struct msess *s)
{
    if (fd_send_all(s->fd, s->out.data, s->out.len) < 0)
        return -1;
    buf_reset(&s->out);
    return 0;
}

/* Between packets: waits without a time limit (Postfix sends nothing while a
 * client uploads a message; only a started packet that stalls costs the
 * connection, see read_more), marked idle so that a shutdown can end the
 * wait. Returns false when the session should end instead (shutting down
 * outside a message). */
static bool wait_for_packet(struct msess *s)
{
    struct mserver *srv = s->srv;
    struct pollfd pfd = {.fd = s->fd, .events = POLLIN};

    pthread_mutex_lock(&srv->lock);
    if (srv->stopping && !s->in_txn) {
        pthread_mutex_unlock(&srv->lock);
        return false;
    }
    s->idle = !s->in_txn;
    pthread_mutex_unlock(&srv->lock);
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&srv->lock);
    s->idle = false;
    pthread_mutex_unlock(&srv->lock);
    return true;
}

/* Takes an ended session off the list and closes its socket, under the lock
 * so that mserver_close never shuts a descriptor number reused since. After
 * this the session must not touch srv: mserver_close may free it. */
static void session_unlist(struct msess *s)
{
    struct mserver *srv = s->srv;
    pthread_mutex_lock(&srv->lock);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        srv->sessions = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    close(s->fd);
    if (--srv->nsessions == 0)
        pthread_cond_broadcast(&srv->ended);
    pthread_mutex_unlock(&srv->lock);
}

static void *session(void *arg)
{
    struct msess *s = arg;
    size_t start = 0;

    for (;;) {
        struct mpacket p;
        long n;
        int rc = 0;
        while ((n = mproto_next(s->in + start, s->inlen - start, MPROTO_MAX_PACKET, &p)) > 0) {
            start += (size_t)n;
            rc = handle(s, &p);
            if (rc != 0)
                break;
        }
        if (s->out.len > 0 && flush(s) < 0)
            break;
        if (rc != 0 || n < 0) {
            if (n < 0)
                log_warn(TARGET, "malformed milter packet; closing the connection");
            break;
        }
        /* Keep the unfinished packet at the front and read more. */
        if (start > 0) {
            memmove(s->in, s->in + start, s->inlen - start);
            s->inlen -= start;
            start = 0;
        }
        /* A buffer grown for one large packet goes back to READ_CHUNK once
         * it is handled, so an idle session does not keep up to 1 MiB. */
        if (s->incap > READ_CHUNK && s->inlen <= READ_CHUNK / 4) {
            unsigned char *in = realloc(s->in, READ_CHUNK);
            if (in != NULL) {
                s->in = in;
                s->incap = READ_CHUNK;
            }
        }
        if (s->incap - s->inlen < READ_CHUNK / 4) {
            size_t cap = s->incap * 2;
            if (cap > MPROTO_MAX_PACKET + 5 + READ_CHUNK)
                cap = MPROTO_MAX_PACKET + 5 + READ_CHUNK;
            if (cap <= s->incap) {
                log_warn(TARGET, "milter packet too large; closing the connection");
                break;
            }
            unsigned char *in = realloc(s->in, cap);
            if (in == NULL)
                break;
            s->in = in;
            s->incap = cap;
        }
        /* Postfix writes a body chunk in 4 KiB pieces: waiting for the rest
         * of a large packet at once (MSG_WAITALL) saves a return to user space
         * and a parse attempt per piece. The kernel still wakes the thread for
         * every piece (AF_UNIX ignores SO_RCVLOWAT); polling the queued byte
         * count after short sleeps instead was measured and cost more. */
        if (s->inlen == 0 && !wait_for_packet(s))
            break;
        /* Within a packet, each read waits at most cfg.timeout (SO_RCVTIMEO). */
        size_t want = s->incap - s->inlen;
        int flags = 0;
        if (s->inlen >= 4) {
            size_t need = (size_t)s->in[0] << 24 | (size_t)s->in[1] << 16 |
                          (size_t)s->in[2] << 8 | s->in[3];
            need += 4;
            if (need > s->inlen + WAITALL_MIN && need - s->inlen <= want) {
                want = need - s->inlen;
                flags = MSG_WAITALL;
            }
        }
        ssize_t r = recv(s->fd, s->in + s->inlen, want, flags);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* end of connection, timeout or error */
        s->inlen += (size_t)r;
    }
    session_end(s);
    buf_free(&s->out);
    free(s->in);
    session_unlist(s);
    free(s);
    return NULL;
}

static void start_session(struct mserver *srv, int fd)
{
    struct timeval tv = {.tv_sec = srv->cfg.timeout};
    int one = 1;
    struct msess *s;
    pthread_attr_t attr;
    pthread_t t;

    pthread_mutex_lock(&srv->lock);
    unsigned n = srv->nsessions;
    pthread_mutex_unlock(&srv->lock);
    if (n >= srv->cfg.max_sessions) {
        log_warn(TARGET, "%u milter connections already; refusing another",
                 srv->cfg.max_sessions);
        close(fd);
        return;
    }
    /* A started packet or a reply may stall at most cfg.timeout; a dead
     * peer on TCP is found by keepalive (a unix socket's peer that dies
     * closes it). */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    s = calloc(1, sizeof(*s));
    if (s != NULL)
        s->in = malloc(READ_CHUNK);
    if (s == NULL || s->in == NULL) {
        free(s);
        close(fd);
        return;
    }
    s->srv = srv;
    s->fd = fd;
    s->incap = READ_CHUNK;
    buf_init(&s->out, 2 * MPROTO_MAX_PACKET);
    pthread_mutex_lock(&srv->lock);
    s->next = srv->sessions;
    if (s->next != NULL)
        s->next->prev = s;
    srv->sessions = s;
    srv->nsessions++;
    pthread_mutex_unlock(&srv->lock);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 1024 * 1024);
    int e = pthread_create(&t, &attr, session, s);
    pthread_attr_destroy(&attr);
    if (e == 0)
        return;
    log_err(TARGET, "cannot start a session thread: %s", strerror(e));
    buf_free(&s->out);
    free(s->in);
    session_unlist(s);
    free(s);
}

/* ------------------------------------------------------------------------ */
/* The listening socket. */

static int open_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;
    int fd;

    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "socket path too long: %s", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) {
            snprintf(err, errlen, "%s exists and is not a socket", path);
            return -1;
        }
        unlink(path);
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 128) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int open_inet(const char *spec, int family, char *err, size_t errlen)
{
    char port[16], host[256];
    const char *at = strchr(spec, '@');
    struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res;
    int fd, one = 1, e;

    size_t plen = at != NULL ? (size_t)(at - spec) : strlen(spec);
    if (plen == 0 || plen >= sizeof(port) || (at != NULL && strlen(at + 1) >= sizeof(host))) {
        snprintf(err, errlen, "bad socket %s (inet:PORT@HOST)", spec);
        return -1;
    }
    memcpy(port, spec, plen);
    port[plen] = '\0';
    if (at != NULL)
        snprintf(host, sizeof(host), "%s", at + 1);
    e = getaddrinfo(at != NULL ? host : NULL, port, &hints, &res);
    if (e != 0) {
        snprintf(err, errlen, "%s: %s", spec, gai_strerror(e));
        return -1;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) < 0 || listen(fd, 128) < 0) {
        snprintf(err, errlen, "%s: %s", spec, strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    return fd;
}

struct mserver *mserver_open(const struct mserver_config *cfg, char *err, size_t errlen)
{
    struct mserver *srv = calloc(1, sizeof(*srv));
    const char *spec = cfg->socket_spec;

    if (srv == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    srv->cfg = *cfg;
    srv->wake_pipe[0] = srv->wake_pipe[1] = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->ended, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&srv->lock, NULL);
    if (strncmp(spec, "unix:", 5) == 0)
        srv->lfd = open_unix(spec + 5, err, errlen);
    else if (strncmp(spec, "local:", 6) == 0)
        srv->lfd = open_unix(spec + 6, err, errlen);
    else if (strncmp(spec, "inet:", 5) == 0)
        srv->lfd = open_inet(spec + 5, AF_INET, err, errlen);
    else if (strncmp(spec, "inet6:", 6) == 0)
        srv->lfd = open_inet(spec + 6, AF_INET6, err, errlen);
    else if (spec[0] == '/')
        srv->lfd = open_unix(spec, err, errlen);
    else {
        snprintf(err, errlen, "bad socket %s (unix:PATH or inet:PORT@HOST)", spec);
        srv->lfd = -1;
    }
    /* Non-blocking: a signal handler writing to a full pipe must not block
     * (a wake-up is then pending anyway; the flags say what is asked). */
    if (srv->lfd < 0 || pipe2(srv->wake_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
        if (srv->lfd >= 0)
            snprintf(err, errlen, "pipe: %s", strerror(errno));
        mserver_close(&srv);
        return NULL;
    }
    return srv;
}

/* Async-signal-safe; keeps errno. */
static void wake(struct mserver *srv)
{
    int saved = errno;
    if (write(srv->wake_pipe[1], "w", 1) < 0) {
        /* full (EAGAIN): a wake-up is pending already */
    }
    errno = saved;
}

void mserver_reload(struct mserver *srv)
{
    if (srv == NULL)
        return;
    srv->reload_asked = 1;
    wake(srv);
}

void mserver_stop(struct mserver *srv)
{
    if (srv == NULL)
        return;
    srv->stop_asked = 1;
    wake(srv);
}

static struct mserver *signal_server;

static void on_signal(int sig)
{
    if (sig == SIGHUP)
        mserver_reload(signal_server);
    else
        mserver_stop(signal_server);
}

int mserver_catch_signals(struct mserver *srv)
{
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    signal_server = srv;
    if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0 ||
        sigaction(SIGHUP, &sa, NULL) < 0 || signal(SIGPIPE, SIG_IGN) == SIG_ERR)
        return -1;
    return 0;
}

/* Milliseconds on the monotonic clock. */
static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mserver_run(struct mserver *srv, char *err, size_t errlen)
{
    struct pollfd pfd[2] = {{.fd = srv->lfd, .events = POLLIN},
                            {.fd = srv->wake_pipe[0], .events = POLLIN}};
    bool ticking = srv->cfg.tick != NULL && srv->cfg.tick_ms > 0;
    int64_t next_tick = ticking ? mono_ms() : 0;

    for (;;) {
        int timeout = -1;
        if (ticking) {
            int64_t now = mono_ms();
            if (now >= next_tick) {
                srv->cfg.tick();
                next_tick = now + srv->cfg.tick_ms;
            }
            timeout = next_tick - now > INT_MAX ? INT_MAX : (int)(next_tick - now);
        }
        int n = poll(pfd, 2, timeout);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            snprintf(err, errlen, "poll: %s", strerror(errno));
            return -1;
        }
        if (n == 0)
            continue;
        if (pfd[1].revents != 0) {
            char drain[256];
            while (read(srv->wake_pipe[0], drain, sizeof(drain)) > 0)
                ;
            if (srv->stop_asked)
                return 0;
            if (srv->reload_asked) {
                srv->reload_asked = 0;
                if (srv->cfg.reload != NULL)
                    srv->cfg.reload();
            }
            continue;
        }
        if (pfd[0].revents == 0)
            continue;
        int fd = accept4(srv->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                log_err(TARGET, "accept: %s", strerror(errno));
                poll(NULL, 0, 100); /* let sessions end before trying again */
                continue;
            }
            snprintf(err, errlen, "accept: %s", strerror(errno));
            return -1;
        }
        start_session(srv, fd);
    }
}

/* Waits until no session is left or deadline (monotonic) passes (lock held).
 * Returns the number left. */
static unsigned wait_sessions(struct mserver *srv, const struct timespec *deadline)
{
    while (srv->nsessions > 0 &&
           pthread_cond_timedwait(&srv->ended, &srv->lock, deadline) != ETIMEDOUT)
        ;
    return srv->nsessions;
}

static struct timespec deadline_in(unsigned ms)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    t.tv_sec += ms / 1000;
    t.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (t.tv_nsec >= 1000000000L) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000L;
    }
    return t;
}

/* The part of a shutdown after the grace period: every socket is shut, so
 * no session waits on Postfix any more; a session inside a callback (a DNS
 * lookup) ends when that returns. */
#define SHUT_WAIT_MS 5000

int mserver_close(struct mserver **sp)
{
    struct mserver *srv = *sp;
    unsigned left;
    if (srv == NULL)
        return 0;
    *sp = NULL;
    if (srv->lfd >= 0)
        close(srv->lfd);
    srv->lfd = -1;
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    for (struct msess *s = srv->sessions; s != NULL; s = s->next)
        if (s->idle)
            shutdown(s->fd, SHUT_RD);
    struct timespec grace = deadline_in(srv->cfg.shutdown_ms);
    left = wait_sessions(srv, &grace);
    if (left > 0) {
        log_warn(TARGET, "%u milter sessions still busy after %u ms; closing their connections",
                 left, srv->cfg.shutdown_ms);
        for (struct msess *s = srv->sessions; s != NULL; s = s->next)
            shutdown(s->fd, SHUT_RDWR);
        struct timespec last = deadline_in(SHUT_WAIT_MS);
        left = wait_sessions(srv, &last);
    }
    pthread_mutex_unlock(&srv->lock);
    if (left > 0) {
        /* Still inside callbacks: the server is left to the exiting process
         * rather than freed under them. */
        log_err(TARGET, "%u milter sessions did not end; leaving them to the exit", left);
        return -1;
    }
    if (srv->wake_pipe[0] >= 0)
        close(srv->wake_pipe[0]);
    if (srv->wake_pipe[1] >= 0)
        close(srv->wake_pipe[1]);
    if (signal_server == srv) {
        struct sigaction ign = {.sa_handler = SIG_IGN};
        sigaction(SIGTERM, &ign, NULL);
        sigaction(SIGINT, &ign, NULL);
        sigaction(SIGHUP, &ign, NULL);
        signal_server = NULL;
    }
    pthread_cond_destroy(&srv->ended);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    return 0;
}
