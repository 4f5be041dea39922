/* smtpreply: SMTP server replies and EHLO capabilities (RFC 5321 4.2, 4.1.1.1).
 *
 * A push parser: bytes go in as they arrive, and it says when one complete
 * reply (one or more lines "NNN-text", ended by "NNN text" or "NNN") has been
 * read and how many input bytes that took, so pipelined replies that came in
 * one read are taken one at a time. Lines end in LF (a CR before it is
 * dropped). Every line of a reply must carry the same code. Limits: a line's
 * text is cut after SMTP_REPLY_LINE_MAX bytes (RFC 5321 allows 512), a reply
 * may have at most SMTP_REPLY_MAX_LINES lines, and the text kept is cut at
 * SMTP_REPLY_TEXT_MAX bytes. A line of more than SMTP_REPLY_LINE_LIMIT bytes
 * is an error: a server streaming one endless line is not answering.
 *
 * Pure (no I/O, no allocation); one parser per connection.
 */
#ifndef FILTERMAIL_SMTPREPLY_H
#define FILTERMAIL_SMTPREPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_LINE_MAX 1000
#define SMTP_REPLY_LINE_LIMIT (16 * 1024)
#define SMTP_REPLY_MAX_LINES 100
#define SMTP_REPLY_TEXT_MAX 4096

struct smtp_reply {
    int code;              /* 200-599 */
    char enhanced[16];     /* the first line's enhanced status code ("5.1.1"), or "" */
    size_t nlines;
    size_t len;            /* of text */
    char text[SMTP_REPLY_TEXT_MAX]; /* each line's text after the code, joined by '\n' */
};

enum smtp_parse { SMTP_PARSE_MORE, SMTP_PARSE_DONE, SMTP_PARSE_ERROR };

struct smtp_reply_parser {
    struct smtp_reply cur;
    char line[SMTP_REPLY_LINE_MAX + 8];
    size_t linelen;        /* bytes of the current line kept */
    size_t linetotal;      /* bytes of the current line seen */
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);

/* Feeds data[0..len). Sets *used to the bytes consumed: all of them for
 * SMTP_PARSE_MORE; up to the end of the reply for SMTP_PARSE_DONE (then *out
 * holds it and the parser is ready for the next reply); for SMTP_PARSE_ERROR
 * *why says what was wrong (a static string) and the parser must not be used
 * again before smtp_reply_parser_init. */
enum smtp_parse smtp_reply_push(struct smtp_reply_parser *p, const char *data, size_t len,
                                size_t *used, struct smtp_reply *out, const char **why);

/* The reply on one line, "550 5.1.1 text text", printable ASCII only (other
 * bytes become '?'), cut to fit outlen (> 0, always NUL-terminated). */
void smtp_reply_oneline(const struct smtp_reply *r, char *out, size_t outlen);

/* What the server announced in its reply to EHLO. */
struct smtp_caps {
    bool starttls;
    bool pipelining;
    bool eightbitmime;
    bool smtputf8;
    bool size;
    uint64_t size_limit; /* 0: SIZE without a limit, or none announced */
};

/* Reads the keywords of an EHLO reply (every line after the first). */
void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps);

#endif
