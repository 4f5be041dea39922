/* policy_proto: a streaming parser for Postfix policy delegation requests.
 *
 * Written by hand rather than taken from a library: Debian ships no library
 * for the server side of this protocol (Postfix's own attr_scan_plain() lives
 * inside Postfix and needs its VSTREAM I/O layer), and the policy servers that
 * exist (postfwd, policyd-rate-limit, ...) are programs, not libraries. The
 * format is simple, but a server shared by every smtpd process needs what a
 * line reader does not give: input in arbitrary pieces from a non-blocking
 * socket, a hard bound on memory per connection, and a clear error instead of
 * a guess on junk. So this is a small state machine with explicit limits.
 *
 * Storage: the request's lines go into one buffer as "name\0value\0"; attrs[]
 * holds the offsets. The line being read is appended at the end of the buffer
 * and split in place when its LF arrives.
 */
#include "policy_proto.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

/* A buffer that grew past this is given back at the start of the next
 * request, so one large request does not pin memory for a connection's life. */
#define POLICY_KEEP_BYTES 4096

struct policy_attr_off {
    uint32_t name;  /* offset of the name in buf */
    uint32_t value; /* offset of the value in buf */
};

struct policy_parser {
    struct policy_limits lim;
    char *buf;
    size_t len; /* bytes in buf: complete lines, then the current line */
    size_t cap;
    size_t line;      /* offset in buf where the current line starts */
    size_t req_bytes; /* bytes of this request so far, LFs included */
    struct policy_attr_off *attrs;
    size_t nattrs, attrs_cap;
    bool done; /* the last push returned a request */
    const char *error;
};

struct policy_parser *policy_parser_new(const struct policy_limits *limits)
{
    struct policy_parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->lim.max_line = POLICY_DEFAULT_MAX_LINE;
    p->lim.max_attrs = POLICY_DEFAULT_MAX_ATTRS;
    p->lim.max_request = POLICY_DEFAULT_MAX_REQUEST;
    if (limits != NULL) {
        if (limits->max_line > 0)
            p->lim.max_line = limits->max_line;
        if (limits->max_attrs > 0)
            p->lim.max_attrs = limits->max_attrs;
        if (limits->max_request > 0)
            p->lim.max_request = limits->max_request;
    }
    /* Offsets are 32-bit. */
    if (p->lim.max_request > UINT32_MAX / 2)
        p->lim.max_request = UINT32_MAX / 2;
    p->error = "";
    return p;
}

void policy_parser_free(struct policy_parser **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    free((*pp)->buf);
    free((*pp)->attrs);
    free(*pp);
    *pp = NULL;
}

/* Starts a new request, forgetting the previous one. */
static void policy_begin(struct policy_parser *p)
{
    if (p->cap > POLICY_KEEP_BYTES) {
        free(p->buf);
        p->buf = NULL;
        p->cap = 0;
    }
    p->len = 0;
    p->line = 0;
    p->req_bytes = 0;
    p->nattrs = 0;
    p->done = false;
}

void policy_parser_reset(struct policy_parser *p)
{
    policy_begin(p);
    p->error = "";
}

static enum policy_status policy_fail(struct policy_parser *p, const char *why)
{
    p->error = why;
    return POLICY_ERROR;
}

/* Makes room for n more bytes in buf (within max_request + 1 for the NUL that
 * ends the last value). */
static int policy_reserve(struct policy_parser *p, size_t n)
{
    size_t need;

    if (__builtin_add_overflow(p->len, n, &need))
        return -1;
    char *b = array_grow(p->buf, 1, p->cap, need, p->lim.max_request + 1, &p->cap);
    if (b == NULL)
        return -1;
    p->buf = b;
    return 0;
}

static bool policy_name_byte(unsigned char c)
{
    return c > 0x20 && c < 0x7f && c != '=';
}

/* Splits the current line (buf[line..len), LF not stored) into an attribute. */
static enum policy_status policy_end_line(struct policy_parser *p)
{
    size_t n = p->len - p->line;
    char *s, *eq;

