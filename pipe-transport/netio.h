/* netio: TCP connections with deadlines: Happy Eyeballs connects (RFC 8305)
 * and a buffered connection, plain or TLS, that reads SMTP replies.
 *
 * Every wait is bounded twice: by the operation's own timeout and by the
 * delivery's absolute deadline (monotonic milliseconds, netio_now_ms()).
 * Sockets are non-blocking; waits use poll(2). Not thread-safe per
 * connection; no global state.
 */
#ifndef FILTERMAIL_NETIO_H
#define FILTERMAIL_NETIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "smtpreply.h"

/* RFC 8305 5: the recommended Connection Attempt Delay. */
#define NETIO_HE_STAGGER_MS 250

/* Monotonic clock in milliseconds. */
int64_t netio_now_ms(void);

/* Connects to the first of sa[0..n) that answers. Attempts start in order,
 * one every stagger_ms (at once when the previous one failed), and run in
 * parallel, each for at most attempt_ms; the first to complete wins and the
 * others are closed. Returns the connected non-blocking socket (TCP_NODELAY
 * set) and sets *winner_r to its index, or returns -1 with every address's
 * failure in err. */
int netio_he_connect(const struct sockaddr_storage *sa, size_t n, int stagger_ms, int attempt_ms,
                     int64_t deadline, size_t *winner_r, char *err, size_t errlen);

struct conn {
    int fd;
    SSL *ssl;             /* NULL: plain */
    int io_timeout_ms;    /* the longest wait for one read or write */
    int64_t deadline;     /* absolute; nothing waits past it */
    char rbuf[4096];
    size_t roff, rlen;    /* unread bytes are rbuf[roff..rlen) */
    char err[256];        /* why the last operation failed */
};

void conn_init(struct conn *c, int fd, int io_timeout_ms, int64_t deadline);

/* Waits until fd is readable (want_write false) or writable, within the
 * connection's limits. Returns 0, or -1 with c->err set ("timed out"). */
int conn_wait(struct conn *c, bool want_write);

/* Reads one reply with parser p (which keeps what was read past it). Returns
 * 0, -1 on an I/O error, end of file or timeout, -2 on a malformed reply; the
 * reason is in c->err. */
int conn_read_reply(struct conn *c, struct smtp_reply_parser *p, struct smtp_reply *r);

/* True when bytes that were read have not been used yet (a server talking
 * out of turn, e.g. before STARTTLS). */
bool conn_has_buffered(const struct conn *c);

/* Writes all of data. Returns 0 or -1 (c->err). */
int conn_write(struct conn *c, const void *data, size_t len);

/* Sends a TLS close_notify when TLS is up (without waiting), frees the TLS
 * state and closes the socket. */
void conn_close(struct conn *c);

#endif
