/* log: one line per event on stderr, in the format upstream filtermail uses.
 *
 * Lines look like `[INFO  filtermail::outbound] Outgoing: Filtering encrypted mail.`
 * (level padded to five, then the target), because relay operators' mtail rules
 * match on level, target and text (spec section 9). systemd adds time stamps.
 *
 * Levels (Postfix's habits): log_err is our own failure (answer with a temporary
 * error), log_warn is bad input from a peer (carry on), log_info normal events,
 * log_debug/log_trace detail. fatal() is bad configuration at start-up (exit 1);
 * panic() is a bug (abort).
 *
 * Every line is made safe here, in one place (as Postfix does): control
 * characters and bytes that are not valid UTF-8 in the message become '?', so
 * text from a peer can neither split a line nor forge another; callers still
 * bound such text (%.100s or log_escape).
 *
 * Thread-safe: each line is formatted on the stack and written with one write(2).
 * Library code (the parsers) never logs; callers that know the context do.
 */
#ifndef FILTERMAIL_LOG_H
#define FILTERMAIL_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdnoreturn.h>

enum log_level { LOGL_ERROR = 1, LOGL_WARN, LOGL_INFO, LOGL_DEBUG, LOGL_TRACE };

/* Sets the program name used by fatal() and the level. The environment variable
 * RUST_LOG (upstream's), if it names a level, wins over `level`, which may be
 * NULL (info). Call once at start-up, before threads. */
void log_init(const char *progname, const char *level);

/* Sends every line to syslog(3) from now on instead of stderr, as ident with
 * its pid, facility mail, each at its level's priority (fatal() and panic()
 * lines at LOG_ERR). For a program whose stderr is not a log:
 * filtermail-transport's stderr is the DSN text pipe(8) reads. Call once at
 * start-up; ident must stay valid. */
void log_to_syslog(const char *ident);

/* Parses a level name (error, warn, info, debug, trace; any case). Returns 0 and
 * sets *level_r, or -1. */
int log_parse_level(const char *name, enum log_level *level_r);

/* True when lines of this level are written. */
bool log_enabled(enum log_level level);

/* Writes one line `[LEVEL target] message`, the message sanitised as above.
 * Messages longer than 4 KiB are cut. */
void log_msg(enum log_level level, const char *target, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_err(target, ...) log_msg(LOGL_ERROR, target, __VA_ARGS__)
#define log_warn(target, ...) log_msg(LOGL_WARN, target, __VA_ARGS__)
#define log_info(target, ...) log_msg(LOGL_INFO, target, __VA_ARGS__)
#define log_debug(target, ...)                                                                     \
    do {                                                                                           \
        if (log_enabled(LOGL_DEBUG))                                                               \
            log_msg(LOGL_DEBUG, target, __VA_ARGS__);                                              \
    } while (0)

/* Bad configuration or environment at start-up: writes `<prog>: fatal: message`
 * to stderr and exits with status 1. */
noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* An internal inconsistency: writes `<prog>: panic: message` and aborts. */
noreturn void panic(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Copies text from a peer into dst (size dstlen > 0, always NUL-terminated) so it
 * is safe in a log line: printable ASCII stays, everything else becomes \xNN, and
 * at most `limit` input bytes are used (a cut is marked with "..."). Returns dst. */
char *log_escape(char *dst, size_t dstlen, const char *src, size_t srclen, size_t limit);

#endif
