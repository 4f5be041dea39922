/* deadline: the transport's last word when its internal deadline strikes.
 *
 * pipe(8) bounces a delivery that overruns its time limit, so the process
 * ends itself earlier: SIGALRM writes a result line to pipe(8) and exits.
 * Until the outcome is settled that line is a deferral (4.4.7, exit 75);
 * once the remote has answered (deadline_settle), it is that outcome, so a
 * deadline striking in the bookkeeping that follows (the shared state) never
 * turns a delivered message into a deferred one that would be sent again.
 *
 * The settled line is published to the handler with a release store of its
 * exit status after the line is written, and read with an acquire load: a
 * volatile sig_atomic_t flag alone orders nothing around it, so the handler
 * could see the flag set and a half-written line, and SIGALRM may be
 * delivered to another thread (libcurl's resolver) than the one settling.
 *
 * One per process: deadline_start installs the handler.
 */
#ifndef FILTERMAIL_TRANSPORT_DEADLINE_H
#define FILTERMAIL_TRANSPORT_DEADLINE_H

#include "dsn.h"

/* Installs the SIGALRM handler writing to result_fd and sets the alarm to
 * seconds from now (again: moves it). */
void deadline_start(int result_fd, unsigned seconds);

/* Records the settled outcome: from now on the deadline reports it. */
void deadline_settle(const struct outcome *o);

/* What the handler does before _exit: writes the settled line, or the
 * deferral, to fd and returns the exit status. Async-signal-safe. */
int deadline_expire(int fd);

#endif
