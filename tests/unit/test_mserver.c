/* Tests for milter/mserver.c through a real unix socket: the session sees
 * the macros Postfix sends, and more macros than the session can keep close
 * the connection (Postfix then applies milter_default_action = tempfail)
 * instead of silently losing, say, {auth_authen}; silence between packets is
 * waited out while a stalled packet is not; a shutdown with sessions in
 * flight lets messages finish and frees nothing under them (ASan), and
 * returns only when no session thread runs any more; the stop and reload
 * requests never block and keep errno. */
#include "mproto.h"
#include "mserver.h"
#include "unit.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <libmilter/mfdef.h>

#include "buf.h"

/* What the callbacks saw, written by session threads and read by the test
 * (under a lock: the socket orders them, but no tool can tell). */
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;
static char seen_auth[64];
static size_t header_len;

static enum mstatus on_envfrom(struct msess *s, const char *sender)
{
    const char *v = msess_getsymval(s, "{auth_authen}");
    pthread_mutex_lock(&seen_lock);
    snprintf(seen_auth, sizeof(seen_auth), "%s", v != NULL ? v : "(none)");
    pthread_mutex_unlock(&seen_lock);
    return MS_CONTINUE;
}

static enum mstatus on_header(struct msess *s, const char *name, const char *value)
{
    pthread_mutex_lock(&seen_lock);
    header_len = strlen(value);
    pthread_mutex_unlock(&seen_lock);
    return MS_CONTINUE;
}

static void seen_reset(void)
{
    pthread_mutex_lock(&seen_lock);
    seen_auth[0] = '\0';
    header_len = 0;
    pthread_mutex_unlock(&seen_lock);
}

/* A copy of seen_auth (in out), and header_len. */
static size_t seen(char *out, size_t outlen)
{
    pthread_mutex_lock(&seen_lock);
    snprintf(out, outlen, "%s", seen_auth);
    size_t n = header_len;
    pthread_mutex_unlock(&seen_lock);
    return n;
}

static const char *auth_seen(char *out, size_t outlen)
{
    seen(out, outlen);
    return out;
}

static const struct mserver_callbacks cbs = {.envfrom = on_envfrom, .header = on_header};

static void *serve(void *arg)
{
    char err[256];
    if (mserver_run(arg, err, sizeof(err)) < 0)
        fprintf(stderr, "mserver_run: %s\n", err);
    return NULL;
}

