/* dsn: outcome -> exit status and output line for pipe(8). */
#include "dsn.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

int dsn_valid(const char *d)
{
    size_t i = 0, parts = 0, digits = 0;
    if (d[0] != '2' && d[0] != '4' && d[0] != '5')
        return 0;
    if (d[1] != '.')
        return 0;
    for (i = 2; d[i] != '\0'; i++) {
        if (d[i] >= '0' && d[i] <= '9') {
            if (++digits > 3)
                return 0;
        } else if (d[i] == '.') {
            if (digits == 0 || ++parts > 1)
                return 0;
            digits = 0;
        } else {
            return 0;
        }
    }
    return parts == 1 && digits > 0;
}

/* Printable ASCII, one line. */
static void dsn_clean(char *s)
{
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '\n' || c == '\r' || c == '\t')
            *s = ' ';
        else if (c < 0x20 || c > 0x7e)
            *s = '?';
    }
}

void outcome_set(struct outcome *o, enum outcome_class cls, const char *dsn, const char *fmt,
                 ...)
{
    va_list ap;
    char want = cls == OUTCOME_DELIVERED ? '2' : cls == OUTCOME_TEMPFAIL ? '4' : '5';

    o->cls = cls;
    if (dsn_valid(dsn) && dsn[0] == want && strlen(dsn) < sizeof(o->dsn)) {
        snprintf(o->dsn, sizeof(o->dsn), "%s", dsn);
    } else {
        snprintf(o->dsn, sizeof(o->dsn), "%c.0.0", want);
    }
    va_start(ap, fmt);
    vsnprintf(o->text, sizeof(o->text), fmt, ap);
    va_end(ap);
    dsn_clean(o->text);
}

void outcome_from_reply(struct outcome *o, const struct smtp_reply *r, const char *host,
                        const char *addr, const char *stage)
{
    char line[600];
    enum outcome_class cls = r->code >= 500 ? OUTCOME_BOUNCE : OUTCOME_TEMPFAIL;
    char dsn[16];

    smtp_reply_oneline(r, line, sizeof(line));
    if (r->enhanced[0] != '\0' && r->enhanced[0] == (cls == OUTCOME_BOUNCE ? '5' : '4'))
        snprintf(dsn, sizeof(dsn), "%s", r->enhanced);
    else
        snprintf(dsn, sizeof(dsn), "%c.0.0", cls == OUTCOME_BOUNCE ? '5' : '4');
    outcome_set(o, cls, dsn, "host %.255s[%.64s] said: %s (in reply to %s)", host, addr, line,
                stage);
}

void attempts_note(struct attempts *a, const char *dsn, const char *fmt, ...)
{
    va_list ap;
    snprintf(a->dsn, sizeof(a->dsn), "%s", dsn);
    va_start(ap, fmt);
    vsnprintf(a->text, sizeof(a->text), fmt, ap);
    va_end(ap);
}

void outcome_from_attempts(struct outcome *o, const struct attempts *a, const char *domain,
                           unsigned down_time)
{
    if (a->tried == 0 && a->noaddr > 0 && a->noaddr == a->hosts)
        outcome_set(o, OUTCOME_BOUNCE, "5.4.4", "no address for the mail server%s of %s",
                    a->hosts > 1 ? "s" : "", domain);
    else if (a->tried == 0 && a->skipped > 0 && a->dsn[0] == '\0')
        outcome_set(o, OUTCOME_TEMPFAIL, "4.4.1",
                    "every mail server of %s failed to answer in the last %u s; not tried "
                    "again yet",
                    domain, down_time);
    else if (a->dsn[0] != '\0')
        outcome_set(o, OUTCOME_TEMPFAIL, a->dsn,
                    "Failed to connect to any mail server for %s; last attempt: %s", domain,
                    a->text);
    else
        outcome_set(o, OUTCOME_TEMPFAIL, "4.4.1", "no mail server to try for %s", domain);
}

int dsn_exit_status(const struct outcome *o)
{
    switch (o->cls) {
    case OUTCOME_DELIVERED:
        return DSN_EX_OK;
    case OUTCOME_BOUNCE:
        return strcmp(o->dsn, "5.1.2") == 0 ? DSN_EX_NOHOST : DSN_EX_UNAVAILABLE;
    case OUTCOME_TEMPFAIL:
        break;
    }
    return DSN_EX_TEMPFAIL;
}

/* "<dsn> <text>\n", or "<text>\n" when coded is false; cut to fit, the line
 * end kept. */
static size_t format_line(const struct outcome *o, bool coded, char *out, size_t outlen)
{
    int n = coded ? snprintf(out, outlen, "%s %s\n", o->dsn, o->text)
                  : snprintf(out, outlen, "%s\n", o->text);
    if (n < 0) {
        out[0] = '\0';
        return 0;
    }
    if ((size_t)n >= outlen) {
        /* Cut, but keep the line end. */
        n = (int)outlen - 1;
        if (n > 0)
            out[n - 1] = '\n';
    }
    return (size_t)n;
}

size_t dsn_format(const struct outcome *o, char *out, size_t outlen)
{
    size_t n = format_line(o, o->cls != OUTCOME_DELIVERED, out, outlen);
    /* A delivery's text must never look like a DSN code (pipe(8) would read
     * a "4." or "5." start as a failure). */
    if (o->cls == OUTCOME_DELIVERED && n >= 2 && out[1] == '.' &&
        (out[0] == '4' || out[0] == '5'))
        out[0] = '_';
    return n;
}

size_t dsn_format_coded(const struct outcome *o, char *out, size_t outlen)
{
    return format_line(o, true, out, outlen);
}
