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
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include "buf.h"
#include "clock.h"
#include "fdio.h"
#include "listener.h"
#include "log.h"
#include "mproto.h"

#define TARGET "filtermail::milter"

/* Missing bytes of a packet from which the rest is awaited in one read. */
#define WAITALL_MIN 8192

struct mserver {
    struct listener lsn;
    int lfd;                     /* lsn.fd */
    int wake_pipe[2];            /* non-blocking; a byte wakes mserver_run */
    /* Set by signal handlers (on any thread) and other threads: lock-free
     * atomics, so both async-signal-safe and free of data races. */
    atomic_int stop_asked, reload_asked;
    struct mserver_config cfg;
    pthread_mutex_t lock;        /* guards the lists and stopping */
    pthread_cond_t ended;        /* signalled when the last session ends */
    struct msession_config session_cfg;
    LIST_HEAD(, mconn) sessions; /* running sessions */
    unsigned nsessions;
    /* Ended sessions whose threads are still to be joined:
     * a session thread is joined, never detached, so that when
     * mserver_close returns no thread of the server runs any more, not even
     * its exit (thread-local destructors, e.g. OpenSSL's, and the sanitizers'
     * bookkeeping), under the caller's exit(). */
    struct mconn *ended_list;    /* linked by ended_next */
    bool stopping;               /* no new message; idle sessions end */
};

/* One Postfix connection: its socket and its session core. */
struct mconn {
    struct mserver *srv;
    /* glibc's <sys/queue.h> list, as the policy server's and the DKIM
     * cache's: unordered, so a LIST rather than a TAILQ. */
    LIST_ENTRY(mconn) link;      /* in srv->sessions */
    struct mconn *ended_next;    /* in srv->ended_list, once off srv->sessions */
    pthread_t thread;
    bool started;                /* thread exists: joined before c is freed */
    int fd;
    bool idle;           /* waiting for a packet outside a message (srv->lock) */
    struct msess *ms;
};

/* ------------------------------------------------------------------------ */
/* One connection. */

static void wake(struct mserver *srv);

/* Sends the replies the session produced. The socket is blocking: each
 * send(2) that stalls is bounded by SO_SNDTIMEO (cfg.timeout), so fd_send_all
 * gets no wait of its own. */
static int flush(struct mconn *c)
{
    struct buf *out = msess_output(c->ms);
    if (out->len > 0 && fd_send_all(c->fd, out->data, out->len, 0, 0) < 0)
        return -1;
    buf_reset(out);
    return 0;
}

/* Between packets: waits without a time limit (Postfix sends nothing while a
 * client uploads a message; only a started packet that stalls costs the
 * connection: SO_RCVTIMEO), marked idle so that a shutdown can end the
 * wait. Returns false when the session should end instead (shutting down
 * outside a message). */
static bool wait_for_packet(struct mconn *c)
{
    struct mserver *srv = c->srv;
    struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
    bool in_txn = msess_in_txn(c->ms);

    pthread_mutex_lock(&srv->lock);
    if (srv->stopping && !in_txn) {
        pthread_mutex_unlock(&srv->lock);
        return false;
    }
    c->idle = !in_txn;
    pthread_mutex_unlock(&srv->lock);
    while (poll(&pfd, 1, -1) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&srv->lock);
    c->idle = false;
    pthread_mutex_unlock(&srv->lock);
    return true;
}

/* Takes an ended connection off the list and closes its socket, under the
 * lock so that mserver_close never shuts a descriptor number reused since.
 * A started one goes to the ended list, and mserver_run is woken to join
 * its thread and free it; one that never started is freed here. After this
 * the thread must touch neither c nor srv. */
static void session_unlist(struct mconn *c)
{
    struct mserver *srv = c->srv;
    pthread_mutex_lock(&srv->lock);
    LIST_REMOVE(c, link);
    close(c->fd);
    if (c->started) {
        c->ended_next = srv->ended_list;
        srv->ended_list = c;
        wake(srv);
    }
    if (--srv->nsessions == 0)
        pthread_cond_broadcast(&srv->ended);
    pthread_mutex_unlock(&srv->lock);
    if (!c->started)
        free(c);
}

/* Joins the threads of ended sessions and frees them, waiting for each
 * until deadline (monotonic) at most: a thread on the list has only its
 * return left. Those not joined in time stay on the list. Only the thread
 * that runs mserver_run, then mserver_close, calls this. Returns how many
 * are left. */
