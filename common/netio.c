/* netio: Happy Eyeballs connects and a buffered, deadline-bound connection. */
#include "netio.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"
#include "fdio.h"

/* The monotonic clock as netio's deadlines count: signed milliseconds. */
static int64_t now_ms(void)
{
    return (int64_t)clock_mono_ms();
}

void netio_addr_text(const struct sockaddr_storage *sa, char *out, size_t outlen)
{
    const void *p = sa->ss_family == AF_INET6
                        ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                        : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (inet_ntop(sa->ss_family, p, out, (socklen_t)outlen) == NULL)
        snprintf(out, outlen, "?");
}

/* Appends "addr:port: what" to err. */
static void he_note(char *err, size_t errlen, const struct sockaddr_storage *sa, const char *what)
{
    char addr[64];
    size_t used = strlen(err);
    int port = ntohs(sa->ss_family == AF_INET6 ? ((const struct sockaddr_in6 *)sa)->sin6_port
                                               : ((const struct sockaddr_in *)sa)->sin_port);
    netio_addr_text(sa, addr, sizeof(addr));
    if (used + 1 >= errlen)
        return;
    snprintf(err + used, errlen - used, "%s%s%s%s:%d: %s", used > 0 ? "; " : "",
             sa->ss_family == AF_INET6 ? "[" : "", addr, sa->ss_family == AF_INET6 ? "]" : "",
             port, what);
}

struct he_attempt {
    int fd;
    size_t idx;
    int64_t started;
};

