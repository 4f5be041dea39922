/* filtermail-policyd: per-sender rate limiting as a Postfix policy server.
 *
 * Wiring only: the configuration, the listening socket, the privilege drop,
 * signals and reloads. The event loop and connections are server.c, the
 * decisions ratelimit.c (or redislimit.c with Redis), the state file
 * snapshot.c.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "privs.h"
#include "ratelimit.h"
#include "redislimit.h"
#include "sdnotify.h"
#include "server.h"
#include "snapshot.h"

#define TARGET "filtermail::policyd"

static struct config *cfg;
static const char *config_path;

static void usage(const char *argv0)
{
    fprintf(stderr, "Usage: %s <config_file>\n", argv0);
    fprintf(stderr, "  the relay's chatmail.ini; see filtermail-policyd(8)\n");
}

static void raise_fd_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < SERVER_MAX_CONNS + 64) {
        r.rlim_cur = r.rlim_max < SERVER_MAX_CONNS + 64 ? r.rlim_max : SERVER_MAX_CONNS + 64;
        setrlimit(RLIMIT_NOFILE, &r);
    }
}

/* The limiter for c's limits; NULL when out of memory or without entropy. */
static struct ratelimit *limiter_for(const struct config *c, const struct ratelimit *carry)
{
    struct ratelimit_config rc = {
        .per_minute = c->max_user_send_per_minute,
        .burst = c->max_user_send_burst_size,
        .exempt = &c->ratelimit_exempt,
    };
    if (getrandom(rc.seed, sizeof(rc.seed), 0) != (ssize_t)sizeof(rc.seed))
        return NULL;
    return carry != NULL ? ratelimit_rebuild(carry, &rc, clock_mono_ns(), clock_wall_ns())
                         : ratelimit_new(&rc);
}

/* SIGHUP: re-reads the configuration. New limits and exemptions apply at once,
 * with every sender's state carried over (saved and loaded as the snapshot
 * is, so waits are cut to what the new limits allow); connections stay open.
 * Socket, user, log level, Redis and snapshot settings need a restart, which
 * is logged; with Redis the limits do too (its client holds them). A file
 * that does not load keeps the running configuration. The new configuration
 * replaces the old one whole, so any number of reloads keeps one. */
static void reload_config(struct server *srv, struct snapshot *snap)
{
    static const char *const limit_keys[] = {
        "max_user_send_per_minute",
        "max_user_send_burst_size",
        "filtermail_ratelimit_exempt",
        NULL,
    };
    char err[1024];
    struct config *n;
    const char *restart;

    if (config_reload(config_path, cfg, CONFIG_PROG_POLICYD, server_shared(srv) ? limit_keys : NULL,
                      &n, &restart, err, sizeof(err)) < 0) {
        log_err("filtermail", "Failed to reload config: %s (keeping the running configuration)",
                err);
        return;
    }
    if (restart != NULL)
        log_warn("filtermail",
                 "%s (and the other start-up settings) changed in %s: takes "
                 "effect at the next restart",
                 restart, config_path);
    if (config_changed(cfg, n, limit_keys) != NULL) {
        struct ratelimit *nrl = limiter_for(n, server_ratelimit(srv));
        if (nrl == NULL) {
            log_err("filtermail", "Failed to reload config: cannot carry the senders' state "
                                  "over (keeping the running configuration)");
            config_free(&n);
            return;
        }
        server_set_ratelimit(srv, nrl);
        snapshot_touch(snap);
    }
    config_free(&cfg);
    cfg = n;
    log_info("filtermail", "configuration reloaded from %s: %u messages a minute, bursts of %u",
             config_path, cfg->max_user_send_per_minute, cfg->max_user_send_burst_size);
}

/* Reads the signals waiting; returns true on SIGTERM or SIGINT. */
static bool handle_signals(int signal_fd, struct server *srv, struct snapshot *snap)
{
    struct signalfd_siginfo si;
    bool stop = false;

    while (read(signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGHUP) {
            snapshot_save_background(snap, server_ratelimit(srv), "SIGHUP");
            reload_config(srv, snap);
            continue;
        }
        log_info(TARGET, "shutting down on signal %u", si.ssi_signo);
        stop = true;
    }
    return stop;
}

int main(int argc, char **argv)
{
    char err[1024];
    struct listener_addr laddr;
    struct listener lsn;
    struct redislimit_target rt;
    struct server_params sp = {0};
    struct server *srv;
    struct snapshot *snap;
    sigset_t sigs;
    int signal_fd;

    if (argc == 2 && strcmp(argv[1], "-V") == 0) {
        printf("filtermail-policyd %s\n", FILTERMAIL_VERSION);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        usage(argv[0]);
        return 1;
    }
    config_path = argv[1];
    if (config_load(argv[1], &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "Failed to read config: %s\n", err);
        return 1;
    }
    log_init(argv[0], cfg->log_level);
    if (listener_parse(cfg->policy_socket, &laddr, err, sizeof(err)) < 0)
        panic("filtermail_policy_socket passed config_load: %s", err);
    if (cfg->ratelimit_redis[0] != '\0') {
        if (redislimit_parse_url(cfg->ratelimit_redis, &rt, err, sizeof(err)) < 0) {
            fprintf(stderr,
                    "Failed to read config: %s: invalid filtermail_ratelimit_redis "
                    "value: %s\n",
                    config_path, err);
            return 1;
        }
        sp.redis = &rt;
    }
    sp.fallback_defer = strcmp(cfg->ratelimit_redis_fallback, "defer") == 0;
    sp.rl = limiter_for(cfg, NULL);
    snap = snapshot_new(cfg->ratelimit_state);
    if (sp.rl == NULL || snap == NULL)
        fatal("cannot set up the rate limiter (out of memory or no entropy)");
    sp.snap = snap;

    raise_fd_limit();
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal_fd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signal_fd < 0)
        fatal("cannot set up the event loop: %s", strerror(errno));

    if (listener_open(&lsn, &laddr, 1024, SOCK_NONBLOCK, err, sizeof(err)) < 0 ||
        privs_drop(cfg->user, cfg->policy_socket, cfg->socket_group, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: %s\n", err);
        return 1;
    }
    snapshot_load(snap, sp.rl, clock_mono_ns(), clock_wall_ns());
    sp.listen_fd = lsn.fd;
    srv = server_new(&sp, err, sizeof(err));
    if (srv == NULL || server_watch(srv, signal_fd) < 0)
        fatal("%s", srv == NULL ? err : strerror(errno));

    log_info("filtermail", "entering serving loop");
    log_info(TARGET, "listening on %s: %u messages a minute, bursts of %u, %s", cfg->policy_socket,
             cfg->max_user_send_per_minute, cfg->max_user_send_burst_size,
             sp.redis == NULL    ? "state in this process"
             : sp.fallback_defer ? "state in Redis (deferring mail when it is unavailable)"
                                 : "state in Redis (limiting locally when it is unavailable)");
    sdnotify_ready(sp.redis == NULL ? "serving, state in this process" : "serving, state in Redis");

    for (bool stop = false; !stop;)
        if (server_poll(srv))
            stop = handle_signals(signal_fd, srv, snap);

    sdnotify_stopping();
    snapshot_save(snap, server_ratelimit(srv), "shutdown");
    server_free(&srv);
    snapshot_free(&snap);
    listener_close(&lsn);
    config_free(&cfg);
    return 0;
}
