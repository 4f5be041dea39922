/* smtpreply: the SMTP reply and EHLO keyword parsers. */
#include "smtpreply.h"

#include <string.h>
#include <strings.h>

void smtp_reply_parser_init(struct smtp_reply_parser *p, const struct smtp_reply_limits *limits)
{
    p->limits.line_max = limits != NULL && limits->line_max > 0 ? limits->line_max
                                                                : SMTP_REPLY_LINE_LIMIT;
    p->limits.lines_max = limits != NULL && limits->lines_max > 0 ? limits->lines_max
                                                                  : SMTP_REPLY_MAX_LINES;
    memset(&p->cur, 0, sizeof(p->cur));
    p->linelen = 0;
    p->linetotal = 0;
    p->cr = false;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* "X.Y.Z" at the start of s whose class X matches the reply's first digit. */
static void reply_enhanced(const char *s, size_t len, int code, char *out, size_t outlen)
{
    size_t i = 0, parts = 0, digits = 0;
    out[0] = '\0';
    if (len == 0 || s[0] - '0' != code / 100)
        return;
    while (i < len && i < outlen - 1) {
        if (is_digit(s[i])) {
            if (++digits > 3)
                return;
        } else if (s[i] == '.') {
            if (digits == 0 || ++parts > 2)
                return;
            digits = 0;
        } else {
            break;
        }
        i++;
    }
    if (parts != 2 || digits == 0 || (i < len && s[i] != ' '))
        return;
    if (i >= outlen)
        return;
    memcpy(out, s, i);
    out[i] = '\0';
}

/* One complete line (without its line end). Returns 1 when it ends the
 * reply, 0 when more lines follow, -1 on a malformed line. */
static int reply_line(struct smtp_reply_parser *p, const char **why)
{
    const char *l = p->line;
    size_t n = p->linelen;
    struct smtp_reply *r = &p->cur;

    if (n < 3 || !is_digit(l[0]) || !is_digit(l[1]) || !is_digit(l[2]) || l[0] < '2' ||
        l[0] > '5' || l[1] > '5') {
        *why = "malformed reply line (no reply code)";
        return -1;
    }
    if (n > 3 && l[3] != ' ' && l[3] != '-') {
        *why = "malformed reply line (no space or '-' after the code)";
        return -1;
    }
    int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    if (r->nlines == 0) {
        r->code = code;
    } else if (code != r->code) {
        *why = "reply lines with different codes";
        return -1;
    }
    if (r->nlines >= p->limits.lines_max) {
        *why = "reply with too many lines";
        return -1;
    }
    const char *text = n > 4 ? l + 4 : "";
    size_t tl = n > 4 ? n - 4 : 0;
    if (r->nlines == 0)
        reply_enhanced(text, tl, code, r->enhanced, sizeof(r->enhanced));
    /* Keep what fits; the separator first. */
    size_t room = SMTP_REPLY_TEXT_MAX - 1 - r->len;
    if (r->nlines > 0 && room > 0) {
        r->text[r->len++] = '\n';
        room--;
    }
    r->last = r->len;
    r->last_sp = n > 3 && l[3] == ' ';
    if (tl > room)
        tl = room;
    /* A NUL would cut the text short as a C string. */
    for (size_t i = 0; i < tl; i++)
        r->text[r->len + i] = text[i] != '\0' ? text[i] : '?';
    r->len += tl;
    r->text[r->len] = '\0';
    r->nlines++;
    return (n == 3 || l[3] == ' ') ? 1 : 0;
}

enum smtp_parse smtp_reply_push(struct smtp_reply_parser *p, const char *data, size_t len,
                                size_t *used, struct smtp_reply *out, const char **why)
{
    for (size_t i = 0; i < len; i++) {
        char c = data[i];
        if (c != '\n') {
            /* Keep the line's start; a long line is cut, not refused. A CR
             * may end the line: it counts once another byte follows. */
            if (p->linelen < SMTP_REPLY_LINE_MAX)
                p->line[p->linelen++] = c;
            p->linetotal++;
            p->cr = c == '\r';
            if (p->linetotal - (p->cr ? 1 : 0) > p->limits.line_max) {
                *why = "reply line too long";
                *used = i + 1;
                return SMTP_PARSE_ERROR;
            }
            continue;
        }
        if (p->linelen > 0 && p->linelen == p->linetotal && p->line[p->linelen - 1] == '\r')
            p->linelen--;
        p->cr = false;
        int end = reply_line(p, why);
        p->linelen = 0;
        p->linetotal = 0;
        if (end < 0) {
            *used = i + 1;
            return SMTP_PARSE_ERROR;
        }
        if (end == 1) {
            *out = p->cur;
            memset(&p->cur, 0, sizeof(p->cur));
            *used = i + 1;
            return SMTP_PARSE_DONE;
        }
    }
    *used = len;
    return SMTP_PARSE_MORE;
}

/* Writes the code and, when sp, a space (when outlen leaves room for them
 * and the NUL). Returns the bytes written. */
static size_t reply_code(const struct smtp_reply *r, bool sp, char *out, size_t outlen)
{
    if (outlen < 5)
        return 0;
    out[0] = (char)('0' + (r->code / 100) % 10);
    out[1] = (char)('0' + (r->code / 10) % 10);
    out[2] = (char)('0' + r->code % 10);
    if (!sp)
        return 3;
    out[3] = ' ';
    return 4;
}

void smtp_reply_oneline(const struct smtp_reply *r, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    size_t o = reply_code(r, r->len > 0, out, outlen);
    for (size_t i = 0; i < r->len && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)r->text[i];
        if (c == '\n' || c == '\t')
            c = ' ';
        else if (c < 0x20 || c > 0x7e)
            c = '?';
        out[o++] = (char)c;
    }
    out[o] = '\0';
}

