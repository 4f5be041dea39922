/* Tests for common/netio.c: replies read within the I/O timeout and the
 * session's deadline, whole writes, a TLS layer put on a connection, and the
 * Happy Eyeballs connect on loopback. */
#include "clock.h"
#include "netio.h"
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* A connected pair: sv[0] non-blocking for the client, sv[1] served by run
 * on its own thread. */
static void start_peer(void *(*run)(void *), int sv[2], pthread_t *th)
{
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    CHECK(pthread_create(th, NULL, run, &sv[1]) == 0);
}

/* Sends "250 " and then one byte every 50 ms, never a line end. */
static void *dripper(void *arg)
{
    int fd = *(int *)arg;
    if (send(fd, "250 ", 4, MSG_NOSIGNAL) != 4)
        return NULL;
    for (int i = 0; i < 100; i++) {
        struct timespec pause = {.tv_nsec = 50 * 1000 * 1000};
        nanosleep(&pause, NULL);
        if (send(fd, "x", 1, MSG_NOSIGNAL) != 1)
            break;
    }
    return NULL;
}

/* The I/O timeout bounds a whole reply, not each read: a server dripping
 * bytes does not hold the delivery until its deadline. */
static void test_reply_timeout(void)
{
    int sv[2];
    pthread_t th;
    struct conn c;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    start_peer(dripper, sv, &th);
    smtp_reply_parser_init(&p, NULL);
    conn_init(&c, sv[0], 400, (int64_t)clock_mono_ms() + 10000);
    int64_t t0 = (int64_t)clock_mono_ms();
    CHECK_INT(conn_read_reply(&c, &p, &r), -1);
    int64_t took = (int64_t)clock_mono_ms() - t0;
    CHECKF(took >= 390 && took < 2000, "took %lld ms", (long long)took);
    CHECKF(strstr(c.err, "no complete reply") != NULL, "%s", c.err);
    conn_close(&c);
    close(sv[1]);
    pthread_join(th, NULL);
}

/* Answers every line with "250 ok" at once, for ever. */
static void *echoer(void *arg)
{
    int fd = *(int *)arg;
    char buf[512];
    ssize_t n;
    while ((n = read(fd, buf, sizeof(buf))) > 0)
        for (ssize_t i = 0; i < n; i++)
            if (buf[i] == '\n' && send(fd, "250 ok\r\n", 8, MSG_NOSIGNAL) != 8)
                return NULL;
    return NULL;
}

/* The session's deadline ends a conversation whose every reply comes in
 * time, and a write that finds no room ends within the I/O timeout. */
static void test_session_deadline(void)
{
    int sv[2];
    pthread_t th;
    struct conn c;
    struct smtp_reply_parser p;
    struct smtp_reply r;
    start_peer(echoer, sv, &th);
    smtp_reply_parser_init(&p, NULL);
    int64_t t0 = (int64_t)clock_mono_ms();
    conn_init(&c, sv[0], 5000, t0 + 300);
    int rc = 0, replies = 0;
    while (rc == 0 && (int64_t)clock_mono_ms() - t0 < 3000) {
        rc = conn_write(&c, "NOOP\r\n", 6);
        if (rc == 0)
            rc = conn_read_reply(&c, &p, &r);
        if (rc == 0) {
            replies++;
            struct timespec pause = {.tv_nsec = 20 * 1000 * 1000};
            nanosleep(&pause, NULL);
        }
    }
    int64_t took = (int64_t)clock_mono_ms() - t0;
    CHECK(rc == -1);
    CHECK(replies > 0);
    CHECKF(took >= 280 && took < 1500, "took %lld ms", (long long)took);
    CHECK_STR(c.err, "timed out (delivery deadline)");
    conn_close(&c);
    CHECK_INT(c.fd, -1);
    pthread_join(th, NULL); /* the echoer saw the end of the stream */
    close(sv[1]);

    /* A peer that reads nothing: the write waits at most the I/O timeout. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    conn_init(&c, sv[0], 200, (int64_t)clock_mono_ms() + 10000);
    static char big[4 * 1024 * 1024];
    t0 = (int64_t)clock_mono_ms();
    CHECK_INT(conn_write(&c, big, sizeof(big)), -1);
    took = (int64_t)clock_mono_ms() - t0;
    CHECKF(took >= 190 && took < 2000, "took %lld ms", (long long)took);
    CHECK_STR(c.err, "timed out");
    /* A peer that has gone: an error, not SIGPIPE. */
    close(sv[1]);
    signal(SIGPIPE, SIG_DFL);
    CHECK_INT(conn_write(&c, "x", 1), -1);
    CHECKF(strncmp(c.err, "write: ", 7) == 0, "%s", c.err);
    conn_close(&c);
}

/* A layer that inverts every byte and first asks to wait, as TLS does. */
struct fake_tls {
    int fd;
    int waits, closed;
};

static long fake_read(void *tls, void *buf, size_t len, char *err, size_t errlen)
{
    struct fake_tls *t = tls;
    if (t->waits++ % 2 == 0)
        return NETIO_WANT_READ;
    ssize_t n = read(t->fd, buf, len);
    if (n < 0 && errno == EAGAIN)
        return NETIO_WANT_READ;
    if (n < 0) {
        snprintf(err, errlen, "fake read: %s", strerror(errno));
        return -1;
    }
    for (ssize_t i = 0; i < n; i++)
        ((unsigned char *)buf)[i] ^= 0xff;
    return n;
}

