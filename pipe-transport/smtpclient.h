/* smtpclient: one SMTP mail transaction on an open connection (RFC 5321),
 * with STARTTLS (RFC 3207), PIPELINING (RFC 2920), SIZE, 8BITMIME and
 * SMTPUTF8.
 *
 * All or nothing: MAIL and every RCPT are sent (in one write when the server
 * offers PIPELINING) and DATA only when every recipient was accepted, so a
 * message is never delivered to some recipients of an invocation and deferred
 * or bounced for others (pipe(8) gives one status to all of them).
 *
 * The outcome says what the caller may do next: a connection-class failure
 * before the end of the data lets it try another MX; anything the server said
 * (4xx/5xx) is final for this delivery; a connection lost after the final "."
 * was sent is a temporary failure and no other MX is tried, since the message
 * may have been accepted.
 *
 * Not thread-safe per connection.
 */
#ifndef FILTERMAIL_SMTPCLIENT_H
#define FILTERMAIL_SMTPCLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dsn.h"
#include "netio.h"
#include "smtpreply.h"
#include "spool.h"

struct smtp_job {
    const char *helo;            /* EHLO argument */
    const char *sender;          /* "" for the null sender */
    const char *const *rcpts;
    size_t nrcpts;
    const struct spool *msg;
    bool smtputf8;               /* an address needs SMTPUTF8 */
    bool starttls;               /* STARTTLS required (false: plain SMTP, by policy) */
    /* Runs the TLS handshake on c after "220" to STARTTLS; returns 0 or -1
     * with a reason in err. */
    int (*tls_upgrade)(void *arg, struct conn *c, char *err, size_t errlen);
    void *tls_arg;
};

enum smtp_status {
    SMTP_SENT,         /* every recipient accepted, the message accepted */
    SMTP_CONN_ERROR,   /* I/O, TLS or protocol failure before the end of data: next MX */
    SMTP_LOST_AFTER_DATA, /* connection lost after the final "." was sent */
    SMTP_REJECTED,     /* the server refused (reply, stage): final */
    SMTP_NO_STARTTLS,  /* STARTTLS required, not offered or refused (stage "STARTTLS",
                        * reply): final, temporary */
    SMTP_RCPT_MIXED,   /* some recipients accepted, others not: nothing sent */
    SMTP_TOO_BIG,      /* larger than the server's SIZE: final, permanent */
    SMTP_NEED_UTF8,    /* SMTPUTF8 needed and not offered: final, permanent */
};

struct smtp_result {
    enum smtp_status status;
    struct smtp_reply reply;     /* REJECTED, SENT (the final reply), RCPT_MIXED (a refusal) */
    char stage[64];              /* "RCPT TO", "end of DATA", ... (for the DSN text) */
    char err[300];               /* CONN_ERROR, LOST_AFTER_DATA */
    size_t accepted;             /* recipients accepted */
    bool tls;                    /* STARTTLS was done */
};

/* Where a transaction ran, for the outcome's text. */
struct smtp_peer {
    const char *host;   /* the MX host's name */
    const char *addr;   /* its address as text */
    uint16_t port;
    const char *domain; /* the recipients' domain */
    size_t nrcpts;
    bool tls_failed;    /* STARTTLS was answered and TLS did not come up */
};

/* What a transaction's result means for the delivery: returns true for a
 * connection-class failure, noted in *at (the next MX host may be tried),
 * false when *out is the final outcome (delivered, refused, temporary).
 * Pure. */
bool smtp_result_outcome(const struct smtp_result *res, const struct smtp_peer *peer,
                         struct outcome *out, struct attempts *at);

/* Runs the transaction; c must be connected and not yet greeted. Sends QUIT
 * at the end when the connection is still usable. Does not close c. */
void smtp_deliver(struct conn *c, const struct smtp_job *job, struct smtp_result *res);

#endif
