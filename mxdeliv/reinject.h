/* reinject: the SMTP client that hands a /mxdeliv POST to Postfix (spec 3.5).
 *
 * A session on a TCP connection to Postfix's reinjection smtpd: greeting,
 * `EHLO [<filtermail_host>]`, then `MAIL FROM:<s>`, one `RCPT TO:<r>` per
 * recipient and `DATA` (written back to back when the server offers
 * PIPELINING), the mail data as it arrives (already SMTP-transparent: it is
 * written as it is), then the final `.` and QUIT. No MAIL/RCPT parameters,
 * no TLS. It runs on the shared SMTP client parts: common/netio (connect
 * with a timeout, buffered replies, whole writes) and common/smtpreply (the
 * reply parser, with the limits below). Every connect, reply and write has a
 * timeout, and the whole session a deadline; the socket has TCP_NODELAY and
 * writes go out in large pieces.
 *
 * Every failure gives the reply to pass back upstream (struct reinject_reply):
 * the server's own reply when it refused a step (its final line, as it is),
 * `450 Failed to connect to any of the following addresses: [...]` when no
 * address could be connected, `451 I/O error` for an I/O error, a timeout or
 * a malformed reply, `451 Resolver error` when the host name does not
 * resolve. Success (0 from reinject_finish) means the server answered 2xx to
 * the final dot after accepting every recipient: Postfix queued the message
 * for all of them. After a failure the session can only be closed; closing a
 * session whose data was not finished makes the server discard the message
 * (no final `.` was sent).
 *
 * Sessions are independent: one per thread at a time. A pool (thread-safe)
 * keeps sessions that delivered for the next request, as Postfix's own
 * smtp(8) keeps its connections: each saves the next request the connect,
 * the greeting, EHLO and the receiving milter's set-up (bench/README.md).
 * A session is kept only while every reply it got was the one expected,
 * REINJECT_KEEP_IDLE_MS after its last message, REINJECT_KEEP_AGE_MS after
 * its connect (so Postfix's new settings reach it after a reload) and for
 * REINJECT_KEEP_MESSAGES messages; taken, it is used only when the server
 * has said nothing since, and a request whose kept session fails before the
 * server accepted anything starts again on a new one (mxdeliv/http.c).
 */
#ifndef FILTERMAIL_MXDELIV_REINJECT_H
#define FILTERMAIL_MXDELIV_REINJECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reply parser limits (RFC 5321 says 512 bytes a line; Postfix's are
 * shorter). A longer line or more lines make the reply malformed. */
#define REINJECT_LINE_MAX 2048
#define REINJECT_LINES_MAX 100

/* The most of a reply's final line kept (longer text is cut). */
#define REINJECT_TEXT_MAX 512

/* The whole session's default deadline, from the connect on: longer than
 * mxdeliv's request deadline (600 s from the end of the headers) and a reply
 * wait, so it ends only a session something else failed to bound (a server
 * answering each of many recipients just within the timeout). */
#define REINJECT_SESSION_MS (720 * 1000)

/* Sessions kept at most, and for how long. */
#define REINJECT_POOL_MAX 8
#define REINJECT_KEEP_IDLE_MS 10000
#define REINJECT_KEEP_AGE_MS 60000
#define REINJECT_KEEP_MESSAGES 100

struct reinject_reply {
    int code;                     /* 200-599 */
    char text[REINJECT_TEXT_MAX]; /* final line, code included, no CRLF; bytes
                                   * outside printable ASCII became '?' */
    bool pipelining;              /* the EHLO reply announced PIPELINING */
    char detail[160];             /* for the log: what failed, or "" */
};

struct reinject_config {
    const char *host; /* postfix_host: an IP address or a name */
    uint16_t port;    /* postfix_reinject_port_incoming */
    const char *helo; /* the EHLO argument, e.g. "[127.0.0.1]" */
    int timeout_ms;   /* for the connect, each reply and each write */
    int session_ms;   /* the whole session; 0: REINJECT_SESSION_MS */
};

struct reinject;

/* Writes the EHLO argument for our own address into out: "[192.0.2.1]" or
 * "[IPv6:2001:db8::1]". */
void reinject_helo_name(const char *ip, char *out, size_t outlen);

/* Connects to cfg->host:cfg->port (every address the name resolves to,
 * RFC 8305 style: one after another, a failure or 250 ms starting the next),
 * reads the greeting and sends EHLO. Returns 0 and a session in
 * *r_r, or -1 with *reply set. cfg is needed only during the call. */
int reinject_open(const struct reinject_config *cfg, struct reinject **r_r,
                  struct reinject_reply *reply);

/* As reinject_open, on a socket already connected (it is owned by the
 * session from now on, also on failure). For tests. */
int reinject_open_fd(int fd, const struct reinject_config *cfg, struct reinject **r_r,
                     struct reinject_reply *reply);

/* Sends the envelope: sender "" is the null sender; n >= 1 recipients.
 * Addresses must hold no '<', '>', CR or LF (the caller checked them;
 * otherwise -1 with a 501 reply and nothing sent). Returns 0 once the server
 * answered 354 to DATA, or -1 with *reply (the first refusal). */
int reinject_envelope(struct reinject *r, const char *sender, char *const *rcpts, size_t n,
                      struct reinject_reply *reply);

/* Passes on n bytes of mail data (buffered; written when the buffer is
 * full). Returns 0, or -1 with *reply. */
int reinject_write(struct reinject *r, const char *p, size_t n, struct reinject_reply *reply);

/* Ends the data and reads the server's verdict. Returns 0 when it accepted
 * the message (*reply is its 2xx reply; the session may take another
 * envelope, or be kept, or closed), or -1 with *reply. */
int reinject_finish(struct reinject *r, struct reinject_reply *reply);

/* Closes the connection (with QUIT between transactions; without, in the
 * middle of one, so that the server discards it) and frees the session; sets
 * *r to NULL. NULL-safe. */
void reinject_close(struct reinject **r);

/* Pure: whether a session connected at opened_ms, between messages since
 * idle_since_ms, that delivered messages, may take another at now_ms (all
 * CLOCK_MONOTONIC ms): fewer than REINJECT_KEEP_MESSAGES, younger than
 * REINJECT_KEEP_AGE_MS, idle less than REINJECT_KEEP_IDLE_MS. */
bool reinject_reusable(int64_t opened_ms, int64_t idle_since_ms, unsigned messages,
                       int64_t now_ms);

struct reinject_pool;

/* NULL when out of memory (then nothing is kept). */
struct reinject_pool *reinject_pool_new(void);
/* Closes every kept session (QUIT) and frees the pool. NULL-safe. */
void reinject_pool_free(struct reinject_pool **p);

/* A kept session to cfg's host and port that may take a message now, with
 * cfg's timeout and a new session deadline, or NULL (open one). Kept
 * sessions found unfit on the way are closed. p may be NULL. */
struct reinject *reinject_pool_take(struct reinject_pool *p, const struct reinject_config *cfg);

/* Keeps *r (after a successful reinject_finish, within the limits above,
 * when there is room) or closes it; sets *r to NULL. p may be NULL. */
void reinject_pool_put(struct reinject_pool *p, struct reinject **r);

#endif
