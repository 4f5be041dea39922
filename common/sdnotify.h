/* sdnotify: tells systemd how a daemon is doing (sd_notify(3)): ready to
 * serve, stopping, a status line, and watchdog pings.
 *
 * A daemon started by a unit with Type=notify calls sdnotify_ready() once it
 * accepts connections, sdnotify_stopping() when it starts to shut down, and,
 * when the unit sets WatchdogSec=, sdnotify_watchdog() at least every
 * sdnotify_watchdog_interval_ms() milliseconds. Outside systemd (no
 * NOTIFY_SOCKET in the environment: a test, a shell) every call does nothing,
 * so callers never need to ask whether they run under systemd.
 *
 * Failures to notify are ignored: a missed message costs at worst a restart by
 * the service manager, never a message. Thread-safe (each call is one
 * datagram; nothing is cached). The environment is left as it is, so the
 * calls keep working after privileges are dropped.
 */
#ifndef FILTERMAIL_SDNOTIFY_H
#define FILTERMAIL_SDNOTIFY_H

#include <signal.h>

/* READY=1, with a STATUS= line saying what is served (text may be NULL). */
void sdnotify_ready(const char *status);

/* STOPPING=1: shutting down; systemd will not count what follows as a crash. */
void sdnotify_stopping(void);

/* STATUS=<text>, shown by `systemctl status`. Text longer than 200 bytes is cut. */
void sdnotify_status(const char *text);

/* How often to call sdnotify_watchdog: half the unit's WatchdogSec= in
 * milliseconds (at least 1), or 0 when no watchdog is asked for this process. */
unsigned sdnotify_watchdog_interval_ms(void);

/* WATCHDOG=1: the daemon's main loop is alive. */
void sdnotify_watchdog(void);

/* The daemons' signal loop. sdnotify_block_signals ignores SIGPIPE and blocks
 * SIGTERM, SIGINT and SIGHUP in the calling thread, so threads started after
 * it inherit the mask and only sdnotify_wait_signal takes them; it stores the
 * set in *set_r. Call it before starting any thread. */
void sdnotify_block_signals(sigset_t *set_r);
/* Waits for one of set's signals and returns it, pinging the watchdog (when
 * the unit has one) every sdnotify_watchdog_interval_ms() meanwhile. */
int sdnotify_wait_signal(const sigset_t *set);

#endif