int netio_he_connect(const struct sockaddr_storage *sa, size_t n, int stagger_ms, int attempt_ms,
                     int64_t deadline, size_t *winner_r, char *err, size_t errlen)
{
    struct he_attempt at[NETIO_HE_MAX_ADDRS];
    size_t pending = 0, next = 0;
    int64_t next_start = now_ms();
    int winner = -1;

    err[0] = '\0';
    if (n > NETIO_HE_MAX_ADDRS)
        n = NETIO_HE_MAX_ADDRS;
    for (;;) {
        int64_t now = now_ms();
        /* Start attempts that are due (the first at once). */
        while (winner < 0 && next < n && (pending == 0 || now >= next_start) && now < deadline) {
            const struct sockaddr_storage *s = &sa[next];
            socklen_t sl = s->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                    : sizeof(struct sockaddr_in);
            int fd = socket(s->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) {
                he_note(err, errlen, s, strerror(errno));
                next++;
                continue;
            }
            if (connect(fd, (const struct sockaddr *)s, sl) == 0) {
                at[pending++] = (struct he_attempt){fd, next, now};
                winner = (int)pending - 1;
                next++;
                break;
            }
            if (errno != EINPROGRESS) {
                he_note(err, errlen, s, strerror(errno));
                close(fd);
                next++;
                continue;
            }
            at[pending++] = (struct he_attempt){fd, next, now};
            next++;
            next_start = now + stagger_ms;
        }
        if (winner >= 0 || (pending == 0 && (next >= n || now >= deadline)))
            break;
        /* Wait for a result, the next start, an attempt's end or the deadline. */
        int64_t until = deadline;
        if (next < n && next_start < until)
            until = next_start;
        for (size_t i = 0; i < pending; i++)
            if (at[i].started + attempt_ms < until)
                until = at[i].started + attempt_ms;
        struct pollfd pfd[NETIO_HE_MAX_ADDRS];
        for (size_t i = 0; i < pending; i++)
            pfd[i] = (struct pollfd){.fd = at[i].fd, .events = POLLOUT};
        int wait = until > now ? (int)(until - now) : 0;
        int r = poll(pfd, pending, wait);
        if (r < 0 && errno != EINTR) {
            snprintf(err, errlen, "poll: %s", strerror(errno));
            break;
        }
        now = now_ms();
        for (size_t i = 0; i < pending && winner < 0;) {
            bool done = false;
            if (r > 0 && pfd[i].revents != 0) {
                int soerr = 0;
                socklen_t len = sizeof(soerr);
                if (getsockopt(at[i].fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
                    soerr = errno;
                if (soerr == 0) {
                    winner = (int)i;
                    break;
                }
                he_note(err, errlen, &sa[at[i].idx], strerror(soerr));
                done = true;
            } else if (now >= at[i].started + attempt_ms || now >= deadline) {
                he_note(err, errlen, &sa[at[i].idx], "connection timed out");
                done = true;
            }
            if (done) {
                close(at[i].fd);
                pfd[i] = pfd[pending - 1];
                at[i] = at[--pending];
                next_start = now; /* a failure starts the next attempt at once */
                continue;
            }
            i++;
        }
        if (winner >= 0)
            break;
    }
    if (winner < 0) {
        for (size_t i = 0; i < pending; i++) {
            he_note(err, errlen, &sa[at[i].idx], "no answer before the deadline");
            close(at[i].fd);
        }
        if (err[0] == '\0')
            snprintf(err, errlen, "no address to connect to");
        return -1;
    }
    for (size_t i = 0; i < pending; i++)
        if ((int)i != winner)
            close(at[i].fd);
    int one = 1;
    setsockopt(at[winner].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    *winner_r = at[winner].idx;
    return at[winner].fd;
}

void conn_init(struct conn *c, int fd, int io_timeout_ms, int64_t deadline)
{
    c->fd = fd;
    c->tls_ops = NULL;
    c->tls = NULL;
    c->io_timeout_ms = io_timeout_ms;
    c->deadline = deadline;
    c->roff = c->rlen = 0;
    c->err[0] = '\0';
}

void conn_set_tls(struct conn *c, const struct conn_tls_ops *ops, void *tls)
{
    c->tls_ops = ops;
    c->tls = tls;
}

int conn_wait(struct conn *c, bool want_write)
{
    int64_t now = now_ms();
    int64_t until = now + c->io_timeout_ms;
    if (c->deadline < until)
        until = c->deadline;
    for (;;) {
        struct pollfd pfd = {.fd = c->fd, .events = want_write ? POLLOUT : POLLIN};
        int wait = until > now ? (int)(until - now) : 0;
        int r = poll(&pfd, 1, wait);
        if (r > 0)
            return 0;
        if (r < 0 && errno == EINTR) {
            now = now_ms();
            continue;
        }
        if (r < 0) {
            snprintf(c->err, sizeof(c->err), "poll: %s", strerror(errno));
            return -1;
        }
        snprintf(c->err, sizeof(c->err), "timed out%s",
                 until == c->deadline ? " (delivery deadline)" : "");
        return -1;
    }
}

/* Reads what is available into the buffer. Returns 0, or -1. */
static int conn_fill(struct conn *c)
{
    if (c->roff == c->rlen)
        c->roff = c->rlen = 0;
    for (;;) {
        size_t room = sizeof(c->rbuf) - c->rlen;
        if (c->tls_ops != NULL) {
            long n = c->tls_ops->read(c->tls, c->rbuf + c->rlen, room, c->err, sizeof(c->err));
            if (n > 0) {
                c->rlen += (size_t)n;
                return 0;
            }
            if (n == NETIO_WANT_READ || n == NETIO_WANT_WRITE) {
                if (conn_wait(c, n == NETIO_WANT_WRITE) < 0)
                    return -1;
                continue;
            }
            if (n == 0)
                snprintf(c->err, sizeof(c->err), "connection closed by the server");
            return -1;
        }
        ssize_t n = read(c->fd, c->rbuf + c->rlen, room);
        if (n > 0) {
            c->rlen += (size_t)n;
            return 0;
        }
        if (n == 0) {
            snprintf(c->err, sizeof(c->err), "connection closed by the server");
            return -1;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (conn_wait(c, false) < 0)
                return -1;
            continue;
        }
        snprintf(c->err, sizeof(c->err), "read: %s", strerror(errno));
        return -1;
    }
}

static int read_reply(struct conn *c, struct smtp_reply_parser *p, struct smtp_reply *r);

int conn_read_reply(struct conn *c, struct smtp_reply_parser *p, struct smtp_reply *r)
{
    /* One io_timeout for the whole reply, not per read: a server that sends
     * a byte now and then must not hold the delivery until its deadline
     * and keep the other MX hosts from being tried. */
    int64_t saved = c->deadline, reply_until = now_ms() + c->io_timeout_ms;
    if (reply_until < c->deadline)
        c->deadline = reply_until;
    int rc = read_reply(c, p, r);
    if (rc == -1 && reply_until < saved && now_ms() >= reply_until &&
        strncmp(c->err, "timed out", 9) == 0)
        snprintf(c->err, sizeof(c->err), "timed out: no complete reply in %.1f s",
                 c->io_timeout_ms / 1000.0);
    c->deadline = saved;
    return rc;
}

static int read_reply(struct conn *c, struct smtp_reply_parser *p, struct smtp_reply *r)
{
    for (;;) {
        if (c->roff < c->rlen) {
            size_t used;
            const char *why;
            enum smtp_parse st =
                smtp_reply_push(p, c->rbuf + c->roff, c->rlen - c->roff, &used, r, &why);
            c->roff += used;
            if (st == SMTP_PARSE_DONE)
                return 0;
            if (st == SMTP_PARSE_ERROR) {
                snprintf(c->err, sizeof(c->err), "%s", why);
                return -2;
            }
        }
        if (conn_fill(c) < 0)
            return -1;
    }
}

bool conn_has_buffered(const struct conn *c)
{
    return c->roff < c->rlen;
}

/* The plain connection: one loop for every socket write (fdio). */
static int conn_send_plain(struct conn *c, const void *data, size_t len)
{
    if (fd_send_all(c->fd, data, len, c->io_timeout_ms, c->deadline) == 0)
        return 0;
    if (errno == ETIMEDOUT)
        snprintf(c->err, sizeof(c->err), "timed out%s",
                 now_ms() >= c->deadline ? " (delivery deadline)" : "");
    else
        snprintf(c->err, sizeof(c->err), "write: %s",
                 errno == EIO ? "nothing written" : strerror(errno));
    return -1;
}

int conn_write(struct conn *c, const void *data, size_t len)
{
    const char *p = data;
    if (c->tls_ops == NULL)
        return conn_send_plain(c, data, len);
    while (len > 0) {
        long n = c->tls_ops->write(c->tls, p, len, c->err, sizeof(c->err));
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n == NETIO_WANT_READ || n == NETIO_WANT_WRITE) {
            if (conn_wait(c, n == NETIO_WANT_WRITE) < 0)
                return -1;
            continue;
        }
        if (n == 0)
            snprintf(c->err, sizeof(c->err), "TLS write: nothing written");
        return -1;
    }
    return 0;
}

void conn_close(struct conn *c)
{
    if (c->tls_ops != NULL)
        c->tls_ops->close(c->tls);
    c->tls_ops = NULL;
    c->tls = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}