static int client(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

static int send_buf(int fd, struct buf *b)
{
    int rc = write(fd, b->data, b->len) == (ssize_t)b->len ? 0 : -1;
    buf_reset(b);
    return rc;
}

/* Reads one packet's command byte; 0 at end of connection, -1 on error. */
static int read_cmd(int fd)
{
    unsigned char hdr[5];
    size_t have = 0;
    while (have < 5) {
        ssize_t n = read(fd, hdr + have, 5 - have);
        if (n == 0)
            return 0;
        if (n < 0)
            return -1;
        have += (size_t)n;
    }
    size_t len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    char skip[4096];
    for (size_t left = len - 1; left > 0;) {
        ssize_t n = read(fd, skip, left < sizeof(skip) ? left : sizeof(skip));
        if (n <= 0)
            return -1;
        left -= (size_t)n;
    }
    return hdr[4];
}

/* A MACRO packet for stage 'M' with n macros {m0}..{m<n-1>} plus one
 * {auth_authen}, each value vlen bytes. */
static void put_macros(struct buf *b, int n, size_t vlen)
{
    struct buf d;
    buf_init(&d, 16 * 1024 * 1024);
    buf_append(&d, "M", 1);
    char *v = malloc(vlen + 1);
    memset(v, 'v', vlen);
    v[vlen] = '\0';
    for (int i = 0; i < n; i++) {
        char name[32];
        int k = snprintf(name, sizeof(name), "{m%d}", i);
        buf_append(&d, name, (size_t)k + 1);
        buf_append(&d, v, vlen + 1);
    }
    buf_append(&d, "{auth_authen}", 14);
    buf_append(&d, "alice", 6);
    mproto_put(b, SMFIC_MACRO, d.data, d.len);
    free(v);
    buf_free(&d);
}

static int session(const char *path, int nmacros, size_t vlen)
{
    struct buf b;
    buf_init(&b, 16 * 1024 * 1024);
    int fd = client(path), cmd = -1;
    if (fd < 0)
        return -2;
    mproto_put_optneg(&b, 6, 0, SMFIP_NR_MAIL, 0, NULL);
    if (send_buf(fd, &b) < 0 || read_cmd(fd) != SMFIC_OPTNEG)
        goto out;
    put_macros(&b, nmacros, vlen);
    mproto_put_str(&b, SMFIC_MAIL, "<alice@example.org>");
    mproto_put(&b, SMFIC_QUIT, NULL, 0);
    send_buf(fd, &b); /* may fail half-way once the server has closed */
    cmd = read_cmd(fd);
out:
    close(fd);
    buf_free(&b);
    return cmd;
}

/* A packet larger than the read buffer (a 300 KiB header), then ordinary
 * ones on the same connection: the buffer grows for it and the session goes
 * on (it shrinks back afterwards; ASan watches the reallocations). */
static int big_then_small(const char *path)
{
    struct buf b;
    buf_init(&b, 16 * 1024 * 1024);
    int fd = client(path), cmd = -1;
    if (fd < 0)
        return -2;
    mproto_put_optneg(&b, 6, 0, SMFIP_NR_MAIL | SMFIP_NR_HDR, 0, NULL);
    if (send_buf(fd, &b) < 0 || read_cmd(fd) != SMFIC_OPTNEG)
        goto out;
    size_t vlen = 300 * 1024;
    char *hdr = malloc(vlen + 16);
    memcpy(hdr, "X-Big", 6);
    memset(hdr + 6, 'v', vlen);
    hdr[6 + vlen] = '\0';
    mproto_put(&b, SMFIC_HEADER, hdr, vlen + 7);
    free(hdr);
    put_macros(&b, 1, 10);
    mproto_put_str(&b, SMFIC_MAIL, "<alice@example.org>");
    mproto_put(&b, SMFIC_QUIT, NULL, 0);
    send_buf(fd, &b);
    /* The header gets a CONTINUE (no-reply was not granted), then QUIT ends
     * the connection. */
    while ((cmd = read_cmd(fd)) == SMFIR_CONTINUE)
        ;
out:
    close(fd);
    buf_free(&b);
    return cmd;
}

static void test_macros(void)
{
    char path[] = "/tmp/filtermail-mserver-XXXXXX", sock[64], spec[80], err[256];
    CHECK(mkdtemp(path) != NULL);
    snprintf(sock, sizeof(sock), "%s/m.sock", path);
    snprintf(spec, sizeof(spec), "unix:%s", sock);
    struct mserver_config cfg = {.socket_spec = spec,
                                 .protocol = SMFIP_NR_MAIL,
                                 .timeout = 5,
                                 .max_sessions = 4,
                                 .cb = &cbs};
    struct mserver *srv = mserver_open(&cfg, err, sizeof(err));
    CHECKF(srv != NULL, "%s", err);
    if (srv == NULL)
        return;
    pthread_t t;
    pthread_create(&t, NULL, serve, srv);

    char auth[64];

    /* A few macros: kept; the session sees {auth_authen} at MAIL FROM, and
     * the connection ends at QUIT (no reply to MAIL was negotiated). */
    seen_reset();
    CHECK_INT(session(sock, 3, 10), 0);
    CHECK_STR(auth_seen(auth, sizeof(auth)), "alice");
    /* 64 + 1 macros, or 70 KiB of them: the connection is closed before MAIL
     * FROM reaches the callback. */
    seen_reset();
    CHECK(session(sock, 64, 10) <= 0);
    CHECK_STR(auth_seen(auth, sizeof(auth)), "");
    CHECK(session(sock, 7, 10 * 1024) <= 0);
    CHECK_STR(auth_seen(auth, sizeof(auth)), "");
    /* The server still serves afterwards. */
    CHECK_INT(session(sock, 3, 10), 0);
    CHECK_STR(auth_seen(auth, sizeof(auth)), "alice");
    /* A large packet first, then small ones on the same connection. */
    seen_reset();
    CHECK_INT(big_then_small(sock), 0);
    CHECK_INT(seen(auth, sizeof(auth)), 300 * 1024); /* header_len */
    CHECK_STR(auth_seen(auth, sizeof(auth)), "alice");

    mserver_stop(srv);
    pthread_join(t, NULL);
    mserver_close(&srv);
    unlink(sock);
    rmdir(path);
}

/* ------------------------------------------------------------------------ */
/* A server with callbacks for whole messages. */

static atomic_int eoms;

/* Per-thread state with a destructor that takes a while, as libraries keep
 * it (OpenSSL frees its per-thread state at thread exit): set at the end of
 * a message while thread_state is on. */
static atomic_bool thread_state;
static pthread_key_t slow_key;
static atomic_int slow_exits;

static void slow_exit(void *v)
{
    poll(NULL, 0, 300);
    atomic_fetch_add(&slow_exits, 1);
}

static enum mstatus any_continue(struct msess *s, const char *a)
{
    return MS_CONTINUE;
}

static enum mstatus hdr_continue(struct msess *s, const char *a, const char *b)
{
    return MS_CONTINUE;
}

static enum mstatus body_continue(struct msess *s, const unsigned char *d, size_t n)
{
    return MS_CONTINUE;
}

/* End of message takes a while (as a DNS lookup would), then rejects with
 * a reply of its own: the client can tell the real verdict from Postfix's
 * default action. */
static enum mstatus slow_eom(struct msess *s)
{
    poll(NULL, 0, 50);
    atomic_fetch_add(&eoms, 1);
    if (atomic_load(&thread_state))
        pthread_setspecific(slow_key, &slow_key);
    msess_setreply(s, "554", "5.7.1", "real verdict");
    return MS_REJECT;
}

static const struct mserver_callbacks msg_cbs = {
    .envfrom = any_continue,
    .envrcpt = any_continue,
    .header = hdr_continue,
    .body = body_continue,
    .eom = slow_eom,
};

struct server {
    char dir[64], sock[96];
    struct mserver *srv;
    pthread_t t;
};

static bool server_start(struct server *sv, int timeout, unsigned shutdown_ms)
{
    char spec[128], err[256];
    snprintf(sv->dir, sizeof(sv->dir), "/tmp/filtermail-mserver-XXXXXX");
    CHECK(mkdtemp(sv->dir) != NULL);
    snprintf(sv->sock, sizeof(sv->sock), "%s/m.sock", sv->dir);
    snprintf(spec, sizeof(spec), "unix:%s", sv->sock);
    struct mserver_config cfg = {.socket_spec = spec,
                                 .protocol = SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR |
                                             SMFIP_NR_BODY,
                                 .timeout = timeout,
                                 .shutdown_ms = shutdown_ms,
                                 .max_sessions = 200,
                                 .cb = &msg_cbs};
    sv->srv = mserver_open(&cfg, err, sizeof(err));
    CHECKF(sv->srv != NULL, "%s", err);
    if (sv->srv == NULL)
        return false;
    pthread_create(&sv->t, NULL, serve, sv->srv);
    return true;
}

/* Stops the accept loop and shuts down; returns mserver_close's result. */
static int server_stop(struct server *sv)
{
    mserver_stop(sv->srv);
    pthread_join(sv->t, NULL);
    int rc = mserver_close(&sv->srv);
    unlink(sv->sock);
    rmdir(sv->dir);
    return rc;
}

/* A connection negotiated and inside a message (MAIL, RCPT, a header sent). */
static int open_message(const char *sock)
{
    struct buf b;
    int fd = client(sock);
    if (fd < 0)
        return -1;
    buf_init(&b, 1024 * 1024);
    mproto_put_optneg(&b, 6, 0, SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NR_BODY, 0,
                      NULL);
    if (send_buf(fd, &b) < 0 || read_cmd(fd) != SMFIC_OPTNEG) {
        close(fd);
        fd = -1;
    } else {
        mproto_put_str(&b, SMFIC_MAIL, "<alice@example.org>");
        mproto_put_str(&b, SMFIC_RCPT, "<bob@example.org>");
        mproto_put(&b, SMFIC_HEADER, "Subject\0 hi", 12);
        send_buf(fd, &b);
    }
    buf_free(&b);
    return fd;
}

/* Sends the body and its end; 0 or -1. */
static int send_end(int fd)
{
    struct buf b;
    buf_init(&b, 1024 * 1024);
    mproto_put(&b, SMFIC_BODY, "body\r\n", 6);
    mproto_put(&b, SMFIC_BODYEOB, NULL, 0);
    int rc = send_buf(fd, &b);
    buf_free(&b);
    return rc;
}

/* Ends the message; returns the reply's command byte (0: connection closed). */
static int end_message(int fd)
{
    return send_end(fd) < 0 ? -1 : read_cmd(fd);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Silence between packets (a client uploading for longer than the packet
 * timeout, Postfix sending nothing meanwhile) is waited out and the message
 * still gets the real verdict; a packet that starts and stalls costs the
 * connection after the timeout. */
static void test_silence_between_packets(void)
{
    struct server sv;
    if (!server_start(&sv, 1, 1000))
        return;
    int fd = open_message(sv.sock);
    CHECK(fd >= 0);
    poll(NULL, 0, 2500); /* 2.5 x the timeout */
    CHECK_INT(end_message(fd), SMFIR_REPLYCODE);
    close(fd);

    fd = open_message(sv.sock);
    CHECK(fd >= 0);
    CHECK(write(fd, "\0\0\0", 3) == 3); /* a packet starts ... and stalls */
    int64_t t0 = now_ms();
    CHECK_INT(read_cmd(fd), 0); /* closed by the server */
    int64_t took = now_ms() - t0;
    CHECKF(took >= 900 && took < 4000, "stalled packet closed after %lld ms", (long long)took);
    close(fd);
    CHECK_INT(server_stop(&sv), 0);
}

struct closer {
    struct server *sv;
    int rc;
    int64_t took_ms;
};

static void *run_close(void *arg)
{
    struct closer *c = arg;
    int64_t t0 = now_ms();
    c->rc = server_stop(c->sv);
    c->took_ms = now_ms() - t0;
    return NULL;
}

/* Shutdown with 50 sessions in flight: 20 idle between messages end at once,
 * 20 inside a message finish it with the real verdict, 10 stalled inside a
 * packet are cut after the grace period; mserver_close then frees the server
 * with no session left (ASan would report a use after free). */
static void test_shutdown_with_sessions_in_flight(void)
{
    enum { IDLE = 20, BUSY = 20, STALLED = 10 };
    int idle[IDLE], busy[BUSY], stalled[STALLED];
    struct server sv;
    struct buf b;

    if (!server_start(&sv, 60, 1500))
        return;
    buf_init(&b, 1024 * 1024);
    for (int i = 0; i < IDLE; i++) {
        idle[i] = client(sv.sock);
        mproto_put_optneg(&b, 6, 0, SMFIP_NR_MAIL, 0, NULL);
        CHECK(idle[i] >= 0 && send_buf(idle[i], &b) == 0 && read_cmd(idle[i]) == SMFIC_OPTNEG);
    }
    for (int i = 0; i < BUSY; i++)
        CHECK((busy[i] = open_message(sv.sock)) >= 0);
    for (int i = 0; i < STALLED; i++) {
        CHECK((stalled[i] = open_message(sv.sock)) >= 0);
        CHECK(write(stalled[i], "\0\0\0\x10" "B", 5) == 5); /* 15 body bytes never come */
    }
    poll(NULL, 0, 200); /* every session has read what it was sent */

    atomic_store(&eoms, 0);
    struct closer c = {.sv = &sv};
    pthread_t t;
    pthread_create(&t, NULL, run_close, &c);
    poll(NULL, 0, 300);
    /* Idle sessions are gone at once. */
    for (int i = 0; i < IDLE; i++) {
        struct pollfd pfd = {.fd = idle[i], .events = POLLIN};
        CHECK(poll(&pfd, 1, 1000) == 1);
        CHECK_INT(read_cmd(idle[i]), 0);
    }
    /* Messages in progress finish with their real verdict. All are ended
     * at once, as concurrent Postfix processes would, so that the test does
     * not depend on one thread getting through 20 end-of-message steps one
     * after another within the grace period on a loaded machine. */
    for (int i = 0; i < BUSY; i++)
        CHECK(send_end(busy[i]) == 0);
    for (int i = 0; i < BUSY; i++)
        CHECK_INT(read_cmd(busy[i]), SMFIR_REPLYCODE);
    pthread_join(t, NULL);
    CHECK_INT(c.rc, 0);
    CHECKF(c.took_ms >= 1400 && c.took_ms < 6000, "shutdown took %lld ms", (long long)c.took_ms);
    CHECK_INT(atomic_load(&eoms), BUSY);
    for (int i = 0; i < STALLED; i++)
        CHECK(read_cmd(stalled[i]) <= 0);
    for (int i = 0; i < IDLE; i++)
        close(idle[i]);
    for (int i = 0; i < BUSY; i++)
        close(busy[i]);
    for (int i = 0; i < STALLED; i++)
        close(stalled[i]);
    buf_free(&b);
}


/* mserver_close returns 0 only once every session thread has returned,
 * thread-local destructors included, so the caller can exit (exit
 * handlers, the sanitizers' leak check) with no thread of the server left.
 * Session threads used to be detached: the shutdown returned while they
 * were still exiting, and the process exited under them. Some sessions end
 * while the server runs (their clients leave), one is ended by the
 * shutdown. */
static void test_close_joins_session_threads(void)
{
    enum { N = 4 };
    struct server sv;
    int fd[N];

    CHECK(pthread_key_create(&slow_key, slow_exit) == 0);
    atomic_store(&slow_exits, 0);
    atomic_store(&thread_state, true);
    if (!server_start(&sv, 5, 1000))
        return;
    for (int i = 0; i < N; i++) {
        CHECK((fd[i] = open_message(sv.sock)) >= 0);
        CHECK_INT(end_message(fd[i]), SMFIR_REPLYCODE);
    }
    for (int i = 0; i < N - 1; i++)
        close(fd[i]);
    CHECK_INT(server_stop(&sv), 0);
    CHECK_INT(atomic_load(&slow_exits), N);
    close(fd[N - 1]);
    atomic_store(&thread_state, false);
    pthread_key_delete(slow_key);
}

/* The process's virtual size in KiB, or -1. */
static long vm_size_kb(void)
{
    char line[256];
    long kb = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* A connection that negotiates and leaves. */
static void short_session(const char *sock)
{
    struct buf b;
    int fd = client(sock);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    buf_init(&b, 1024);
    mproto_put_optneg(&b, 6, 0, SMFIP_NR_MAIL, 0, NULL);
    CHECK(send_buf(fd, &b) == 0 && read_cmd(fd) == SMFIC_OPTNEG);
    close(fd);
    buf_free(&b);
}

/* The threads of ended sessions are joined while the server runs, not only
 * at shutdown: a joinable thread nobody joins keeps its 1 MiB stack mapped,
 * so a relay would grow by that for every connection it ever had. */
static void test_ended_sessions_joined_while_serving(void)
{
    enum { N = 200 };
    struct server sv;
    if (!server_start(&sv, 5, 1000))
        return;
    for (int i = 0; i < 10; i++) /* glibc's stack cache and the like */
        short_session(sv.sock);
    poll(NULL, 0, 200);
    long before = vm_size_kb();
    for (int i = 0; i < N; i++)
        short_session(sv.sock);
    poll(NULL, 0, 300);
    long grown = vm_size_kb() - before;
    CHECK(before > 0);
    CHECKF(grown < 64 * 1024, "%d sessions grew the process by %ld KiB", N, grown);
    CHECK_INT(server_stop(&sv), 0);
}

static atomic_int reloads;

static void count_reload(void)
{
    atomic_fetch_add(&reloads, 1);
}

/* The requests signal handlers make: never block (far more than a pipe
 * holds), keep errno, and are served once. */
static void test_stop_and_reload_never_block(void)
{
    char spec[128], dir[] = "/tmp/filtermail-mserver-XXXXXX", sock[96], err[256];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(sock, sizeof(sock), "%s/m.sock", dir);
    snprintf(spec, sizeof(spec), "unix:%s", sock);
    struct mserver_config cfg = {.socket_spec = spec, .timeout = 5, .max_sessions = 4,
                                 .cb = &msg_cbs, .reload = count_reload};
    struct mserver *srv = mserver_open(&cfg, err, sizeof(err));
    CHECKF(srv != NULL, "%s", err);
    if (srv == NULL)
        return;
    alarm(20); /* a blocking write would hang here: fail instead */
    for (int i = 0; i < 200000; i++)
        mserver_reload(srv);
    CHECK(mserver_catch_signals(srv) == 0);
    errno = EDOM;
    raise(SIGHUP); /* the pipe is full: the handler's write fails */
    CHECK_INT(errno, EDOM);
    alarm(0);

    atomic_store(&reloads, 0);
    pthread_t t;
    pthread_create(&t, NULL, serve, srv);
    for (int i = 0; i < 100 && atomic_load(&reloads) == 0; i++)
        poll(NULL, 0, 20);
    CHECK_INT(atomic_load(&reloads), 1);
    errno = EDOM;
    raise(SIGTERM);
    CHECK_INT(errno, EDOM);
    pthread_join(t, NULL); /* SIGTERM stopped mserver_run */
    CHECK_INT(mserver_close(&srv), 0);
    CHECK(srv == NULL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    unlink(sock);
    rmdir(dir);
}

/* A second server on the socket a running one listens on fails to start
 * and leaves the socket alone (it used to unlink it and take the address);
 * a socket file left by a server that is gone is replaced; closing removes
 * only the server's own socket file. */
static void test_socket_not_stolen(void)
{
    struct server a;
    char spec[128], err[256];
    if (!server_start(&a, 5, 100))
        return;
    snprintf(spec, sizeof(spec), "unix:%s", a.sock);
    struct mserver_config cfg = {.socket_spec = spec, .timeout = 5, .max_sessions = 4,
                                 .cb = &msg_cbs};
    struct mserver *b = mserver_open(&cfg, err, sizeof(err));
    CHECK(b == NULL);
    mserver_close(&b);
    /* The first still serves on its socket. */
    int fd = open_message(a.sock);
    CHECK(fd >= 0);
    CHECK_INT(end_message(fd), SMFIR_REPLYCODE);
    close(fd);

    /* Bare paths (as filtermail_milter_socket = /path) are unix sockets too. */
    CHECK(mserver_open(&(struct mserver_config){.socket_spec = a.sock, .timeout = 5,
                                                .max_sessions = 4, .cb = &msg_cbs},
                       err, sizeof(err)) == NULL);

    /* A socket file nobody listens on any more is replaced. */
    struct stat st;
    mserver_stop(a.srv);
    pthread_join(a.t, NULL);
    struct mserver *srv = a.srv;
    CHECK_INT(mserver_close(&srv), 0);
    CHECK(stat(a.sock, &st) < 0); /* its own file: removed at close */
    int stale = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", a.sock);
    CHECK(bind(stale, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    close(stale); /* a socket file with no listener */
    b = mserver_open(&cfg, err, sizeof(err));
    CHECKF(b != NULL, "%s", err);
    mserver_close(&b);
    unlink(a.sock);
    rmdir(a.dir);
}

int main(void)
{
    /* A connection the server cut is a failed check, not the end of the
     * test program. */
    signal(SIGPIPE, SIG_IGN);
    UNIT_RUN(test_macros);
    UNIT_RUN(test_silence_between_packets);
    UNIT_RUN(test_shutdown_with_sessions_in_flight);
    UNIT_RUN(test_close_joins_session_threads);
    UNIT_RUN(test_ended_sessions_joined_while_serving);
    UNIT_RUN(test_stop_and_reload_never_block);
    UNIT_RUN(test_socket_not_stolen);
    return unit_summary();
}
