/* netio: the connection layer of every SMTP client (the transport's delivery
 * and mxdeliv's reinjection): connects with a timeout (Happy Eyeballs, RFC
 * 8305, over several addresses) and a buffered connection, plain or TLS,
 * that reads SMTP replies and writes whole buffers.
 *
 * Every wait is bounded twice: by the connection's I/O timeout (one per
 * reply read, one per wait while writing) and by the session's absolute
 * deadline (monotonic milliseconds, clock_mono_ms()), which nothing waits
 * past. Sockets are non-blocking; waits use poll(2).
 *
 * TLS is a layer a caller puts on the connection (struct conn_tls_ops), so
 * this module needs no TLS library: pipe-transport/tls.c provides OpenSSL's.
 *
 * Not thread-safe per connection; no global state.
 */
#ifndef FILTERMAIL_NETIO_H
#define FILTERMAIL_NETIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "smtpreply.h"

/* RFC 8305 5: the recommended Connection Attempt Delay. */
#define NETIO_HE_STAGGER_MS 250

/* The most addresses one netio_he_connect() tries (more are ignored). */
#define NETIO_HE_MAX_ADDRS 16

/* "192.0.2.1" or "2001:db8::1" ("?" when it cannot be written). */
void netio_addr_text(const struct sockaddr_storage *sa, char *out, size_t outlen);

/* Connects to the first of sa[0..n) that answers. Attempts start in order,
 * one every stagger_ms (at once when the previous one failed), and run in
 * parallel, each for at most attempt_ms; the first to complete wins and the
 * others are closed. A single address is a plain connect with a timeout.
 * Returns the connected non-blocking socket (TCP_NODELAY set) and sets
 * *winner_r to its index, or returns -1 with every address's failure in err
 * ("192.0.2.1:25: Connection refused; [2001:db8::1]:25: connection timed
 * out"). */
int netio_he_connect(const struct sockaddr_storage *sa, size_t n, int stagger_ms, int attempt_ms,
                     int64_t deadline, size_t *winner_r, char *err, size_t errlen);

/* What a TLS layer's read or write returns when the socket must first become
 * readable or writable (then the call is repeated). */
#define NETIO_WANT_READ (-2)
#define NETIO_WANT_WRITE (-3)

/* A TLS layer over a connection's socket. read and write move up to len
 * bytes and return how many (> 0), 0 when the peer ended the stream (read),
 * NETIO_WANT_READ / NETIO_WANT_WRITE, or -1 with the reason in err. close
 * says goodbye without waiting for an answer and frees the layer. */
struct conn_tls_ops {
    long (*read)(void *tls, void *buf, size_t len, char *err, size_t errlen);
    long (*write)(void *tls, const void *buf, size_t len, char *err, size_t errlen);
    void (*close)(void *tls);
};

struct conn {
    int fd;
    const struct conn_tls_ops *tls_ops; /* NULL: plain */
    void *tls;                          /* the layer's state (an SSL * for tls.c) */
    int io_timeout_ms;    /* the longest wait for one reply, or for one read or write */
    int64_t deadline;     /* absolute; nothing waits past it */
    char rbuf[4096];
    size_t roff, rlen;    /* unread bytes are rbuf[roff..rlen) */
    char err[256];        /* why the last operation failed */
};

/* Takes over fd (non-blocking, connected): conn_close() closes it. */
void conn_init(struct conn *c, int fd, int io_timeout_ms, int64_t deadline);

/* Puts a TLS layer on the connection (after its handshake): from now on
 * every read and write goes through ops, and conn_close() closes it. */
void conn_set_tls(struct conn *c, const struct conn_tls_ops *ops, void *tls);

/* Waits until fd is readable (want_write false) or writable, within the
 * connection's limits. Returns 0, or -1 with c->err set ("timed out"). */
int conn_wait(struct conn *c, bool want_write);

/* Reads one reply with parser p (which keeps what was read past it). The
 * whole reply must arrive within the I/O timeout: a server sending a byte
 * now and then does not hold the session until its deadline. Returns 0, -1
 * on an I/O error, end of file or timeout, -2 on a malformed reply; the
 * reason is in c->err. */
int conn_read_reply(struct conn *c, struct smtp_reply_parser *p, struct smtp_reply *r);

/* True when bytes that were read have not been used yet (a server talking
 * out of turn, e.g. before STARTTLS). */
bool conn_has_buffered(const struct conn *c);

/* Writes all of data (a peer that closed is an error, never SIGPIPE).
 * Returns 0 or -1 (c->err). */
int conn_write(struct conn *c, const void *data, size_t len);

/* Closes the TLS layer, if any, and the socket. */
void conn_close(struct conn *c);

#endif
