/* filtermail-milter: the chatmail E2EE gate as a Postfix milter.
 *
 * Wiring only: configuration and its reload, start-up order (DKIM set-up and
 * the socket as root, privileges dropped, then the first thread), signals,
 * and the server (mserver.c, the socket loop around the session core
 * msession.c) driving the callbacks of filter.c, where the decisions are.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "filter.h"
#include "log.h"
#include "mserver.h"
#include "privs.h"
#include "sdnotify.h"

#define TARGET "filtermail::milter"

/* At shutdown, milliseconds the sessions inside a message get to finish it
 * (systemd waits 90 s by default before SIGKILL). */
#define SHUTDOWN_MS 30000

/* Concurrent Postfix connections served; Postfix opens one per smtpd
 * process (default_process_limit 100). */
#define MAX_SESSIONS 1000

/* The running configuration: each message takes a reference to the one
 * current at its MAIL FROM; SIGHUP replaces it whole, and a replaced one is
 * freed when its last message ends. */
static struct config_live *live;
static const char *config_path;
static struct filter filter;

static struct mserver *server;

/* SIGHUP: the policy settings (mailboxes_dir, max_message_size, the
 * passthrough lists, the outgoing daemon names, ...) take effect for the
 * next messages; what was set up at start (socket, user, log level, DKIM
 * key, resolver, rejected store) needs a restart, which is logged. A file
 * that does not load leaves the running configuration in place. */
static void reload_config(void)
{
    char err[1024];
    struct config *n;
    const char *restart_key;
    const struct config *running = config_live_get(live);

    if (config_reload(config_path, running, CONFIG_PROG_MILTER, NULL, &n, &restart_key, err,
                      sizeof(err)) < 0) {
        log_err("filtermail", "Failed to reload config: %s (keeping the running configuration)",
                err);
    } else {
        if (restart_key != NULL)
            log_warn("filtermail", "%s (and the other start-up settings) changed in %s: takes "
                     "effect at the next restart", restart_key, config_path);
        config_live_set(live, n);
        log_info("filtermail", "configuration reloaded from %s", config_path);
    }
    config_release(&running);
}

static void usage(const char *argv0)
{
    fprintf(stderr, "Usage: %s <config_file>\n", argv0);
    fprintf(stderr, "  the relay's chatmail.ini; see filtermail-milter(8)\n");
}

int main(int argc, char **argv)
{
    char err[1024];
    struct config *c;
    const char *sock;

    if (argc == 2 && strcmp(argv[1], "-V") == 0) {
        printf("filtermail-milter %s\n", FILTERMAIL_VERSION);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(argv[0]);
        return 1;
    }
    if (config_load(argv[1], &c, err, sizeof(err)) < 0) {
        fprintf(stderr, "Failed to read config: %s\n", err);
        return 1;
    }
    const struct config *cfg = c;
    live = config_live_new(c);
    if (live == NULL) {
        fprintf(stderr, "Failed to read config: out of memory\n");
        return 1;
    }
    filter.config = live;
    config_path = argv[1];
    log_init(argv[0], cfg->log_level);

    if (filter_open(&filter, cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "Failed to set up DKIM: %s\n", err);
        return 1;
    }

    sock = cfg->milter_socket;
    struct mserver_config mc = {
        .socket_spec = sock,
        FILTER_SESSION(&filter),
        .timeout = (int)cfg->milter_timeout,
        .shutdown_ms = SHUTDOWN_MS,
        .max_sessions = MAX_SESSIONS,
        /* Under systemd with WatchdogSec=, the accept loop pings it. */
        .tick_ms = sdnotify_watchdog_interval_ms(),
        .tick = sdnotify_watchdog,
        .reload = reload_config,
    };
    /* Sockets are for Postfix only: owner and group (the Postfix group) may
     * connect, nobody else. */
    umask(007);
    server = mserver_open(&mc, err, sizeof(err));
    if (server == NULL) {
        fprintf(stderr, "Server error: cannot listen on %s: %s\n", sock, err);
        return 1;
    }
    if (privs_drop(cfg->user, sock, cfg->socket_group, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: %s\n", err);
        return 1;
    }
    /* The first thread, now that the privileges are gone. */
    if (filter_start(&filter, err, sizeof(err)) < 0) {
        fprintf(stderr, "Failed to set up DKIM: %s\n", err);
        return 1;
    }
    if (mserver_catch_signals(server) < 0) {
        fprintf(stderr, "Server error: sigaction: %s\n", strerror(errno));
        return 1;
    }
    log_info("filtermail", "entering serving loop");
    log_debug(TARGET, "listening on %s", sock);
    {
        char status[300];
        snprintf(status, sizeof(status), "serving on %.250s", sock);
        sdnotify_ready(status);
    }
    if (mserver_run(server, err, sizeof(err)) < 0) {
        log_err(TARGET, "Server error: %s", err);
        /* Sessions may be running: end them before the exit handlers run. */
        if (mserver_close(&server) < 0)
            _exit(1);
        return 1;
    }
    sdnotify_stopping();
    log_info("filtermail", "stopping");
    if (mserver_close(&server) < 0)
        _exit(0); /* sessions still run: no exit handlers under them */
    filter_close(&filter); /* the resolver's thread too */
    return 0;
}