static unsigned reap_ended(struct mserver *srv, const struct timespec *deadline)
{
    unsigned left = 0;
    pthread_mutex_lock(&srv->lock);
    struct mconn *list = srv->ended_list;
    srv->ended_list = NULL;
    pthread_mutex_unlock(&srv->lock);
    while (list != NULL) {
        struct mconn *c = list;
        list = c->ended_next;
        if (pthread_clockjoin_np(c->thread, NULL, CLOCK_MONOTONIC, deadline) == 0) {
            free(c);
            continue;
        }
        pthread_mutex_lock(&srv->lock);
        c->ended_next = srv->ended_list;
        srv->ended_list = c;
        pthread_mutex_unlock(&srv->lock);
        left++;
    }
    return left;
}

/* The thin loop around the session core: receive, hand over, send. */
static void *session(void *arg)
{
    struct mconn *c = arg;
    int rc = MSESS_GO_ON;

    for (;;) {
        if (flush(c) < 0 || rc != MSESS_GO_ON)
            break;
        if (msess_between_packets(c->ms) && !wait_for_packet(c))
            break;
        size_t room, missing = msess_missing(c->ms);
        unsigned char *in = msess_inbuf(c->ms, &room);
        if (in == NULL)
            break;
        /* Postfix writes a body chunk in 4 KiB pieces: waiting for the rest
         * of a large packet at once (MSG_WAITALL) saves a return to user
         * space and a parse attempt per piece. The kernel still wakes the
         * thread for every piece (AF_UNIX ignores SO_RCVLOWAT); polling the
         * queued byte count after short sleeps instead was measured and cost
         * more. */
        size_t want = room;
        int flags = 0;
        if (missing > WAITALL_MIN && missing <= room) {
            want = missing;
            flags = MSG_WAITALL;
        }
        ssize_t r = recv(c->fd, in, want, flags);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* end of connection, a stalled packet, or an error */
        rc = msess_received(c->ms, (size_t)r);
    }
    msess_free(&c->ms);
    session_unlist(c);
    return NULL;
}

static void start_session(struct mserver *srv, int fd)
{
    struct timeval tv = {.tv_sec = srv->cfg.timeout};
    int one = 1;
    struct mconn *c;
    pthread_attr_t attr;

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
    c = calloc(1, sizeof(*c));
    if (c != NULL)
        c->ms = msess_new(&srv->session_cfg);
    if (c == NULL || c->ms == NULL) {
        free(c);
        close(fd);
        return;
    }
    c->srv = srv;
    c->fd = fd;
    /* Listed and marked started before the thread runs (it may end at
     * once); unmarked again if it cannot start. */
    c->started = true;
    pthread_mutex_lock(&srv->lock);
    LIST_INSERT_HEAD(&srv->sessions, c, link);
    srv->nsessions++;
    pthread_mutex_unlock(&srv->lock);
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1024 * 1024);
    int e = pthread_create(&c->thread, &attr, session, c);
    pthread_attr_destroy(&attr);
    if (e == 0)
        return;
    log_err(TARGET, "cannot start a session thread: %s", strerror(e));
    c->started = false;
    msess_free(&c->ms);
    session_unlist(c);
}

struct mserver *mserver_open(const struct mserver_config *cfg, char *err, size_t errlen)
{
    struct mserver *srv = calloc(1, sizeof(*srv));
    const char *spec = cfg->socket_spec;

    if (srv == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    LIST_INIT(&srv->sessions);
    srv->cfg = *cfg;
    srv->session_cfg = (struct msession_config){.actions = cfg->actions,
                                                .protocol = cfg->protocol,
                                                .symlist_stage = cfg->symlist_stage,
                                                .symlist = cfg->symlist,
                                                .cb = cfg->cb,
                                                .ctx = cfg->ctx};
    srv->wake_pipe[0] = srv->wake_pipe[1] = -1;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->ended, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&srv->lock, NULL);
    /* The socket (listener.h: one syntax for every daemon; a unix socket
     * another process still listens on is left alone). */
    struct listener_addr addr;
    srv->lsn.fd = -1;
    if (listener_parse(spec, &addr, err, errlen) == 0 &&
        listener_open(&srv->lsn, &addr, 128, SOCK_NONBLOCK, err, errlen) == 0)
        srv->lfd = srv->lsn.fd;
    else
        srv->lfd = -1;
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
    atomic_store(&srv->reload_asked, 1);
    wake(srv);
}

