/* dsn: the outcome of one delivery, as pipe(8) must see it.
 *
 * pipe(8) turns the program's exit status and the start of its output into a
 * delivery status for every recipient of the invocation (postfix-integration
 * 3.3): output starting with "4.X.Y text" or "5.X.Y text" sets the DSN code and
 * text; exit 75 (EX_TEMPFAIL) defers; any code that is not a sysexits code,
 * or a time-limit overrun, bounces. So: exit 0 only when every recipient was
 * accepted, 5.X.Y only for a definitive refusal, and 4.X.Y with exit 75 for
 * anything temporary, unknown or internal.
 *
 * Pure; thread-safe.
 */
#ifndef FILTERMAIL_DSN_H
#define FILTERMAIL_DSN_H

#include <stddef.h>

#include "smtpreply.h"

/* sysexits(3) values used here. */
#define DSN_EX_OK 0
#define DSN_EX_NOHOST 68
#define DSN_EX_UNAVAILABLE 69
#define DSN_EX_TEMPFAIL 75

/* Longest text kept (pipe(8) reads at most 4096 bytes of output). */
#define DSN_TEXT_MAX 900

enum outcome_class { OUTCOME_DELIVERED, OUTCOME_TEMPFAIL, OUTCOME_BOUNCE };

struct outcome {
    enum outcome_class cls;
    char dsn[16];                /* "4.4.1"; "2.0.0" when delivered */
    char text[DSN_TEXT_MAX + 1]; /* one line */
};

/* Sets the outcome; text is printf-formatted, cut to DSN_TEXT_MAX bytes. The
 * DSN code's class must match cls (2 delivered, 4 temporary, 5 bounce). */
void outcome_set(struct outcome *o, enum outcome_class cls, const char *dsn, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

/* The outcome of a remote SMTP reply (4xx: temporary, 5xx: bounce), with the
 * reply's enhanced code when its class matches, else X.0.0. The text says who
 * answered and to what: "host mx.example.org[192.0.2.1] said: 550 5.1.1 <bob@
 * example.org>: unknown (in reply to RCPT TO command)". */
void outcome_from_reply(struct outcome *o, const struct smtp_reply *r, const char *host,
                        const char *addr, const char *stage);

/* What the attempts on a destination's mail servers came to, for when none
 * of them settled the delivery. */
struct attempts {
    size_t hosts;   /* mail servers of the destination (1 for an address literal) */
    size_t tried;   /* servers that had an address and were tried */
    size_t noaddr;  /* servers without any address */
    size_t skipped; /* servers skipped: they failed to answer recently */
    char dsn[16];   /* the last failure's DSN code ("4.4.1"), "" when none */
    char text[700]; /* its text, one line */
};

/* Records a failed attempt (a temporary DSN code and printf-formatted text,
 * cut to fit); the last one recorded is the one reported. */
void attempts_note(struct attempts *a, const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* The outcome when no mail server of domain settled the delivery: a bounce
 * when none of them has an address (5.4.4), else a deferral: with the last
 * failure's code and text, or, when every server was skipped for failing to
 * answer in the last down_time seconds, saying so (4.4.1). */
void outcome_from_attempts(struct outcome *o, const struct attempts *a, const char *domain,
                           unsigned down_time);

/* The exit status for the outcome: 0, 75, 68 (5.1.2) or 69 (other bounces). */
int dsn_exit_status(const struct outcome *o);

/* The line to print: "<dsn> <text>\n" for failures, the text for a delivery
 * (pipe(8) appends it to its log line). Printable ASCII only. Returns the
 * length written to out (always NUL-terminated; outlen > 0). */
size_t dsn_format(const struct outcome *o, char *out, size_t outlen);

/* "<dsn> <text>\n" whatever the class (filtermail-deliverd's answer to its
 * client). Returns the length, as dsn_format. */
size_t dsn_format_coded(const struct outcome *o, char *out, size_t outlen);

/* True when dsn is "C.S.D" with C in 2, 4, 5 and S, D of 1-3 digits. */
int dsn_valid(const char *dsn);

#endif
