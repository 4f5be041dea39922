/* mserver: the milter server: listening socket, one thread per Postfix
 * connection, buffered reads, and the session API the callbacks use (the
 * counterparts of libmilter's smfi_getsymval, smfi_setreply, smfi_delrcpt,
 * smfi_chgfrom and smfi_insheader). See mproto.h for why not libmilter.
 *
 * A session's callbacks run on its own thread, one after another; sessions
 * run concurrently.
 */
#ifndef FILTERMAIL_MSERVER_H
#define FILTERMAIL_MSERVER_H

#include <stddef.h>
#include <stdint.h>

struct msess;

/* What a callback answers. MS_NOREPLY for commands negotiated without reply. */
enum mstatus {
    MS_CONTINUE,
    MS_ACCEPT,
    MS_REJECT,   /* with the reply set by msess_setreply, else Postfix's default 5xx */
    MS_TEMPFAIL, /* likewise 4xx */
    MS_DISCARD,
    MS_NOREPLY,
};

struct mserver_callbacks {
    /* Start of a connection (after negotiation); may set the private data. */
    enum mstatus (*connect)(struct msess *s);
    enum mstatus (*envfrom)(struct msess *s, const char *sender);
    enum mstatus (*envrcpt)(struct msess *s, const char *rcpt);
    enum mstatus (*header)(struct msess *s, const char *name, const char *value);
    enum mstatus (*body)(struct msess *s, const unsigned char *data, size_t len);
    enum mstatus (*eom)(struct msess *s);
    void (*abort)(struct msess *s);
    /* End of a connection: free the private data. */
    void (*close)(struct msess *s);
};

struct mserver_config {
    const char *socket_spec;   /* unix:PATH, local:PATH, inet:PORT@HOST, inet6:PORT@HOST */
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
    /* Called by mserver_run's thread at least every tick_ms milliseconds
     * while it serves (a watchdog ping: the accept loop is alive); 0 or a
     * NULL tick: never. */
    unsigned tick_ms;
    void (*tick)(void);
    /* Called by mserver_run's thread after mserver_reload; NULL: ignored. */
    void (*reload)(void);
};

struct mserver;

/* Binds the socket (as root, before privileges are dropped). NULL with a
 * message in err. A unix socket's file is replaced when it is a socket. */
struct mserver *mserver_open(const struct mserver_config *cfg, char *err, size_t errlen);

/* Serves until mserver_stop is called. Returns 0, or -1 with a message in
 * err. Sessions go on running after it returns; mserver_close ends them. */
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
 * Frees the server and returns 0 when every session ended; otherwise leaves
 * it (sessions still use it) and returns -1: the caller exits. *srv is set to
 * NULL either way. */
int mserver_close(struct mserver **srv);

/* The session API. */
void *msess_getpriv(struct msess *s);
void msess_setpriv(struct msess *s, void *priv);
uint32_t msess_protocol(const struct msess *s); /* the negotiated SMFIP_* flags */
const char *msess_getsymval(struct msess *s, const char *name);
/* At end of message only. Return 0, or -1 when out of memory. */
int msess_setreply(struct msess *s, const char *code, const char *xcode, const char *text);
int msess_delrcpt(struct msess *s, const char *rcpt);
int msess_chgfrom(struct msess *s, const char *from);
int msess_insheader(struct msess *s, uint32_t idx, const char *name, const char *value);

#endif
