/* request: the pure checks of one /mxdeliv POST (spec 6.8, 3.4, 11).
 *
 * Three parts, none doing I/O, keeping a clock or logging:
 *
 *  - the envelope, from the request headers: X-Mail-From (the first one
 *    counts; absent, empty or "<>" is the null sender) and one X-Mail-To per
 *    recipient, in header order. A value that could change the SMTP command
 *    it is put into (angle brackets, spaces, control characters, anything
 *    but visible ASCII: address_path_ok()) is refused with a `501` reply, so
 *    it never reaches SMTP;
 *  - the body, SMTP-transparent mail data (CRLF line ends, leading dots
 *    doubled, no final dot line), checked as it streams by. The checker says
 *    which bytes may be passed on to the SMTP DATA at once: never a byte
 *    that could let the SMTP server see an end of data before the checker
 *    has seen the whole body;
 *  - the HTTP status that carries an SMTP reply back to the sender.
 *
 * Not thread-safe per object; objects are independent.
 */
#ifndef FILTERMAIL_MXDELIV_REQUEST_H
#define FILTERMAIL_MXDELIV_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "address.h"

/* The longest address accepted (address_path_ok()). */
#define REQUEST_ADDRESS_MAX ADDRESS_PATH_MAX

/* The most recipients one request may name (Postfix's smtpd_recipient_limit
 * defaults to 1000). */
#define REQUEST_MAX_RCPTS 1000

/* Replies for refused requests (the HTTP body; request_http_status gives the
 * status). */
#define REQUEST_REPLY_BAD_SENDER "501 Invalid address in X-Mail-From"
#define REQUEST_REPLY_BAD_RCPT "501 Invalid address in X-Mail-To"
#define REQUEST_REPLY_TOO_MANY_RCPTS "554 5.5.3 Too many recipients"
#define REQUEST_REPLY_INVALID_DATA "500 Invalid DATA"
#define REQUEST_REPLY_TOO_BIG "552 Message exceeds maximum size"
#define REQUEST_REPLY_OK "250 OK"
#define REQUEST_REPLY_NO_MEMORY "451 Out of memory"

/* The envelope of one request. Fields are read-only for callers. */
struct request_envelope {
    char sender[REQUEST_ADDRESS_MAX + 1]; /* "" is the null sender */
    bool sender_seen;
    char **rcpts; /* NUL-terminated, owned */
    size_t nrcpts, rcpt_cap;
    const char *error; /* the reply for the first refused header, or NULL */
};

/* Sets up an empty envelope (null sender, no recipients). */
void request_envelope_init(struct request_envelope *e);

/* Takes one request header, name and value as the HTTP parser gave them
 * (the value's surrounding spaces and tabs are ignored). Names other than
 * X-Mail-From and X-Mail-To (any case) are ignored, and so is every header
 * after the first refused one; a longer name starting with one of them (a
 * folded line joined to the name) is refused as a bad address. Returns 0, or -1 when this value is refused:
 * e->error then holds the reply (REQUEST_REPLY_BAD_SENDER, _BAD_RCPT,
 * _TOO_MANY_RCPTS or _NO_MEMORY). */
int request_envelope_header(struct request_envelope *e, const char *name, const char *value,
                            size_t value_len);

/* The true length of a header value as libmicrohttpd (0.9.75) hands it over
 * in its read buffer: it ends each header line by overwriting the CR and LF
 * with NULs and gives the value's length up to the first NUL, so a NUL the
 * client sent inside the value cuts it ("two@example.org" NUL "evil...") and
 * the rest of the line would go unseen. value[value_len] must be NUL and
 * value[value_len + 1] readable (true in libmicrohttpd's buffer, where the
 * empty line ending the headers follows the last one); next_key is the name
 * of the header after this one in the buffer, or NULL. Returns value_len
 * when the line really ended there, else the length through the end of the
 * line, so that the value, NUL included, is refused as an address. Pure. */
size_t request_value_len(const char *value, size_t value_len, const char *next_key);

/* Frees the recipients; the envelope is empty and reusable afterwards. */
void request_envelope_free(struct request_envelope *e);

/* Body check (spec 3.4): the data must end in CRLF (so it is not empty),
 * every CR must be followed by LF and every LF preceded by CR, and no line
 * may be a lone "." (an unescaped end of data, including at the start). At
 * most `max` bytes. */
enum request_body_status {
    REQUEST_BODY_OK,      /* valid so far (at finish: valid) */
    REQUEST_BODY_INVALID, /* "500 Invalid DATA" */
    REQUEST_BODY_TOO_BIG, /* more than max bytes: wins over INVALID */
};

struct request_body {
    uint64_t size; /* bytes pushed so far, counted even after a refusal */
    uint64_t max;
    int state;
    bool invalid;
};

/* What a push allows to be passed on: first held_len bytes at held (a byte
 * held back by an earlier push, now proven harmless; static storage), then
 * the first len bytes of the pushed data. */
struct request_body_out {
    const char *held;
    size_t held_len;
    size_t len;
};

void request_body_init(struct request_body *b, uint64_t max);

/* Checks the next n bytes. Returns the status so far and fills *out (empty
 * unless the status is OK). Once the status is not OK nothing more is
 * passed on, but the size still counts. Everything passed on, concatenated,
 * is a prefix of the data pushed, and never holds an SMTP end of data (a
 * line "." ended by CRLF or a bare LF). */
enum request_body_status request_body_push(struct request_body *b, const char *p, size_t n,
                                           struct request_body_out *out);

/* The final status once the whole body was pushed. When OK, everything has
 * been passed on (nothing is held back). */
enum request_body_status request_body_finish(const struct request_body *b);

/* The HTTP status that carries an SMTP reply with this code: 2xx 200,
 * 552 413, other 5xx 400, anything else (4xx, or a code that makes no
 * sense) 503, so that the sender keeps the message and tries again. */
unsigned request_http_status(int smtp_code);

/* The code at the start of an SMTP reply text ("523 Encryption ..."), or 0. */
int request_reply_code(const char *reply);

#endif
