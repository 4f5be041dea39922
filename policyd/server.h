/* server: filtermail-policyd's event loop and connection state machine.
 *
 * One thread, one epoll loop: Postfix's smtpd processes each keep a connection
 * open and send one request at a time; a request is parsed as its bytes
 * arrive (common/policy_proto.c), decided by the pure core (ratelimit.c, or
 * the Redis script in redislimit.c, whose connection this loop also drives),
 * and answered with one write. Nothing blocks: a slow or broken client costs
 * only its own connection, which is closed on malformed input, after a request
 * left unfinished for SERVER_REQUEST_TIMEOUT, or after SERVER_IDLE_TIMEOUT
 * without one. Connections wait in two lists ordered by deadline (each list
 * has one timeout, so appending keeps it sorted).
 *
 * Logs (filtermail::policyd, and rate-limit hits as filtermail::outbound,
 * upstream's target). Not thread-safe: one loop per process.
 */
#ifndef FILTERMAIL_POLICYD_SERVER_H
#define FILTERMAIL_POLICYD_SERVER_H

#include <stdbool.h>
#include <stdint.h>

#include "ratelimit.h"
#include "redislimit.h"
#include "snapshot.h"

/* Connections served at once; Postfix opens one per smtpd process. */
#define SERVER_MAX_CONNS 10000
/* Longer than Postfix's smtpd_policy_service_max_idle (300 s), so that
 * Postfix, not we, closes an idle connection and never races a request. */
#define SERVER_IDLE_TIMEOUT 330
/* Postfix writes a request at once; one begun but not finished this long
 * after is from something else. */
#define SERVER_REQUEST_TIMEOUT 10

struct server_params {
    int listen_fd;                         /* listening, non-blocking */
    struct ratelimit *rl;                  /* taken over */
    const struct redislimit_target *redis; /* NULL: the state is in this process */
    bool fallback_defer;                   /* Redis unavailable: 451 instead of local */
    struct snapshot *snap;                 /* told when the local table changes */
};

struct server;

/* The loop, with the listener and (if any) the Redis client registered.
 * Returns NULL with a message in err. */
struct server *server_new(const struct server_params *p, char *err, size_t errlen);

/* Closes every connection and the Redis client, frees the limiter; sets *sp
 * to NULL. NULL-safe. */
void server_free(struct server **sp);

/* Adds fd (a signalfd) to the loop: server_poll then says when it is
 * readable. Returns 0 or -1 (errno). */
int server_watch(struct server *s, int fd);

/* Waits for events (at most until the next tick, a second or a tenth with
 * Redis), handles them, and runs the tick when due (timeouts, Redis
 * reconnects, table sweep, snapshot, watchdog). Returns true when the
 * watched fd is readable. */
bool server_poll(struct server *s);

/* The limiter in use. */
struct ratelimit *server_ratelimit(struct server *s);

/* Replaces the limiter (a reload), freeing the old one. */
void server_set_ratelimit(struct server *s, struct ratelimit *rl);

/* True when the state lives in Redis. */
bool server_shared(const struct server *s);

#endif
