/* mime: the streaming message analyser behind the E2EE gate.
 *
 * Fed a whole message (top-level header block, blank line, body) in chunks of
 * any size, as libmilter delivers it, it computes what the chatmail policy needs
 * (spec sections 4.1-4.7) without holding the message: the first value of the
 * top-level headers the policy reads, the top-level MIME type and subpart count,
 * whether the message is PGP/MIME encrypted (section 4.2, with the armor rule of
 * the given direction) and whether it is a legacy securejoin request (4.5).
 * Parsing follows the mailparse semantics upstream relies on (section 4.1):
 * header blocks end at the first empty line, boundaries match as line prefixes,
 * one newline before a delimiter belongs to the delimiter, base64 and
 * quoted-printable bodies are decoded before the checks.
 *
 * Memory is bounded by struct mime_limits, whatever the input. Pure: no I/O,
 * no globals, no logging. One parser per message; not thread-safe per parser.
 */
#ifndef FILTERMAIL_MIME_H
#define FILTERMAIL_MIME_H

#include <stdbool.h>
#include <stddef.h>

#include "armor.h"

struct mime_limits {
    size_t max_header_value;  /* bytes kept of each top-level header value the
                                 policy reads; longer values are marked truncated
                                 (default 16384) */
    size_t max_header_fields; /* fields per header block; more is a parse error
                                 (default 10000) */
    size_t max_part_header;   /* bytes kept of a MIME part's Content-Type and
                                 Content-Transfer-Encoding values (default 4096) */
    size_t max_boundary;      /* longest boundary parameter honoured; a longer one
                                 makes that entity non-multipart (default 200;
                                 RFC 2046 allows 70) */
    size_t max_depth;         /* multipart nesting; deeper is a parse error
                                 (default 32) */
    size_t max_parts;         /* MIME parts in the whole message; more is a parse
                                 error (default 10000) */
};

/* Fills in the documented defaults. */
void mime_limits_default(struct mime_limits *l);

/* A top-level header's first value: unfolded (line breaks before folded
 * whitespace removed), leading spaces after the colon skipped, RFC 2047 encoded
 * words decoded, as UTF-8 (bytes that are not UTF-8 are read as Latin-1). */
struct mime_header {
    const char *value;        /* NULL when the message has no such field */
    size_t len;
    bool truncated;           /* longer than max_header_value; value is the start */
};

struct mime_result {
    /* Non-NULL when the message cannot be parsed: the text for
     * "500 Failed to parse message: <text>" (upstream's wording where it has
     * one, e.g. "Header cannot start with a space; it is likely an overhanging
     * line from a previous header"). The other fields are then unreliable. */
    const char *parse_error;
    /* Out of memory inside the parser: the caller answers with a temporary
     * failure. */
    bool internal_error;

    const char *mimetype;     /* top level, lowercased; "text/plain" by default */
    bool multipart;           /* top level is multipart/(any) with a boundary and a body */
    size_t nparts;            /* direct subparts of the top level */

    struct mime_header from, subject, secure_join, auto_submitted, content_type;
    size_t from_count;        /* top-level From fields */

    bool encrypted;           /* PGP/MIME per section 4.2, parser's direction */
    bool securejoin;          /* legacy vc-request / vg-request per section 4.5 */
};

struct mime_parser;

/* A parser for one message in the given direction; limits NULL means defaults.
 * Returns NULL when out of memory. Free with mime_parser_free. */
struct mime_parser *mime_parser_new(const struct mime_limits *limits, enum armor_direction dir);

/* Makes the parser ready for another message, keeping its memory. */
void mime_parser_reset(struct mime_parser *p, enum armor_direction dir);

/* Frees the parser and sets *p to NULL. NULL-safe. */
void mime_parser_free(struct mime_parser **p);

/* Consumes n bytes of the raw message. Cheap per byte in bodies (a scan for
 * line starts); once the verdict can no longer change, later bytes cost only
 * that scan. */
void mime_push(struct mime_parser *p, const char *data, size_t n);

/* Ends the message and fills *r. The strings in *r stay valid until the parser
 * is reset or freed. */
void mime_finish(struct mime_parser *p, struct mime_result *r);

#endif
