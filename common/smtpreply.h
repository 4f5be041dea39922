/* smtpreply: SMTP server replies and EHLO capabilities (RFC 5321 4.2, 4.1.1.1),
 * for every SMTP client (the transport's delivery, mxdeliv's reinjection).
 *
 * A push parser: bytes go in as they arrive, and it says when one complete
 * reply (one or more lines "NNN-text", ended by "NNN text" or "NNN") has been
 * read and how many input bytes that took, so pipelined replies that came in
 * one read are taken one at a time. Lines end in LF (a CR before it is
 * dropped; any other CR is text). Every line of a reply must carry the same
 * code. Limits (struct smtp_reply_limits): a line longer than line_max bytes
 * (its line end not counted) is an error, as is a reply of more than
 * lines_max lines: a server streaming one endless line is not answering. What
 * is kept is bounded too: a line's text is cut after SMTP_REPLY_LINE_MAX bytes
 * (RFC 5321 allows 512), and the reply's text at SMTP_REPLY_TEXT_MAX bytes.
 *
 * Pure (no I/O, no allocation); one parser per connection.
 */
#ifndef FILTERMAIL_SMTPREPLY_H
#define FILTERMAIL_SMTPREPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SMTP_REPLY_LINE_MAX 1000
#define SMTP_REPLY_TEXT_MAX 4096

/* The defaults of struct smtp_reply_limits. */
#define SMTP_REPLY_LINE_LIMIT (16 * 1024)
#define SMTP_REPLY_MAX_LINES 100

struct smtp_reply_limits {
    size_t line_max;  /* longest line, line end excluded: SMTP_REPLY_LINE_LIMIT */
    size_t lines_max; /* most lines in one reply: SMTP_REPLY_MAX_LINES */
};

struct smtp_reply {
    int code;              /* 200-599 */
    char enhanced[16];     /* the first line's enhanced status code ("5.1.1"), or "" */
    size_t nlines;
    size_t len;            /* of text */
    size_t last;           /* where the last line's text starts in text (text + last
                            * is that line, or what of it fitted) */
    bool last_sp;          /* the last line had a space after its code */
    char text[SMTP_REPLY_TEXT_MAX]; /* each line's text after the code, joined by '\n' */
};

enum smtp_parse { SMTP_PARSE_MORE, SMTP_PARSE_DONE, SMTP_PARSE_ERROR };

struct smtp_reply_parser {
    struct smtp_reply_limits limits;
    struct smtp_reply cur;
    char line[SMTP_REPLY_LINE_MAX + 8];
    size_t linelen;        /* bytes of the current line kept */
    size_t linetotal;      /* bytes of the current line seen */
    bool cr;               /* the last byte seen was a CR */
};

/* Sets up p for a new connection with these limits (NULL: the defaults; a
 * zero field takes its default). */
void smtp_reply_parser_init(struct smtp_reply_parser *p, const struct smtp_reply_limits *limits);

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

/* The reply's last line as the server sent it, "250 2.0.0 Ok: queued",
 * printable ASCII only (other bytes become '?'), cut to fit outlen (> 0,
 * always NUL-terminated). */
void smtp_reply_last_line(const struct smtp_reply *r, char *out, size_t outlen);

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