    if (n > 0 && p->buf[p->len - 1] == '\r') {
        n--;
        p->len--;
    }
    if (n > p->lim.max_line)
        return policy_fail(p, "attribute line too long");
    if (n == 0) {
        /* The empty line: the request is complete. */
        p->len = p->line;
        p->done = true;
        return POLICY_REQUEST;
    }
    s = p->buf + p->line;
    eq = memchr(s, '=', n);
    if (eq == NULL)
        return policy_fail(p, "attribute line without '='");
    if (eq == s)
        return policy_fail(p, "attribute with an empty name");
    for (const char *c = s; c < eq; c++)
        if (!policy_name_byte((unsigned char)*c))
            return policy_fail(p, "invalid byte in an attribute name");
    if (p->nattrs == p->lim.max_attrs)
        return policy_fail(p, "too many attributes");
    struct policy_attr_off *a = array_grow(p->attrs, sizeof(*p->attrs), p->attrs_cap,
                                           p->nattrs + 1, p->lim.max_attrs, &p->attrs_cap);
    if (a == NULL)
        return policy_fail(p, "out of memory");
    p->attrs = a;
    /* The line's LF was counted in req_bytes and is not stored, so the NUL
     * that ends the value stays within max_request. */
    size_t eq_off = p->line + (size_t)(eq - s);
    if (policy_reserve(p, 1) < 0)
        return policy_fail(p, "out of memory");
    p->buf[eq_off] = '\0';
    p->buf[p->len++] = '\0';
    p->attrs[p->nattrs].name = (uint32_t)p->line;
    p->attrs[p->nattrs].value = (uint32_t)(eq_off + 1);
    p->nattrs++;
    p->line = p->len;
    return POLICY_MORE;
}

enum policy_status policy_push(struct policy_parser *p, const char *data, size_t len,
                               size_t *used_r)
{
    size_t used = 0;

    *used_r = 0;
    if (p->error[0] != '\0')
        return POLICY_ERROR;
    if (p->done)
        policy_begin(p);
    while (used < len) {
        const char *start = data + used;
        size_t rest = len - used;
        const char *nl = memchr(start, '\n', rest);
        size_t seg = nl != NULL ? (size_t)(nl - start) : rest;
        size_t line_len = p->len - p->line;

        /* Bytes of this segment that fit the line (one over max_line is let
         * in: it may be the CR before the LF, which is not counted, and
         * policy_end_line checks the rest) and the request (LF included). */
        size_t line_room = p->lim.max_line + 1 - line_len;
        size_t req_room = p->lim.max_request - p->req_bytes;
        size_t look = seg < line_room ? seg : line_room;
        /* The error is the one at the first bad byte, so that it does not
         * depend on how the input was cut into pieces. */
        if (look > req_room)
            look = req_room;
        if (memchr(start, '\0', look) != NULL)
            return policy_fail(p, "NUL byte in a request");
        if (seg > line_room && line_room <= req_room)
            return policy_fail(p, "attribute line too long");
        if (seg + (nl != NULL) > req_room)
            return policy_fail(p, "request too large");
        if (seg > 0) {
            if (policy_reserve(p, seg) < 0)
                return policy_fail(p, "out of memory");
            memcpy(p->buf + p->len, start, seg);
            p->len += seg;
        }
        p->req_bytes += seg;
        used += seg;
        *used_r = used;
        if (nl == NULL)
            break;
        used++; /* the LF */
        p->req_bytes++;
        *used_r = used;
        switch (policy_end_line(p)) {
        case POLICY_REQUEST:
            return POLICY_REQUEST;
        case POLICY_ERROR:
            return POLICY_ERROR;
        case POLICY_MORE:
            break;
        }
    }
    return POLICY_MORE;
}

bool policy_idle(const struct policy_parser *p)
{
    return p->done || p->req_bytes == 0;
}

size_t policy_count(const struct policy_parser *p)
{
    return p->done ? p->nattrs : 0;
}

void policy_attr(const struct policy_parser *p, size_t i, const char **name_r, const char **value_r)
{
    if (!p->done || i >= p->nattrs) {
        *name_r = NULL;
        *value_r = NULL;
        return;
    }
    *name_r = p->buf + p->attrs[i].name;
    *value_r = p->buf + p->attrs[i].value;
}

const char *policy_get(const struct policy_parser *p, const char *name)
{
    if (!p->done)
        return NULL;
    for (size_t i = p->nattrs; i-- > 0;)
        if (strcmp(p->buf + p->attrs[i].name, name) == 0)
            return p->buf + p->attrs[i].value;
    return NULL;
}

const char *policy_error(const struct policy_parser *p)
{
    return p->error;
}

int policy_reply(char *out, size_t outlen, const char *action)
{
    static const char head[] = "action=";
    size_t alen = strlen(action), n = sizeof(head) - 1;

    if (outlen < n + 3 || alen > outlen - n - 3)
        return -1;
    memcpy(out, head, n);
    for (size_t i = 0; i < alen; i++) {
        unsigned char c = (unsigned char)action[i];
        out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
    }
    out[n++] = '\n';
    out[n++] = '\n';
    out[n] = '\0';
    return (int)n;
}
