/* policy_proto: the Postfix policy delegation protocol, server side.
 *
 * A request is a series of `name=value` lines, each ended by LF, and ends with
 * an empty line (SMTPD_POLICY_README). Postfix keeps the connection open and
 * sends the next request after reading the reply `action=<action>` plus an
 * empty line. Names are Postfix's attribute names (printable ASCII without
 * '='); values never contain LF or NUL. Unknown attributes are kept like the
 * others, for the caller to ignore.
 *
 * Leniency: a CR right before an LF is dropped (so a person can type requests
 * with telnet), and a request without attributes (a lone empty line) is
 * returned as a request with no attributes; the caller decides what it means.
 *
 * Strictness: a line longer than max_line, more than max_attrs attributes, a
 * request larger than max_request, a NUL byte, a line without '=', or a name
 * that is empty or holds a byte outside 0x21-0x7e is an error. After an error
 * the stream cannot be resynchronised: the caller closes the connection.
 *
 * The parser is a push state machine without I/O, clock or globals: feed it
 * whatever bytes arrived, in pieces of any size, and it reports a complete
 * request as soon as its empty line is in. Memory is bounded by max_request
 * per parser. One parser per connection; not thread-safe.
 */
#ifndef FILTERMAIL_POLICY_PROTO_H
#define FILTERMAIL_POLICY_PROTO_H

#include <stdbool.h>
#include <stddef.h>

/* Defaults. Postfix 3.7's requests have about 30 attributes and 500-1500
 * bytes; ccert_subject/ccert_issuer are the longest values. */
#define POLICY_DEFAULT_MAX_LINE 4096     /* bytes of one line, LF excluded */
#define POLICY_DEFAULT_MAX_ATTRS 128     /* attributes in one request */
#define POLICY_DEFAULT_MAX_REQUEST 32768 /* bytes of one request, LFs included */

struct policy_limits {
    size_t max_line;
    size_t max_attrs;
    size_t max_request;
};

enum policy_status {
    POLICY_MORE,    /* every byte given was used; the request is incomplete */
    POLICY_REQUEST, /* a complete request is ready (see policy_get) */
    POLICY_ERROR,   /* malformed input (see policy_error); close the connection */
};

struct policy_parser;

/* A new parser; limits NULL (or any field 0) means the defaults. Returns NULL
 * when out of memory. Free with policy_parser_free. */
struct policy_parser *policy_parser_new(const struct policy_limits *limits);

/* Frees the parser and sets *p to NULL. NULL-safe. */
void policy_parser_free(struct policy_parser **p);

/* Forgets any partial request and a previous error. */
void policy_parser_reset(struct policy_parser *p);

/* Feeds data[0..len). Stops right after the empty line that ends a request:
 * *used_r says how many bytes were consumed (the caller pushes the rest again
 * after handling the request). Returns POLICY_REQUEST with the request's
 * attributes available until the next push or reset; POLICY_MORE when all
 * bytes were used and no request is complete; POLICY_ERROR on malformed input
 * (then, and on every later push until a reset, nothing more is consumed). */
enum policy_status policy_push(struct policy_parser *p, const char *data, size_t len,
                               size_t *used_r);

/* True when no part of a request is buffered (between requests). */
bool policy_idle(const struct policy_parser *p);

/* The number of attributes of the request just returned. */
size_t policy_count(const struct policy_parser *p);

/* The i-th attribute (0-based, in the order sent) of the request just
 * returned: name and value as NUL-terminated strings owned by the parser. */
void policy_attr(const struct policy_parser *p, size_t i, const char **name_r,
                 const char **value_r);

/* The value of the named attribute in the request just returned, or NULL when
 * it is absent. When a name is repeated the last value wins. */
const char *policy_get(const struct policy_parser *p, const char *name);

/* A short static description of the last error ("" when there was none). */
const char *policy_error(const struct policy_parser *p);

/* Writes the reply "action=<action>\n\n" into out (outlen bytes, NUL-
 * terminated). Bytes of action outside printable ASCII and space become '?',
 * so no text can break the framing. Returns the reply's length (without the
 * NUL), or -1 when it does not fit. */
int policy_reply(char *out, size_t outlen, const char *action);

#endif
