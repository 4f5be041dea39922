/* filtermail-mxdeliv: receives /mxdeliv POSTs from other chatmail relays
 * (behind nginx, which terminates TLS) and hands each to Postfix over SMTP.
 *
 * Wiring only: the configuration and its reloads, the listening socket, the
 * privilege drop, libmicrohttpd's daemon and the signals. Each request is
 * http.c's, the checks request.c's, the SMTP session reinject.c's.
 *
 * libmicrohttpd runs one thread per connection (at most MAX_CONNECTIONS), so
 * the blocking SMTP client holds up nothing but its own request. Slow clients
 * are nginx's business (it buffers requests before passing them on); headers
 * sent a byte at a time are bounded only by the idle timeout, so the
 * listener belongs on loopback behind nginx (the default filtermail_host).
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "config.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "privs.h"
#include "reinject.h"
#include "sdnotify.h"

#define TARGET "filtermail::mxdeliv"

/* Connections served at once, each with its own thread. More are accepted
 * and closed at once (nginx answers 502 and the sender retries). */
#define MAX_CONNECTIONS 512
/* Seconds a connection may stay idle: between requests, or within one. */
#define IDLE_TIMEOUT 60
/* Per connection: request line, headers (up to REQUEST_MAX_RCPTS
 * X-Mail-To headers) and the read buffer. */
#define CONNECTION_MEMORY (256 * 1024)
#define THREAD_STACK (1024 * 1024)

static struct http_context ctx;

static void usage(const char *argv0)
{
    fprintf(stderr, "Usage: %s [-t idle_seconds] <config_file>\n", argv0);
    fprintf(stderr, "  the relay's chatmail.ini; see filtermail-mxdeliv(8)\n");
}

/* SIGHUP: max_message_size applies to the next requests; the other settings
 * (addresses, ports, user, log level) need a restart, which is logged. A file
 * that does not load keeps the running configuration. Requests under way
 * keep the configuration they started with. */
static void reload_config(const char *path)
{
    char err[1024];
    struct config *n;
    const struct config *cur = config_live_get(ctx.live);
    const char *restart;

    if (config_reload(path, cur, CONFIG_PROG_MXDELIV, NULL, &n, &restart, err, sizeof(err)) < 0) {
        log_err("filtermail", "Failed to reload config: %s (keeping the running configuration)",
                err);
        config_release(&cur);
        return;
    }
    config_release(&cur);
    if (restart != NULL)
        log_warn("filtermail",
                 "%s (and the other start-up settings) changed in %s: takes "
                 "effect at the next restart",
                 restart, path);
    log_info("filtermail", "configuration reloaded from %s: max_message_size %llu", path,
             (unsigned long long)n->max_message_size);
    config_live_set(ctx.live, n);
}

int main(int argc, char **argv)
{
    char err[1024];
    struct config *c;
    const struct config *cfg;
    struct MHD_Daemon *d;
    sigset_t sigs;
    unsigned idle = IDLE_TIMEOUT;
    struct listener_addr laddr;
    struct listener lsn;
    int opt, sig;

    if (argc == 2 && strcmp(argv[1], "-V") == 0) {
        printf("filtermail-mxdeliv %s\n", FILTERMAIL_VERSION);
        return 0;
    }
    while ((opt = getopt(argc, argv, "t:")) != -1) {
        char *end;
        unsigned long v;
        switch (opt) {
        case 't':
            errno = 0;
            v = strtoul(optarg, &end, 10);
            if (errno != 0 || *end != '\0' || v < 1 || v > 3600) {
                fprintf(stderr, "%s: -t wants seconds from 1 to 3600\n", argv[0]);
                return 1;
            }
            idle = (unsigned)v;
            break;
        default:
            usage(argv[0]);
            return 1;
        }
    }
    if (argc - optind != 1) {
        usage(argv[0]);
        return 1;
    }
    if (config_load(argv[optind], &c, err, sizeof(err)) < 0) {
        fprintf(stderr, "Failed to read config: %s\n", err);
        return 1;
    }
    cfg = c;
    log_init(argv[0], cfg->log_level);
    ctx.live = config_live_new(c); /* owns c from here on */
    if (ctx.live == NULL) {
        fprintf(stderr, "Server error: out of memory\n");
        return 1;
    }

    reinject_helo_name(cfg->filtermail_host, ctx.helo, sizeof(ctx.helo));
    ctx.pool = reinject_pool_new(); /* NULL: nothing is kept */

    /* filtermail_host is an IP address (checked at load). */
    if (listener_addr_inet(cfg->filtermail_host, cfg->filtermail_http_port_incoming, &laddr, err,
                           sizeof(err)) < 0 ||
        listener_open(&lsn, &laddr, 511, 0, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: %s\n", err);
        return 1;
    }
    if (privs_drop(cfg->user, NULL, cfg->socket_group, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: %s\n", err);
        return 1;
    }
    /* Signals are taken by the loop below, never by libmicrohttpd's threads
     * (they inherit this mask). */
    sdnotify_block_signals(&sigs);

    d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD | MHD_USE_ERROR_LOG, 0, NULL,
        NULL, http_on_request, &ctx, MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)lsn.fd, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)MAX_CONNECTIONS, MHD_OPTION_CONNECTION_TIMEOUT, idle,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONNECTION_MEMORY, MHD_OPTION_THREAD_STACK_SIZE,
        (size_t)THREAD_STACK, MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, &ctx, MHD_OPTION_END);
    if (d == NULL) {
        fprintf(stderr, "Server error: libmicrohttpd did not start\n");
        return 1;
    }
    log_info("filtermail", "entering serving loop");
    log_debug(TARGET, "listening on %s port %u, reinjecting into %s port %u", cfg->filtermail_host,
              (unsigned)cfg->filtermail_http_port_incoming, cfg->postfix_host,
              (unsigned)cfg->postfix_reinject_port_incoming);

    sdnotify_ready("serving /mxdeliv");
    /* The signal loop doubles as the watchdog's heartbeat under systemd. */
    for (;;) {
        sig = sdnotify_wait_signal(&sigs);
        if (sig == SIGHUP) {
            reload_config(argv[optind]);
            continue;
        }
        log_info(TARGET, "shutting down on signal %d", sig);
        break;
    }
    sdnotify_stopping();
    MHD_stop_daemon(d);
    reinject_pool_free(&ctx.pool);
    config_live_free(&ctx.live);
    return 0;
}
