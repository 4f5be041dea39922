/* pipeout: how a pipe(8) program says what became of a delivery, and where
 * the transport's log lines go instead.
 *
 * pipe(8) reads the exit status and the first output line (dsn.h). The line
 * is written on a copy of stdout made at start (pipeout_init), so neither
 * buffering nor a log line can get in its way. Log lines go to the
 * configured sink (filtermail_transport_log), never into the DSN text.
 *
 * One per process; not thread-safe (start-up and exit).
 */
#ifndef FILTERMAIL_PIPEOUT_H
#define FILTERMAIL_PIPEOUT_H

#include <stddef.h>
#include <stdnoreturn.h>

#include "dsn.h"

/* Keeps a close-on-exec copy of stdout for the result line; returns it. */
int pipeout_init(void);

/* Writes the outcome's line (pipe(8) gone: nothing to tell). */
void pipeout_emit(const struct outcome *o);

/* Writes the outcome's line and exits with its status. */
noreturn void pipeout_exit(const struct outcome *o);

/* A temporary failure (exit 75) with dsn and printf-formatted text. */
noreturn void pipeout_fail(const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Points log lines at sink: "syslog" (ident filtermail-transport, as
 * operators' log rules expect), "stderr" (left as it is) or a file, appended
 * to through stderr. Returns 0, or -1 with a message in err. */
int pipeout_log_sink(const char *sink, char *err, size_t errlen);

#endif