void mserver_stop(struct mserver *srv)
{
    if (srv == NULL)
        return;
    atomic_store(&srv->stop_asked, 1);
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

/* How long mserver_run waits for an ended session's thread to return before
 * leaving it to a later wake-up (or to mserver_close). */
#define REAP_WAIT_MS 1000

int mserver_run(struct mserver *srv, char *err, size_t errlen)
{
    struct pollfd pfd[2] = {{.fd = srv->lfd, .events = POLLIN},
                            {.fd = srv->wake_pipe[0], .events = POLLIN}};
    bool ticking = srv->cfg.tick != NULL && srv->cfg.tick_ms > 0;
    uint64_t next_tick = ticking ? clock_mono_ms() : 0;

    for (;;) {
        int timeout = -1;
        if (ticking) {
            uint64_t now = clock_mono_ms();
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
            struct timespec reap_by = clock_mono_deadline(REAP_WAIT_MS);
            reap_ended(srv, &reap_by);
            if (atomic_load(&srv->stop_asked))
                return 0;
            if (atomic_exchange(&srv->reload_asked, 0) && srv->cfg.reload != NULL)
                srv->cfg.reload();
            continue;
        }
        if (pfd[0].revents == 0)
            continue;
        /* The listener is non-blocking: a connection gone between poll and
         * accept must not keep the loop from a stop request. The accepted
         * socket is blocking (accept4 does not inherit O_NONBLOCK). */
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

/* The part of a shutdown after the grace period: every socket is shut, so
 * no session waits on Postfix any more; a session inside a callback (a DNS
 * lookup) ends when that returns. */
#define SHUT_WAIT_MS 5000

int mserver_close(struct mserver **sp)
{
    struct mserver *srv = *sp;
    struct mconn *c;
    unsigned left;
    if (srv == NULL)
        return 0;
    *sp = NULL;
    listener_close(&srv->lsn); /* and its socket file, if still ours */
    srv->lfd = -1;
    pthread_mutex_lock(&srv->lock);
    srv->stopping = true;
    LIST_FOREACH(c, &srv->sessions, link)
        if (c->idle)
            shutdown(c->fd, SHUT_RD);
    struct timespec grace = clock_mono_deadline(srv->cfg.shutdown_ms);
    left = wait_sessions(srv, &grace);
    if (left > 0) {
        log_warn(TARGET, "%u milter sessions still busy after %u ms; closing their connections",
                 left, srv->cfg.shutdown_ms);
        LIST_FOREACH(c, &srv->sessions, link)
            shutdown(c->fd, SHUT_RDWR);
        struct timespec last = clock_mono_deadline(SHUT_WAIT_MS);
        left = wait_sessions(srv, &last);
    }
    pthread_mutex_unlock(&srv->lock);
    if (left > 0) {
        /* Still inside callbacks: the server is left to the exiting process
         * rather than freed under them. */
        log_err(TARGET, "%u milter sessions did not end; leaving them to the exit", left);
        return -1;
    }
    /* Every session has ended: their threads have only their return left. */
    struct timespec join_by = clock_mono_deadline(SHUT_WAIT_MS);
    left = reap_ended(srv, &join_by);
    if (left > 0) {
        log_err(TARGET, "%u milter session threads did not return; leaving them to the exit",
                left);
        return -1;
    }
    /* The handlers first: a second SIGTERM during the shutdown must not
     * write to a closed (or reused) pipe descriptor. */
    if (signal_server == srv) {
        struct sigaction ign = {.sa_handler = SIG_IGN};
        sigaction(SIGTERM, &ign, NULL);
        sigaction(SIGINT, &ign, NULL);
        sigaction(SIGHUP, &ign, NULL);
        signal_server = NULL;
    }
    if (srv->wake_pipe[0] >= 0)
        close(srv->wake_pipe[0]);
    if (srv->wake_pipe[1] >= 0)
        close(srv->wake_pipe[1]);
    pthread_cond_destroy(&srv->ended);
    pthread_mutex_destroy(&srv->lock);
    free(srv);
    return 0;
}
