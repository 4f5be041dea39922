/* handoff: the client-daemon request and reply, formatted and parsed. */
#include "handoff.h"

#include <stdio.h>
#include <string.h>

static int value_ok(const char *v)
{
    size_t n = strlen(v);
    return n <= ENVELOPE_ADDRESS_MAX && strpbrk(v, "\r\n") == NULL;
}

int handoff_request_format(const char *queue_id, const char *sender,
                           const char *const *rcpts, size_t n, struct buf *out)
{
    if (n == 0 || n > HANDOFF_MAX_RCPTS || !value_ok(queue_id) || !value_ok(sender))
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!value_ok(rcpts[i]))
            return -1;
    if (buf_puts(out, HANDOFF_MAGIC "\nqueue ") < 0 || buf_puts(out, queue_id) < 0 ||
        buf_puts(out, "\nsender ") < 0 || buf_puts(out, sender) < 0 || buf_putc(out, '\n') < 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (buf_puts(out, "rcpt ") < 0 || buf_puts(out, rcpts[i]) < 0 ||
            buf_putc(out, '\n') < 0)
            return -1;
    return buf_puts(out, ".\n");
}

/* The value of a line "<key> <value>", or NULL when the key differs. */
static const char *field(const char *line, const char *key)
{
    size_t k = strlen(key);
    if (strncmp(line, key, k) != 0 || line[k] != ' ')
        return NULL;
    return line + k + 1;
}

enum handoff_parse handoff_request_parse(char *buf, size_t len, struct handoff_request *req,
                                         char *err, size_t errlen)
{
    /* Complete once it ends with the final line (the first line cannot be
     * ".", so a request of just ".\n" is bad, not complete). */
    if (len > HANDOFF_REQUEST_MAX) {
        snprintf(err, errlen, "request longer than %d bytes", HANDOFF_REQUEST_MAX);
        return HANDOFF_BAD;
    }
    if (memchr(buf, '\0', len) != NULL) {
        snprintf(err, errlen, "NUL byte in the request");
        return HANDOFF_BAD;
    }
    size_t magic = strlen(HANDOFF_MAGIC "\n");
    if (memcmp(buf, HANDOFF_MAGIC "\n", len < magic ? len : magic) != 0) {
        snprintf(err, errlen, "not a handoff request");
        return HANDOFF_BAD;
    }
    char *end = NULL;
    for (size_t i = magic; i + 2 <= len; i++)
        if (buf[i] == '.' && buf[i + 1] == '\n' && buf[i - 1] == '\n') {
            end = buf + i;
            break;
        }
    if (end == NULL)
        return HANDOFF_INCOMPLETE;
    if ((size_t)(end - buf) + 2 != len) {
        snprintf(err, errlen, "bytes after the end of the request");
        return HANDOFF_BAD;
    }

    memset(req, 0, sizeof(*req));
    char *line = buf + magic;
    int stage = 0; /* 0 queue, 1 sender, 2 recipients */
    while (line < end) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        /* end is preceded by '\n', so every line before it has one. */
        *nl = '\0';
        const char *v;
        if (strpbrk(line, "\r") != NULL) {
            snprintf(err, errlen, "bad line in the request");
            return HANDOFF_BAD;
        }
        if (stage == 0 && (v = field(line, "queue")) != NULL) {
            /* Into log lines only as invocation.c lets it: [A-Za-z0-9-]{1,32}. */
            size_t q = strspn(v, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-");
            req->queue_id = q > 0 && q <= 32 && v[q] == '\0' ? v : "-";
            stage = 1;
        } else if (stage == 1 && (v = field(line, "sender")) != NULL) {
            req->sender = v;
            stage = 2;
        } else if (stage == 2 && (v = field(line, "rcpt")) != NULL) {
            if (req->nrcpts >= HANDOFF_MAX_RCPTS) {
                snprintf(err, errlen, "more than %d recipients", HANDOFF_MAX_RCPTS);
                return HANDOFF_BAD;
            }
            req->rcpts[req->nrcpts++] = v;
        } else {
            snprintf(err, errlen, "unexpected line in the request");
            return HANDOFF_BAD;
        }
        /* What parses must format again: the same bound as value_ok(). */
        if (strlen(v) > ENVELOPE_ADDRESS_MAX) {
            snprintf(err, errlen, "value longer than %d bytes in the request",
                     ENVELOPE_ADDRESS_MAX);
            return HANDOFF_BAD;
        }
        line = nl + 1;
    }
    if (req->nrcpts == 0) {
        snprintf(err, errlen, "no recipient in the request");
        return HANDOFF_BAD;
    }
    return HANDOFF_OK;
}

size_t handoff_reply_format(const struct outcome *o, char *out, size_t outlen)
{
    return dsn_format_coded(o, out, outlen);
}

int handoff_reply_parse(const char *line, size_t len, struct outcome *o)
{
    char dsn[16];
    if (len > 0 && line[len - 1] == '\n')
        len--;
    if (len >= HANDOFF_REPLY_MAX || memchr(line, '\n', len) != NULL ||
        memchr(line, '\0', len) != NULL)
        return -1;
    const char *sp = memchr(line, ' ', len);
    if (sp == NULL || (size_t)(sp - line) >= sizeof(dsn))
        return -1;
    memcpy(dsn, line, (size_t)(sp - line));
    dsn[sp - line] = '\0';
    if (!dsn_valid(dsn))
        return -1;
    enum outcome_class cls = dsn[0] == '2'   ? OUTCOME_DELIVERED
                             : dsn[0] == '4' ? OUTCOME_TEMPFAIL
                                             : OUTCOME_BOUNCE;
    int tlen = (int)(len - (size_t)(sp - line) - 1);
    outcome_set(o, cls, dsn, "%.*s", tlen, sp + 1);
    return 0;
}
