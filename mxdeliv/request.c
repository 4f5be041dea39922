/* request: envelope headers, body check and reply status of a /mxdeliv POST. */
#include "request.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "array.h"

size_t request_value_len(const char *value, size_t value_len, const char *next_key)
{
    const char *end = value + value_len;
    /* The line ended here: a CR (then LF) or an LF, both overwritten with
     * NUL, before an empty line or the next header's name. */
    if (end[1] == '\0' || end + 1 == next_key)
        return value_len;
    /* A NUL the client sent, with more of the line after it. */
    return value_len + 1 + strlen(end + 1);
}

void request_envelope_init(struct request_envelope *e)
{
    memset(e, 0, sizeof(*e));
}

void request_envelope_free(struct request_envelope *e)
{
    for (size_t i = 0; i < e->nrcpts; i++)
        free(e->rcpts[i]);
    free(e->rcpts);
    request_envelope_init(e);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static int refuse(struct request_envelope *e, const char *reply)
{
    e->error = reply;
    return -1;
}

static int add_rcpt(struct request_envelope *e, const char *v, size_t n)
{
    char *copy;

    if (e->nrcpts >= REQUEST_MAX_RCPTS)
        return refuse(e, REQUEST_REPLY_TOO_MANY_RCPTS);
    char **p = array_grow(e->rcpts, sizeof(*e->rcpts), e->rcpt_cap, e->nrcpts + 1,
                          REQUEST_MAX_RCPTS, &e->rcpt_cap);
    if (p == NULL)
        return refuse(e, REQUEST_REPLY_NO_MEMORY);
    e->rcpts = p;
    copy = malloc(n + 1);
    if (copy == NULL)
        return refuse(e, REQUEST_REPLY_NO_MEMORY);
    memcpy(copy, v, n);
    copy[n] = '\0';
    e->rcpts[e->nrcpts++] = copy;
    return 0;
}

int request_envelope_header(struct request_envelope *e, const char *name, const char *value,
                            size_t value_len)
{
    bool from;

    if (e->error != NULL)
        return 0;
    if (strncasecmp(name, "X-Mail-From", 11) == 0)
        from = true;
    else if (strncasecmp(name, "X-Mail-To", 9) == 0)
        from = false;
    else
        return 0;
    /* A longer name is a folded line that the HTTP parser joined to the
     * name (libmicrohttpd 0.9.75 turns "X-Mail-To: a" CRLF SP "b" into the
     * name "X-Mail-Tob" with the value "a"): a recipient the request named
     * would be lost, so the request is refused, never half-delivered. */
    if (name[from ? 11 : 9] != '\0')
        return refuse(e, from ? REQUEST_REPLY_BAD_SENDER : REQUEST_REPLY_BAD_RCPT);
    while (value_len > 0 && is_ows(value[0])) {
        value++;
        value_len--;
    }
    while (value_len > 0 && is_ows(value[value_len - 1]))
        value_len--;

    if (!from) {
        if (!address_path_ok(value, value_len))
            return refuse(e, REQUEST_REPLY_BAD_RCPT);
        return add_rcpt(e, value, value_len);
    }
    /* Only the first X-Mail-From counts (as upstream); a later bad one is
     * still refused, so that nothing odd passes unnoticed. */
    if (value_len == 0 || (value_len == 2 && value[0] == '<' && value[1] == '>')) {
        e->sender_seen = true;
        return 0;
    }
    if (!address_path_ok(value, value_len))
        return refuse(e, REQUEST_REPLY_BAD_SENDER);
    if (!e->sender_seen) {
        memcpy(e->sender, value, value_len);
        e->sender[value_len] = '\0';
        e->sender_seen = true;
    }
    return 0;
}

/* Body check states: where the last byte pushed left us. */
enum {
    BODY_LINE_START, /* at the start of a line (also before the first byte) */
    BODY_TEXT,       /* inside a line */
    BODY_CR,         /* after a CR, which must be followed by LF (held back) */
    BODY_DOT,        /* after a '.' at the start of a line (held back) */
};

void request_body_init(struct request_body *b, uint64_t max)
{
    b->size = 0;
    b->max = max;
    b->state = BODY_LINE_START;
    b->invalid = false;
}

static enum request_body_status body_status(const struct request_body *b)
{
    if (b->size > b->max)
        return REQUEST_BODY_TOO_BIG;
    return b->invalid ? REQUEST_BODY_INVALID : REQUEST_BODY_OK;
}

enum request_body_status request_body_push(struct request_body *b, const char *p, size_t n,
                                           struct request_body_out *out)
{
    /* The held-back byte is always the one the state names. */
    static const char held_cr[] = "\r", held_dot[] = ".";
    size_t i, room, take, fwd = 0;
    bool released = false;
    int held_before = b->state;

    out->held = NULL;
    out->held_len = 0;
    out->len = 0;
    if (b->invalid || b->size > b->max) {
        b->size = n > UINT64_MAX - b->size ? UINT64_MAX : b->size + n;
        return body_status(b);
    }
    /* Bytes past the limit are never looked at. */
    room = b->max - b->size;
    take = n <= room ? n : room;
    for (i = 0; i < take && !b->invalid; i++) {
        char c = p[i];
        switch (b->state) {
        case BODY_LINE_START:
            if (c == '.')
                b->state = BODY_DOT;
            else if (c == '\r')
                b->state = BODY_CR;
            else if (c == '\n')
                b->invalid = true;
            else
                b->state = BODY_TEXT;
            break;
        case BODY_DOT:
            /* ".\r" at the start of a line is an end of data or a bare CR;
             * ".\n" a bare LF: invalid either way. */
            if (c == '\r' || c == '\n')
                b->invalid = true;
            else
                b->state = BODY_TEXT;
            break;
        case BODY_CR:
            if (c == '\n')
                b->state = BODY_LINE_START;
            else
                b->invalid = true;
            break;
        default: /* BODY_TEXT */
            if (c == '\r')
                b->state = BODY_CR;
            else if (c == '\n')
                b->invalid = true;
            break;
        }
        if (b->invalid)
            break;
        /* A byte held from the previous push is proven once any later byte
         * is accepted; a byte of this push once it is not itself held. */
        if (i == 0 && (held_before == BODY_CR || held_before == BODY_DOT))
            released = true;
        if (b->state != BODY_CR && b->state != BODY_DOT)
            fwd = i + 1;
    }
    b->size = n > UINT64_MAX - b->size ? UINT64_MAX : b->size + n;
    if (body_status(b) != REQUEST_BODY_OK)
        return body_status(b);
    if (released) {
        out->held = held_before == BODY_CR ? held_cr : held_dot;
        out->held_len = 1;
    }
    out->len = fwd;
    return REQUEST_BODY_OK;
}

enum request_body_status request_body_finish(const struct request_body *b)
{
    enum request_body_status st = body_status(b);
    if (st != REQUEST_BODY_OK)
        return st;
    /* Ends in CRLF (a held CR or dot means it does not); empty is invalid. */
    if (b->size == 0 || b->state != BODY_LINE_START)
        return REQUEST_BODY_INVALID;
    return REQUEST_BODY_OK;
}

unsigned request_http_status(int smtp_code)
{
    if (smtp_code >= 200 && smtp_code <= 299)
        return 200;
    if (smtp_code == 552)
        return 413;
    if (smtp_code >= 500 && smtp_code <= 599)
        return 400;
    return 503;
}

int request_reply_code(const char *reply)
{
    if (reply[0] < '2' || reply[0] > '5' || reply[1] < '0' || reply[1] > '9' || reply[2] < '0' ||
        reply[2] > '9')
        return 0;
    if (reply[3] != '\0' && reply[3] != ' ' && reply[3] != '-')
        return 0;
    return (reply[0] - '0') * 100 + (reply[1] - '0') * 10 + (reply[2] - '0');
}
