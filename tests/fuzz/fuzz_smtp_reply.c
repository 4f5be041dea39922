/* Fuzz target: the SMTP reply parser (common/smtpreply.c, every SMTP
 * client's) and the EHLO keyword parser. Input fed whole and one byte at a
 * time must give the same replies, with the default limits and with small
 * ones taken from the first byte; every reply is well-formed (code 200-599,
 * text within its bounds, NUL-terminated, the last line printable). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "smtpreply.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_REPLIES 64

/* Parses all replies in data with the given chunk size; returns how many,
 * with -1 added when it ended in an error. */
static int parse_all(const struct smtp_reply_limits *lim, const uint8_t *data, size_t size,
                     size_t chunk, int codes[MAX_REPLIES], size_t lens[MAX_REPLIES], int *error)
{
    static struct smtp_reply_parser p;
    static struct smtp_reply r;
    int n = 0;
    size_t off = 0;
    const char *why;

    *error = 0;
    smtp_reply_parser_init(&p, lim);
    while (off < size && n < MAX_REPLIES) {
        size_t len = size - off < chunk ? size - off : chunk, used = 0;
        enum smtp_parse st = smtp_reply_push(&p, (const char *)data + off, len, &used, &r, &why);
        if (used > len)
            __builtin_trap();
        off += used;
        if (st == SMTP_PARSE_ERROR) {
            *error = 1;
            break;
        }
        if (st == SMTP_PARSE_DONE) {
            if (r.code < 200 || r.code > 599 || r.len >= SMTP_REPLY_TEXT_MAX ||
                strlen(r.text) != r.len || r.nlines == 0 || r.nlines > p.limits.lines_max ||
                r.last > r.len ||
                strlen(r.enhanced) >= sizeof(r.enhanced))
                __builtin_trap();
            if (r.enhanced[0] != '\0' && r.enhanced[0] - '0' != r.code / 100)
                __builtin_trap();
            struct smtp_caps caps;
            smtp_caps_parse(&r, &caps);
            char line[200];
            smtp_reply_oneline(&r, line, sizeof(line));
            if (strlen(line) >= sizeof(line))
                __builtin_trap();
            smtp_reply_last_line(&r, line, sizeof(line));
            for (const char *c = line; *c != '\0'; c++)
                if (*c < 0x20 || *c > 0x7e)
                    __builtin_trap();
            codes[n] = r.code;
            lens[n] = r.len;
            n++;
        } else if (used != len) {
            __builtin_trap();
        }
    }
    return n;
}

/* Whole and byte by byte must agree. */
static void check(const struct smtp_reply_limits *lim, const uint8_t *data, size_t size)
{
    int c1[MAX_REPLIES], c2[MAX_REPLIES], e1, e2;
    size_t l1[MAX_REPLIES], l2[MAX_REPLIES];
    int n1 = parse_all(lim, data, size, size ? size : 1, c1, l1, &e1);
    int n2 = parse_all(lim, data, size, 1, c2, l2, &e2);
    if (n1 != n2 || e1 != e2)
        __builtin_trap();
    for (int i = 0; i < n1; i++)
        if (c1[i] != c2[i] || l1[i] != l2[i])
            __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(NULL, data, size);
    if (size > 0) {
        const struct smtp_reply_limits small = {.line_max = (size_t)(data[0] % 64) * 8 + 3,
                                                .lines_max = (size_t)(data[0] / 64) + 1};
        check(&small, data + 1, size - 1);
    }
    return 0;
}
