/* log: stderr lines in upstream filtermail's env_logger format. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <unistd.h>

#include "fdio.h"
#include "utf8.h"

static const char *log_progname = "filtermail";
static enum log_level log_threshold = LOGL_INFO;

int log_parse_level(const char *name, enum log_level *level_r)
{
    static const struct {
        const char *name;
        enum log_level level;
    } names[] = {
        {"error", LOGL_ERROR}, {"warn", LOGL_WARN},   {"warning", LOGL_WARN},
        {"info", LOGL_INFO},   {"debug", LOGL_DEBUG}, {"trace", LOGL_TRACE},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(name, names[i].name) == 0) {
            *level_r = names[i].level;
            return 0;
        }
    }
    return -1;
}

void log_init(const char *progname, const char *level)
{
    const char *env = getenv("RUST_LOG");
    enum log_level l;

    if (progname != NULL) {
        const char *slash = strrchr(progname, '/');
        log_progname = slash != NULL ? slash + 1 : progname;
    }
    if (env != NULL && log_parse_level(env, &l) == 0)
        log_threshold = l;
    else if (level != NULL && log_parse_level(level, &l) == 0)
        log_threshold = l;
}

bool log_enabled(enum log_level level)
{
    return level <= log_threshold;
}

static const char *log_label(enum log_level level)
{
    switch (level) {
    case LOGL_ERROR:
        return "ERROR";
    case LOGL_WARN:
        return "WARN ";
    case LOGL_INFO:
        return "INFO ";
    case LOGL_DEBUG:
        return "DEBUG";
    case LOGL_TRACE:
        return "TRACE";
    }
    return "?????";
}

static bool log_syslog;

void log_to_syslog(const char *ident)
{
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
    log_syslog = true;
}

/* A line for syslog: its priority from the label it starts with. */
static void log_syslog_line(const char *line, size_t len)
{
    static const struct {
        const char *start;
        int prio;
    } prios[] = {{"[ERROR", LOG_ERR}, {"[WARN", LOG_WARNING}, {"[DEBUG", LOG_DEBUG},
                 {"[TRACE", LOG_DEBUG}};
    int prio = line[0] == '[' ? LOG_INFO : LOG_ERR; /* fatal() and panic() */
    for (size_t i = 0; i < sizeof(prios) / sizeof(prios[0]); i++)
        if (strncmp(line, prios[i].start, strlen(prios[i].start)) == 0)
            prio = prios[i].prio;
    syslog(prio, "%.*s", (int)(len > 0 && line[len - 1] == '\n' ? len - 1 : len), line);
}

/* Length of the valid UTF-8 sequence at p[0..n) (a lead byte >= 0x80), or 0. */
static size_t utf8_seq(const char *p, size_t n)
{
    unsigned char c = (unsigned char)p[0];
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
    if (len == 0 || len > n || !utf8_valid((const unsigned char *)p, len))
        return 0;
    return len;
}

/* Makes the text one safe line in place, as Postfix does for every line it
 * logs: control characters (CR, LF, TAB, ESC, DEL, ...) and bytes that are
 * not valid UTF-8 become '?'. Every message passes here, so text from a peer
 * (an RFC 2047-decoded From with a newline, say) cannot split a line or forge
 * one, whichever caller logged it. */
static void log_sanitize(char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x80) {
            size_t k = utf8_seq(text + i, len - i);
            if (k > 0) {
                i += k;
                continue;
            }
            text[i++] = '?';
        } else if (c < 0x20 || c == 0x7f) {
            text[i++] = '?';
        } else {
            i++;
        }
    }
}

/* Writes the whole line; a short write to a pipe is retried. A line that
 * cannot be written is lost: there is nowhere to report it. */
static void log_write(const char *line, size_t len)
{
    if (log_syslog) {
        log_syslog_line(line, len);
        return;
    }
    (void)fd_write_all(STDERR_FILENO, line, len);
}

void log_msg(enum log_level level, const char *target, const char *fmt, ...)
{
    char line[4096 + 128];
    va_list ap;
    int n, m;

    if (!log_enabled(level))
        return;
    n = snprintf(line, sizeof(line), "[%s %s] ", log_label(level), target);
    if (n < 0 || (size_t)n >= sizeof(line))
        return;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    if (m < 0)
        return;
    if ((size_t)m >= sizeof(line) - (size_t)n - 1) {
        m = (int)(sizeof(line) - (size_t)n - 5);
        memcpy(line + n + m, "...", 3);
        m += 3;
    }
    log_sanitize(line + n, (size_t)m);
    line[n + m] = '\n';
    log_write(line, (size_t)n + (size_t)m + 1);
}

static noreturn void log_die(const char *what, const char *fmt, va_list ap, bool do_abort)
    __attribute__((format(printf, 2, 0)));

static noreturn void log_die(const char *what, const char *fmt, va_list ap, bool do_abort)
{
    char line[4096];
    int n = snprintf(line, sizeof(line), "%s: %s: ", log_progname, what);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    if (m < 0)
        m = 0;
    if ((size_t)m > sizeof(line) - (size_t)n - 2)
        m = (int)(sizeof(line) - (size_t)n - 2);
    log_sanitize(line + n, (size_t)m);
    line[n + m] = '\n';
    log_write(line, (size_t)n + (size_t)m + 1);
    if (do_abort)
        abort();
    exit(1);
}

void fatal(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_die("fatal", fmt, ap, false);
}

void panic(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_die("panic", fmt, ap, true);
}

char *log_escape(char *dst, size_t dstlen, const char *src, size_t srclen, size_t limit)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0, i;
    bool cut = srclen > limit;

    if (cut)
        srclen = limit;
    for (i = 0; i < srclen; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') {
            if (o + 1 >= dstlen)
                break;
            dst[o++] = (char)c;
        } else {
            if (o + 4 >= dstlen)
                break;
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    if (i < srclen)
        cut = true;
    if (cut && o + 3 < dstlen) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o < dstlen ? o : dstlen - 1] = '\0';
    return dst;
}