static long fake_write(void *tls, const void *buf, size_t len, char *err, size_t errlen)
{
    struct fake_tls *t = tls;
    unsigned char out[3];
    size_t n = len < sizeof(out) ? len : sizeof(out); /* short writes */
    for (size_t i = 0; i < n; i++)
        out[i] = ((const unsigned char *)buf)[i] ^ 0xff;
    ssize_t w = write(t->fd, out, n);
    if (w < 0) {
        snprintf(err, errlen, "fake write: %s", strerror(errno));
        return -1;
    }
    return w;
}

static void fake_close(void *tls)
{
    ((struct fake_tls *)tls)->closed++;
}

static const struct conn_tls_ops fake_ops = {fake_read, fake_write, fake_close};

static void test_tls_layer(void)
{
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    struct conn c;
    struct fake_tls t = {.fd = sv[0]};
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_parser_init(&p, NULL);
    conn_init(&c, sv[0], 2000, (int64_t)clock_mono_ms() + 5000);
    conn_set_tls(&c, &fake_ops, &t);
    CHECK_INT(conn_write(&c, "EHLO x\r\n", 8), 0);
    char got[16] = "";
    CHECK_INT(read(sv[1], got, sizeof(got)), 8);
    for (int i = 0; i < 8; i++)
        got[i] = (char)(got[i] ^ 0xff);
    CHECK(memcmp(got, "EHLO x\r\n", 8) == 0);
    const char reply[] = "250-a\r\n250 b\r\n";
    char enc[sizeof(reply)];
    for (size_t i = 0; i < sizeof(reply) - 1; i++)
        enc[i] = (char)(reply[i] ^ 0xff);
    CHECK(write(sv[1], enc, sizeof(reply) - 1) == (ssize_t)sizeof(reply) - 1);
    CHECK_INT(conn_read_reply(&c, &p, &r), 0);
    CHECK_INT(r.code, 250);
    CHECK_STR(r.text, "a\nb");
    CHECK(t.waits >= 2);
    conn_close(&c);
    CHECK_INT(t.closed, 1);
    CHECK_INT(c.fd, -1);
    close(sv[1]);
}

static void test_addr_text(void)
{
    struct sockaddr_storage sa = {0};
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
    char text[64];
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, "2001:db8::1", &s6->sin6_addr);
    netio_addr_text(&sa, text, sizeof(text));
    CHECK_STR(text, "2001:db8::1");
    struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
    memset(&sa, 0, sizeof(sa));
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &s4->sin_addr);
    netio_addr_text(&sa, text, sizeof(text));
    CHECK_STR(text, "192.0.2.1");
}

/* Happy Eyeballs: a refused address, a silent one (full accept queue) and a
 * listening one; the listening one wins without waiting for the silent one. */
static int listener(int backlog, struct sockaddr_storage *sa)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in in = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(in);
    CHECK(bind(fd, (struct sockaddr *)&in, sizeof(in)) == 0);
    CHECK(listen(fd, backlog) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&in, &len) == 0);
    memset(sa, 0, sizeof(*sa));
    memcpy(sa, &in, sizeof(in));
    return fd;
}

static void test_happy_eyeballs(void)
{
    struct sockaddr_storage sa[3];
    char err[512];
    size_t winner;
    /* A port nobody listens on: refused at once. */
    int tmp = listener(1, &sa[0]);
    close(tmp);
    /* A silent one: its accept queue is full, SYNs are dropped. */
    int silent = listener(0, &sa[1]);
    int fill[4];
    for (int i = 0; i < 4; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(fill[i], (struct sockaddr *)&sa[1], sizeof(struct sockaddr_in));
    }
    usleep(100000);
    int good = listener(16, &sa[2]);
    int64_t t0 = (int64_t)clock_mono_ms();
    int fd = netio_he_connect(sa, 3, 250, 5000, (int64_t)clock_mono_ms() + 10000, &winner, err,
                              sizeof(err));
    int64_t took = (int64_t)clock_mono_ms() - t0;
    CHECK(fd >= 0);
    CHECK_INT(winner, 2);
    CHECKF(took >= 200 && took < 1500, "took %lld ms", (long long)took);
    if (fd >= 0)
        close(fd);
    /* Only the refused and the silent: both fail, the silent after its time. */
    t0 = (int64_t)clock_mono_ms();
    fd = netio_he_connect(sa, 2, 250, 600, (int64_t)clock_mono_ms() + 10000, &winner, err, sizeof(err));
    took = (int64_t)clock_mono_ms() - t0;
    CHECK(fd < 0);
    CHECKF(strstr(err, "Connection refused") != NULL && strstr(err, "timed out") != NULL, "%s",
           err);
    CHECKF(took >= 500 && took < 2000, "took %lld ms", (long long)took);
    /* The delivery deadline ends everything. */
    t0 = (int64_t)clock_mono_ms();
    fd = netio_he_connect(&sa[1], 1, 250, 5000, (int64_t)clock_mono_ms() + 300, &winner, err, sizeof(err));
    CHECK(fd < 0 && (int64_t)clock_mono_ms() - t0 < 1500);
    fd = netio_he_connect(sa, 0, 250, 5000, (int64_t)clock_mono_ms() + 300, &winner, err, sizeof(err));
    CHECK(fd < 0);
    for (int i = 0; i < 4; i++)
        close(fill[i]);
    close(silent);
    close(good);
}

int main(void)
{
    UNIT_RUN(test_reply_timeout);
    UNIT_RUN(test_session_deadline);
    UNIT_RUN(test_tls_layer);
    UNIT_RUN(test_addr_text);
    UNIT_RUN(test_happy_eyeballs);
    return unit_summary();
}
