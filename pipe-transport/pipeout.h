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

#include "config.h"
#include "dsn.h"
#include "invocation.h"

/* Seconds the alarm (deadline.h) gives a deadline before it fires. */
#define PIPEOUT_DEADLINE_GRACE 15

/* Keeps a close-on-exec copy of stdout for the result line; returns it. */
int pipeout_init(void);

/* Writes the outcome's line (pipe(8) gone: nothing to tell). */
void pipeout_emit(const struct outcome *o);

/* Writes the outcome's line and exits with its status. */
noreturn void pipeout_exit(const struct outcome *o);

/* A temporary failure (exit 75) with dsn and printf-formatted text. */
noreturn void pipeout_fail(const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* The start every pipe(8) program of ours shares: SIGPIPE ignored, the
 * result line's copy of stdout (returned), the alarm at the longest any
 * delivery may take, argv read into *a, refusal to run as root, the
 * configuration loaded into *cfg_r. Each failure ends the process with its
 * 4.3.5 line, naming prog; the caller sets the alarm by the configuration's
 * deadline next (deadline_start). */
int pipeout_start(int argc, char **argv, const char *prog, struct invocation *a,
                  struct config **cfg_r);

/* Points log lines at sink: "syslog" (ident filtermail-transport, as
 * operators' log rules expect), "stderr" (left as it is) or a file, appended
 * to through stderr. Returns 0, or -1 with a message in err. */
int pipeout_log_sink(const char *sink, char *err, size_t errlen);

#endif