void smtp_reply_last_line(const struct smtp_reply *r, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    size_t o = reply_code(r, r->last_sp, out, outlen);
    for (size_t i = r->last; i < r->len && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)r->text[i];
        out[o++] = c >= 0x20 && c <= 0x7e ? (char)c : '?';
    }
    out[o] = '\0';
}

/* Compares the keyword at s[0..n) with kw, ignoring case. */
static bool caps_keyword(const char *s, size_t n, const char *kw)
{
    return strlen(kw) == n && strncasecmp(s, kw, n) == 0;
}

void smtp_caps_parse(const struct smtp_reply *r, struct smtp_caps *caps)
{
    const char *p = r->text, *end = r->text + r->len;
    bool first = true;

    memset(caps, 0, sizeof(*caps));
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        if (!first) {
            const char *k = p;
            while (k < le && *k == ' ')
                k++;
            const char *ke = k;
            while (ke < le && *ke != ' ' && *ke != '=')
                ke++;
            size_t kn = (size_t)(ke - k);
            if (caps_keyword(k, kn, "STARTTLS")) {
                caps->starttls = true;
            } else if (caps_keyword(k, kn, "PIPELINING")) {
                caps->pipelining = true;
            } else if (caps_keyword(k, kn, "8BITMIME")) {
                caps->eightbitmime = true;
            } else if (caps_keyword(k, kn, "SMTPUTF8")) {
                caps->smtputf8 = true;
            } else if (caps_keyword(k, kn, "SIZE")) {
                uint64_t v = 0;
                bool ok = true, any = false;
                const char *q = ke;
                while (q < le && *q == ' ')
                    q++;
                for (; q < le && *q != ' '; q++) {
                    if (!is_digit(*q) || __builtin_mul_overflow(v, 10, &v) ||
                        __builtin_add_overflow(v, (uint64_t)(*q - '0'), &v)) {
                        ok = false;
                        break;
                    }
                    any = true;
                }
                caps->size = true;
                caps->size_limit = ok && any ? v : 0;
            }
        }
        first = false;
        p = nl != NULL ? nl + 1 : end;
    }
}
