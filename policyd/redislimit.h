/* redislimit: the rate limit kept in Redis, so that several relay nodes share
 * each sender's budget (filtermail_ratelimit_redis).
 *
 * Every check is one atomic GCRA step done by a Lua script inside Redis
 * (REDISLIMIT_SCRIPT, run with EVALSHA; on NOSCRIPT it is sent once with
 * EVAL). The script keeps, per sender, a hash at "filtermail:ratelimit:<key>"
 * with the TAT in microseconds on the Redis server's clock (the one clock all
 * nodes share), the last message's instance and its verdict; the key expires
 * a minute after it is fully refilled.
 *
 * The connection is asynchronous (hiredis), so the event loop never waits for
 * Redis: the caller gives the module's socket to its poller through the watch
 * hook and calls redislimit_handle() when it is ready, and redislimit_tick()
 * a few times a second (reconnects, timeouts). A check that cannot be made
 * (not connected, a command timeout, an error reply) completes as
 * REDISLIMIT_UNAVAILABLE and the caller falls back (local limiting or 4xx).
 *
 * Not thread-safe: one event loop.
 */
#ifndef FILTERMAIL_REDISLIMIT_H
#define FILTERMAIL_REDISLIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gcra.h"
#include "log.h"
#include "ratelimit.h"

/* The script; its SHA-1 is REDISLIMIT_SCRIPT_SHA1 (checked by test_redislimit). */
extern const char REDISLIMIT_SCRIPT[];
#define REDISLIMIT_SCRIPT_SHA1 "463d725167df8f09448bd76569d840cdfa0c8729"

/* Keys are this prefix plus the sender's key. */
#define REDISLIMIT_KEY_PREFIX "filtermail:ratelimit:"

/* A command without a reply after this long drops the connection. */
#define REDISLIMIT_TIMEOUT_MS 1000
/* Least time between two connection attempts. */
#define REDISLIMIT_RETRY_MS 1000

/* Where Redis is: "redis://[[user]:password@]host[:port][/db]" (host may be
 * an [IPv6] literal; port 6379, db 0 by default) or "unix:/path[?db=N]". */
struct redislimit_target {
    bool unix_socket;
    char host[256]; /* or the socket path */
    int port;
    int db;
    char user[128];     /* "" for none */
    char password[256]; /* "" for none */
};

/* Parses a URL. Returns 0, or -1 with a message in err (which never repeats
 * the password). Pure. */
int redislimit_parse_url(const char *url, struct redislimit_target *t, char *err, size_t errlen);

enum redislimit_result {
    REDISLIMIT_ALLOWED,     /* one unit charged (or the same message was allowed) */
    REDISLIMIT_LIMITED,     /* over the limit; wait_ns says for how long */
    REDISLIMIT_UNAVAILABLE, /* no answer from Redis: fall back */
};

/* Called once per check that was started, unless it was cancelled. */
typedef void redislimit_done_fn(void *arg, enum redislimit_result result, uint64_t wait_ns);

/* Asks the caller to watch fd for reading and/or writing (both false: stop
 * watching; the fd is closed right after). */
typedef void redislimit_watch_fn(void *arg, int fd, bool read, bool write);

/* Reports connection events (up, down, errors) for the caller to log. */
typedef void redislimit_log_fn(void *arg, enum log_level level, const char *text);

struct redislimit;
struct redislimit_req;

/* A limiter for target with the given GCRA parameters. Connects at the first
 * tick. Returns NULL when out of memory. Free with redislimit_free. */
struct redislimit *redislimit_new(const struct redislimit_target *t, const struct gcra *g,
                                  redislimit_watch_fn *watch, redislimit_log_fn *log, void *arg);

/* Closes the connection; checks in flight complete as UNAVAILABLE. Sets *r to
 * NULL. NULL-safe. */
void redislimit_free(struct redislimit **r);

/* Reconnects when due, drops a connection whose oldest command is overdue. */
void redislimit_tick(struct redislimit *r, uint64_t now);

/* The socket given to the watch hook became readable and/or writable. */
void redislimit_handle(struct redislimit *r, bool readable, bool writable);

/* True when checks are sent to Redis (connected and the script loaded). */
bool redislimit_ready(const struct redislimit *r);

/* Starts a check of key (key_len bytes) for the message instance ("" when
 * none). Returns a handle, after which done(arg, ...) is called exactly once
 * from redislimit_handle/tick/free; or NULL when Redis is not ready (then
 * done is never called and the caller falls back at once). */
struct redislimit_req *redislimit_check(struct redislimit *r, const char *key, size_t key_len,
                                        const char *instance, uint64_t now,
                                        redislimit_done_fn *done, void *arg);

/* Forgets the caller of a check in flight: done will not be called. */
void redislimit_cancel(struct redislimit_req *q);

/* The verdict for the CHECK decision d from Redis's answer at now: ALLOWED
 * makes it PASS, LIMITED makes it LIMITED until now + wait_ns; both return
 * true. UNAVAILABLE returns false and leaves d alone (the caller falls back:
 * the local table, or 451). Pure. */
bool redislimit_decide(enum redislimit_result res, uint64_t wait_ns, uint64_t now,
                       struct ratelimit_decision *d);

#endif
