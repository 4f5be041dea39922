/* handoff: what filtermail-transport-client and filtermail-deliverd say to
 * each other over the daemon's unix socket (filtermail_transport_socket).
 *
 * The client hands over one delivery and waits for its outcome:
 *
 *     filtermail-handoff 1\n
 *     queue <queue id>\n
 *     sender <address, empty for the null sender>\n
 *     rcpt <address>\n            (1 to HANDOFF_MAX_RCPTS lines)
 *     .\n
 *
 * with pipe(8)'s stdin descriptor attached to the first bytes (SCM_RIGHTS):
 * the daemon reads the message from it, the client never copies it. Values
 * are the rest of the line after the first space (a quoted local part may
 * hold spaces); CR, LF and NUL cannot occur in them. The envelope itself is
 * checked by envelope_check() in the daemon, as the transport always did.
 *
 * The daemon answers with one line, "<dsn> <text>\n" (the outcome's DSN code
 * decides its class: 2 delivered, 4 deferred, 5 bounced), then closes.
 *
 * Pure: no I/O, no globals. Thread-safe.
 */
#ifndef FILTERMAIL_HANDOFF_H
#define FILTERMAIL_HANDOFF_H

#include <stddef.h>

#include "buf.h"
#include "dsn.h"
#include "envelope.h"

#define HANDOFF_MAGIC "filtermail-handoff 1"
/* Recipients in one request (Postfix's largest sensible recipient limit). */
#define HANDOFF_MAX_RCPTS 1000
/* The longest request: every line at its longest. */
#define HANDOFF_REQUEST_MAX \
    ((HANDOFF_MAX_RCPTS + 1) * (ENVELOPE_ADDRESS_MAX + 8) + 128)
/* The longest reply line. */
#define HANDOFF_REPLY_MAX (DSN_TEXT_MAX + 32)

struct handoff_request {
    const char *queue_id; /* letters, digits and '-', at most 32; else "-" */
    const char *sender;   /* "" for the null sender */
    const char *rcpts[HANDOFF_MAX_RCPTS];
    size_t nrcpts;
};

/* Appends the request for queue_id, sender and rcpts[0..n) to out. Returns 0,
 * or -1 when n is 0 or above HANDOFF_MAX_RCPTS, a value is longer than
 * ENVELOPE_ADDRESS_MAX or holds CR, LF (then nothing can be sent: the caller
 * bounces it as a bad address), or out is full. */
int handoff_request_format(const char *queue_id, const char *sender,
                           const char *const *rcpts, size_t n, struct buf *out);

enum handoff_parse { HANDOFF_OK, HANDOFF_INCOMPLETE, HANDOFF_BAD };

/* Parses a request in buf[0..len), which it changes (lines become C strings)
 * only when the whole request is there: HANDOFF_INCOMPLETE until its final
 * ".\n" line has arrived (read more, up to HANDOFF_REQUEST_MAX), HANDOFF_BAD
 * with a message in err for anything else than the form above (including
 * bytes after the final line). On HANDOFF_OK req points into buf. */
enum handoff_parse handoff_request_parse(char *buf, size_t len, struct handoff_request *req,
                                         char *err, size_t errlen);

/* The reply line for o: "<dsn> <text>\n". Returns its length (outlen > 0;
 * cut to fit, the line end kept). */
size_t handoff_reply_format(const struct outcome *o, char *out, size_t outlen);

/* Reads a reply line (with or without its "\n") into o. Returns 0, or -1
 * when it is not "<valid dsn> <text>" on one line. */
int handoff_reply_parse(const char *line, size_t len, struct outcome *o);

#endif
