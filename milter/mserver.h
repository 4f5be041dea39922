/* mserver: the milter server: listening socket, one thread per Postfix
 * connection, and the thin loop that moves bytes between the socket and the
 * session core (msession.h, which also holds the callbacks' API). See
 * mproto.h for why not libmilter.
 *
 * A session's callbacks run on its own thread, one after another; sessions
 * run concurrently.
 */
#ifndef FILTERMAIL_MSERVER_H
#define FILTERMAIL_MSERVER_H

#include <stddef.h>
#include <stdint.h>

#include "msession.h"

struct mserver_config {
    const char *socket_spec;   /* any form listener_parse() accepts (listener.h) */
    uint32_t actions;          /* SMFIF_* wanted */
    uint32_t protocol;         /* SMFIP_* wanted (skips and no-reply flags) */
    int symlist_stage;         /* SMFIM_* stage of symlist */
    const char *symlist;       /* macros wanted at that stage, or NULL */
    /* Seconds a started packet may stall between reads, and a reply write.
     * Between packets a session waits without limit: Postfix sends nothing
     * while a client uploads (cleanup passes the headers on only after the
     * whole DATA), so silence is normal; a dead peer closes a unix socket,
     * and TCP keepalive finds one on inet sockets. */
    int timeout;
    /* At shutdown (mserver_close), milliseconds sessions inside a message
     * may take to finish it before their connections are shut. */
    unsigned shutdown_ms;
    unsigned max_sessions;     /* concurrent connections; more are closed at once */
    const struct mserver_callbacks *cb;
    void *ctx;                 /* for the callbacks: msess_ctx() */
    /* Called by mserver_run's thread at least every tick_ms milliseconds
     * while it serves (a watchdog ping: the accept loop is alive); 0 or a
     * NULL tick: never. */
    unsigned tick_ms;
    void (*tick)(void);
    /* Called by mserver_run's thread after mserver_reload; NULL: ignored. */
    void (*reload)(void);
};

struct mserver;

/* Binds the socket (as root, before privileges are dropped) with
 * listener_open(): a unix socket file left by a dead process is replaced, one
 * another process still listens on is not (an error). NULL with a message in
 * err. */
struct mserver *mserver_open(const struct mserver_config *cfg, char *err, size_t errlen);

/* Serves until mserver_stop is called. Returns 0, or -1 with a message in
 * err. Sessions go on running after it returns; mserver_close ends them.
 * The threads of ended sessions are joined here as they end (the rest by
 * mserver_close), so call both from the same thread. */
int mserver_run(struct mserver *srv, char *err, size_t errlen);
/* Ask mserver_run to return, or to call the reload callback. Async-signal-
 * safe, never block, keep errno; asking again before it is served is the
 * same as asking once. */
void mserver_stop(struct mserver *srv);
void mserver_reload(struct mserver *srv);
/* Installs the daemon's handlers: SIGTERM and SIGINT stop, SIGHUP reloads,
 * SIGPIPE is ignored. Returns 0 or -1 (errno). */
int mserver_catch_signals(struct mserver *srv);
/* Shuts down after mserver_run returned: stops accepting, ends sessions
 * waiting outside a message at once, lets those inside one finish it for up
 * to cfg.shutdown_ms, then shuts their sockets and waits a few seconds more.
 * Frees the server and returns 0 when every session ended and its thread
 * was joined (no thread of the server runs any more, so the caller may exit
 * and run exit handlers); otherwise leaves it (sessions still use it) and
 * returns -1: the caller exits without exit handlers (_exit). *srv is set
 * to NULL either way. */
int mserver_close(struct mserver **srv);

#endif
