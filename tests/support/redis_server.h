/* redis_server: a private redis-server for the tests and benchmarks that need
 * a real one (tests/unit/test_policy_redislimit.c, bench/bench_policyd.c).
 *
 * The server listens on a loopback port and a unix socket in its own
 * temporary directory, keeps nothing on disk, and dies with the process that
 * started it (PR_SET_PDEATHSIG), so a crashed test leaves no server behind.
 */
#ifndef FILTERMAIL_TEST_REDIS_SERVER_H
#define FILTERMAIL_TEST_REDIS_SERVER_H

#include <stdbool.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

struct redis_server {
    pid_t pid;      /* -1 when not running */
    int port;       /* loopback TCP port */
    char dir[64];   /* its working directory */
    char sock[128]; /* its unix socket, in dir */
    int cpu;        /* pinned to this CPU when >= 0 (benchmarks) */
};

/* A free loopback TCP port (bound once and released), or -1. */
int redis_server_free_port(void);

/* Prepares rs (a new directory and port) without starting it. Returns 0, or
 * -1 with a message on stderr. */
int redis_server_init(struct redis_server *rs);

/* Starts redis-server on rs's port and socket and waits (up to 5 s) until it
 * answers PING. A server started again after redis_server_stop() is a new,
 * empty one on the same port. Returns 0, or -1 with a message on stderr
 * (redis-server missing, exited, or silent). */
int redis_server_start(struct redis_server *rs);

/* Stops the server (resuming it first if it was stopped with SIGSTOP). */
void redis_server_stop(struct redis_server *rs);

/* Stops it and removes its directory. */
void redis_server_cleanup(struct redis_server *rs);

/* A synchronous connection to it (1 s timeout), or NULL. */
redisContext *redis_server_connect(const struct redis_server *rs);

#endif
