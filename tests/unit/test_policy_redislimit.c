/* Tests for policyd/redislimit.c against a real redis-server, which this
 * program starts on a free loopback port (and a unix socket) in a temporary
 * directory and stops at the end; tests/deps.sh installs it. The GCRA step,
 * one charge per message, two "nodes" sharing a budget, the script cache
 * being flushed, AUTH and SELECT, a hung and a dead server, reconnecting. */
#include "redis_server.h"
#include "redislimit.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "clock.h"

#define MS 1000000ull
#define S 1000000000ull

static struct redis_server rs;

static uint64_t mono(void)
{
    return clock_mono_ns();
}

/* A synchronous connection for looking behind the module's back. */
static redisContext *sync_connect(void)
{
    return redis_server_connect(&rs);
}

static void redis_start(void)
{
    if (redis_server_start(&rs) < 0)
        exit(1);
}

static void redis_command(const char *cmd)
{
    redisContext *c = sync_connect();
    redisReply *r = c != NULL ? redisCommand(c, cmd) : NULL;
    CHECKF(r != NULL && r->type != REDIS_REPLY_ERROR, "%s", cmd);
    freeReplyObject(r);
    redisFree(c);
}

static long long redis_integer(const char *cmd)
{
    redisContext *c = sync_connect();
    redisReply *r = c != NULL ? redisCommand(c, cmd) : NULL;
    long long v = r != NULL && r->type == REDIS_REPLY_INTEGER ? r->integer : -999;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* ---- A small poll loop standing in for the daemon's epoll. */

struct loop {
    int fd;
    bool rd, wr;
    uint64_t skew; /* added to the clock: time travel for timeouts */
    int logged_errors;
};

static void loop_watch(void *arg, int fd, bool rd, bool wr)
{
    struct loop *l = arg;
    l->fd = (rd || wr) ? fd : -1;
    l->rd = rd;
    l->wr = wr;
}

static void loop_log(void *arg, enum log_level level, const char *text)
{
    struct loop *l = arg;
    if (level == LOGL_ERROR)
        l->logged_errors++;
    if (getenv("TEST_VERBOSE") != NULL)
        fprintf(stderr, "  [log %d] %s\n", (int)level, text);
}

static uint64_t loop_now(struct loop *l)
{
    return mono() + l->skew;
}

/* Runs the loop once (up to ms milliseconds of waiting). */
static void loop_once(struct redislimit *r, struct loop *l, int ms)
{
    struct pollfd p = {.fd = l->fd,
                       .events = (short)((l->rd ? POLLIN : 0) | (l->wr ? POLLOUT : 0))};
    if (l->fd >= 0 && poll(&p, 1, ms) > 0)
        redislimit_handle(r, (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0,
                          (p.revents & (POLLOUT | POLLERR)) != 0);
    else if (l->fd < 0)
        usleep((useconds_t)ms * 1000);
    redislimit_tick(r, loop_now(l));
}

static bool wait_ready(struct redislimit *r, struct loop *l)
{
    uint64_t end = mono() + 5 * S;
    while (!redislimit_ready(r) && mono() < end)
        loop_once(r, l, 10);
    return redislimit_ready(r);
}

struct result {
    bool done;
    int calls;
    enum redislimit_result res;
    uint64_t wait;
};

static void on_done(void *arg, enum redislimit_result res, uint64_t wait_ns)
{
    struct result *x = arg;
    x->done = true;
    x->calls++;
    x->res = res;
    x->wait = wait_ns;
}

/* One check, run to completion. Returns ALLOWED/LIMITED/UNAVAILABLE, or -1
 * when the module said at once that Redis is not ready. */
static int check(struct redislimit *r, struct loop *l, const char *key, const char *inst,
                 uint64_t *wait_r)
{
    struct result x = {0};
    uint64_t end = mono() + 5 * S;

    if (redislimit_check(r, key, strlen(key), inst, loop_now(l), on_done, &x) == NULL)
        return -1;
    while (!x.done && mono() < end)
        loop_once(r, l, 10);
    CHECK(x.done);
    CHECK_INT(x.calls, 1);
    if (wait_r != NULL)
        *wait_r = x.wait;
    return x.done ? (int)x.res : -2;
}

static struct redislimit *limiter(const char *url, uint32_t per_minute, uint32_t burst,
                                  struct loop *l)
{
    struct redislimit_target t;
    struct gcra g;
    char err[256];

    memset(l, 0, sizeof(*l));
    l->fd = -1;
    if (redislimit_parse_url(url, &t, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", url, err);
        abort();
    }
    gcra_init(&g, per_minute, burst);
    return redislimit_new(&t, &g, loop_watch, loop_log, l);
}

static char url[256];

static const char *tcp_url(int db)
{
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/%d", rs.port, db);
    return url;
}

/* ---- Tests */

static void test_script_sha1(void)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    char hex[41];

    CHECK(EVP_Digest(REDISLIMIT_SCRIPT, strlen(REDISLIMIT_SCRIPT), md, &n, EVP_sha1(), NULL) == 1);
    for (unsigned i = 0; i < 20; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    CHECK_STR(hex, REDISLIMIT_SCRIPT_SHA1);
}

static void test_url(void)
{
    static const struct {
        const char *url;
        int ok;
        bool unix_socket;
        const char *host;
        int port, db;
        const char *user, *password;
    } cases[] = {
        {"redis://127.0.0.1:6380/2", 1, false, "127.0.0.1", 6380, 2, "", ""},
        {"redis://localhost", 1, false, "localhost", 6379, 0, "", ""},
        {"redis://localhost/", 1, false, "localhost", 6379, 0, "", ""},
        {"redis://[::1]:7000/1", 1, false, "::1", 7000, 1, "", ""},
        {"redis://:s3cret@10.0.0.1:6379/0", 1, false, "10.0.0.1", 6379, 0, "", "s3cret"},
        {"redis://fm:p@ss@h:1", 1, false, "h", 1, 0, "fm", "p@ss"},
        {"unix:/run/redis/redis.sock", 1, true, "/run/redis/redis.sock", 0, 0, "", ""},
        {"unix:/run/redis.sock?db=4", 1, true, "/run/redis.sock", 0, 4, "", ""},
        {"unix:relative.sock", 0, false, "", 0, 0, "", ""},
        {"unix:/x?database=1", 0, false, "", 0, 0, "", ""},
        {"http://h:1", 0, false, "", 0, 0, "", ""},
        {"redis://", 0, false, "", 0, 0, "", ""},
        {"redis://h:0", 0, false, "", 0, 0, "", ""},
        {"redis://h:65536", 0, false, "", 0, 0, "", ""},
        {"redis://h:x", 0, false, "", 0, 0, "", ""},
        {"redis://h:1/x", 0, false, "", 0, 0, "", ""},
        {"redis://pw@h", 0, false, "", 0, 0, "", ""},
        {"redis://[::1", 0, false, "", 0, 0, "", ""},
        {"redis://[::1]x", 0, false, "", 0, 0, "", ""},
        {"", 0, false, "", 0, 0, "", ""},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct redislimit_target t;
        char err[128] = "";
        int rc = redislimit_parse_url(cases[i].url, &t, err, sizeof(err));
        CHECKF((rc == 0) == (cases[i].ok == 1), "%s: rc %d (%s)", cases[i].url, rc, err);
        if (rc != 0) {
            CHECKF(err[0] != '\0', "%s: no message", cases[i].url);
            CHECKF(strstr(err, "s3cret") == NULL, "%s", cases[i].url);
            continue;
        }
        CHECKF(t.unix_socket == cases[i].unix_socket, "%s", cases[i].url);
        CHECKF(strcmp(t.host, cases[i].host) == 0, "%s: host %s", cases[i].url, t.host);
        CHECKF(t.port == cases[i].port, "%s: port %d", cases[i].url, t.port);
        CHECKF(t.db == cases[i].db, "%s: db %d", cases[i].url, t.db);
        CHECKF(strcmp(t.user, cases[i].user) == 0, "%s: user", cases[i].url);
        CHECKF(strcmp(t.password, cases[i].password) == 0, "%s: password", cases[i].url);
    }
}

static void test_gcra_in_redis(void)
{
    struct loop l;
    struct redislimit *r = limiter(tcp_url(0), 60, 10, &l);
    uint64_t wait = 0;
    char inst[16];

    CHECK(!redislimit_ready(r));
    CHECK_INT(check(r, &l, "early@x", "", NULL), -1); /* not connected yet: fall back */
    CHECK(wait_ready(r, &l));
    for (int i = 0; i < 10; i++) {
        snprintf(inst, sizeof(inst), "m%d", i);
        CHECK_INT(check(r, &l, "burst@x", inst, NULL), REDISLIMIT_ALLOWED);
    }
    CHECK_INT(check(r, &l, "burst@x", "m10", &wait), REDISLIMIT_LIMITED);
    CHECKF(wait > 800 * MS && wait <= 1000 * MS, "wait %llu ns", (unsigned long long)wait);
    CHECK_INT(check(r, &l, "other@x", "o1", NULL), REDISLIMIT_ALLOWED);
    /* The key expires a minute after it is refilled. */
    long long pttl = redis_integer("PTTL filtermail:ratelimit:burst@x");
    CHECKF(pttl > 60000 && pttl <= 70000, "PTTL %lld", pttl);
    /* After the interval, one more. */
    usleep(1000 * 1000);
    CHECK_INT(check(r, &l, "burst@x", "m11", NULL), REDISLIMIT_ALLOWED);
    CHECK_INT(check(r, &l, "burst@x", "m12", NULL), REDISLIMIT_LIMITED);
    CHECK_INT(l.logged_errors, 0);
    redislimit_free(&r);
    CHECK(r == NULL);
}

static void test_one_charge_per_message(void)
{
    struct loop l;
    struct redislimit *r = limiter(tcp_url(0), 60, 2, &l);

    CHECK(wait_ready(r, &l));
    for (int rcpt = 0; rcpt < 50; rcpt++)
        CHECK_INT(check(r, &l, "fifty@x", "big", NULL), REDISLIMIT_ALLOWED);
    CHECK_INT(check(r, &l, "fifty@x", "second", NULL), REDISLIMIT_ALLOWED);
    /* A refused message stays refused for all its recipients. */
    for (int rcpt = 0; rcpt < 5; rcpt++)
        CHECK_INT(check(r, &l, "fifty@x", "third", NULL), REDISLIMIT_LIMITED);
    /* Without an instance every request is charged. */
    CHECK_INT(check(r, &l, "noinst@x", "", NULL), REDISLIMIT_ALLOWED);
    CHECK_INT(check(r, &l, "noinst@x", "", NULL), REDISLIMIT_ALLOWED);
    CHECK_INT(check(r, &l, "noinst@x", "", NULL), REDISLIMIT_LIMITED);
    redislimit_free(&r);
}

static void test_two_nodes_share(void)
{
    struct loop l1, l2;
    struct redislimit *a = limiter(tcp_url(0), 60, 10, &l1);
    struct redislimit *b = limiter(tcp_url(0), 60, 10, &l2);
    char inst[16];

    CHECK(wait_ready(a, &l1));
    CHECK(wait_ready(b, &l2));
    for (int i = 0; i < 10; i++) {
        snprintf(inst, sizeof(inst), "n%d", i);
        CHECK_INT(check(i % 2 ? a : b, i % 2 ? &l1 : &l2, "shared@x", inst, NULL),
                  REDISLIMIT_ALLOWED);
    }
    CHECK_INT(check(a, &l1, "shared@x", "n10", NULL), REDISLIMIT_LIMITED);
    CHECK_INT(check(b, &l2, "shared@x", "n11", NULL), REDISLIMIT_LIMITED);
    redislimit_free(&a);
    redislimit_free(&b);
}

static void test_database_and_unix_socket(void)
{
    struct loop l;
    struct redislimit *r = limiter(tcp_url(3), 60, 1, &l);

    CHECK(wait_ready(r, &l));
    CHECK_INT(check(r, &l, "db3@x", "1", NULL), REDISLIMIT_ALLOWED);
    CHECK_INT(redis_integer("EXISTS filtermail:ratelimit:db3@x"), 0);
    redislimit_free(&r);
    /* The same budget through the unix socket, selecting db 3. */
    snprintf(url, sizeof(url), "unix:%s?db=3", rs.sock);
    r = limiter(url, 60, 1, &l);
    CHECK(wait_ready(r, &l));
    CHECK_INT(check(r, &l, "db3@x", "2", NULL), REDISLIMIT_LIMITED);
    redislimit_free(&r);
}

static void test_script_flushed(void)
{
    struct loop l;
    struct redislimit *r = limiter(tcp_url(0), 60, 1, &l);

    CHECK(wait_ready(r, &l));
    CHECK_INT(check(r, &l, "flush@x", "1", NULL), REDISLIMIT_ALLOWED);
    redis_command("SCRIPT FLUSH");
    /* NOSCRIPT: sent again with EVAL, which also caches it again. */
    CHECK_INT(check(r, &l, "flush@x", "2", NULL), REDISLIMIT_LIMITED);
    CHECK_INT(check(r, &l, "flush2@x", "1", NULL), REDISLIMIT_ALLOWED);
    CHECK_INT(l.logged_errors, 0);
    redislimit_free(&r);
}

static void test_auth(void)
{
    struct loop l;
    struct redislimit *r;

    redis_command("CONFIG SET requirepass s3cret");
    snprintf(url, sizeof(url), "redis://:s3cret@127.0.0.1:%d/0", rs.port);
    r = limiter(url, 60, 1, &l);
    CHECK(wait_ready(r, &l));
    CHECK_INT(check(r, &l, "auth@x", "1", NULL), REDISLIMIT_ALLOWED);
    redislimit_free(&r);
    /* A wrong password: never ready, errors logged, checks fall back. */
    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/0", rs.port);
    r = limiter(url, 60, 1, &l);
    for (int i = 0; i < 50; i++)
        loop_once(r, &l, 10);
    CHECK(!redislimit_ready(r));
    CHECK(l.logged_errors > 0);
    CHECK_INT(check(r, &l, "auth@x", "2", NULL), -1);
    redislimit_free(&r);
    /* Clear it (with the password the server now wants). */
    redisContext *c = sync_connect();
    redisReply *rep = redisCommand(c, "AUTH s3cret");
    freeReplyObject(rep);
    rep = redisCommand(c, "CONFIG SET requirepass %s", "");
    CHECK(rep != NULL && rep->type == REDIS_REPLY_STATUS);
    freeReplyObject(rep);
    redisFree(c);
}

static void test_cancel(void)
{
    struct loop l;
    struct redislimit *r = limiter(tcp_url(0), 60, 10, &l);
    struct result x = {0}, y = {0};
    struct redislimit_req *q;

    CHECK(wait_ready(r, &l));
    q = redislimit_check(r, "cancel@x", 8, "1", loop_now(&l), on_done, &x);
    CHECK(q != NULL);
    redislimit_cancel(q);
    CHECK(redislimit_check(r, "cancel@x", 8, "2", loop_now(&l), on_done, &y) != NULL);
    for (int i = 0; i < 500 && !y.done; i++)
        loop_once(r, &l, 10);
    CHECK(y.done);
    CHECK(!x.done);
    /* Freeing with a check in flight completes it as unavailable. */
    struct result z = {0};
    CHECK(redislimit_check(r, "cancel@x", 8, "3", loop_now(&l), on_done, &z) != NULL);
    redislimit_free(&r);
    CHECK(z.done);
    CHECK_INT(z.res, REDISLIMIT_UNAVAILABLE);
}

static void test_hung_server(void)
{
    struct loop l;
    struct redislimit *r = limiter(tcp_url(0), 60, 10, &l);
    struct result x = {0};

    CHECK(wait_ready(r, &l));
    kill(rs.pid, SIGSTOP);
    CHECK(redislimit_check(r, "hung@x", 6, "1", loop_now(&l), on_done, &x) != NULL);
    loop_once(r, &l, 50);
    CHECK(!x.done);
    /* A second later (by the clock given to tick) the connection is dropped. */
    l.skew = (REDISLIMIT_TIMEOUT_MS + 10) * MS;
    loop_once(r, &l, 1);
    CHECK(x.done);
    CHECK_INT(x.res, REDISLIMIT_UNAVAILABLE);
    CHECK(!redislimit_ready(r));
    CHECK_INT(check(r, &l, "hung@x", "2", NULL), -1);
    kill(rs.pid, SIGCONT);
    /* It reconnects after REDISLIMIT_RETRY_MS. */
    l.skew += (REDISLIMIT_RETRY_MS + 10) * MS;
    CHECK(wait_ready(r, &l));
    CHECK_INT(check(r, &l, "hung@x", "3", NULL), REDISLIMIT_ALLOWED);
    redislimit_free(&r);
}

static void test_dead_server(void)
{
    struct loop l;
    struct redislimit *r = limiter(tcp_url(0), 60, 1, &l);
    int rc;

    CHECK(wait_ready(r, &l));
    CHECK_INT(check(r, &l, "dead@x", "1", NULL), REDISLIMIT_ALLOWED);
    redis_server_stop(&rs);
    /* Either the module notices the close first, or the check does. */
    rc = check(r, &l, "dead@x", "2", NULL);
    CHECKF(rc == -1 || rc == REDISLIMIT_UNAVAILABLE, "rc %d", rc);
    for (int i = 0; i < 20; i++)
        loop_once(r, &l, 5);
    CHECK(!redislimit_ready(r));
    CHECK_INT(check(r, &l, "dead@x", "3", NULL), -1);
    /* Connection attempts while it is down fail quietly; then it is back. */
    l.skew += 2 * S;
    loop_once(r, &l, 5);
    CHECK(!redislimit_ready(r));
    redis_start(); /* a new, empty server on the same port */
    l.skew += 2 * S;
    CHECK(wait_ready(r, &l));
    CHECK_INT(check(r, &l, "dead@x", "4", NULL), REDISLIMIT_ALLOWED);
    redislimit_free(&r);
}

/* Redis's answer as a verdict: allowed passes, limited waits, unavailable
 * falls back and leaves the decision alone. */
static void test_decide(void)
{
    struct ratelimit_decision d = {.verdict = RATELIMIT_CHECK, .reason = RATELIMIT_R_ALLOWED};
    CHECK(redislimit_decide(REDISLIMIT_ALLOWED, 0, 5 * S, &d));
    CHECK_INT(d.verdict, RATELIMIT_PASS);
    CHECK_INT(d.reason, RATELIMIT_R_ALLOWED);
    d.verdict = RATELIMIT_CHECK;
    CHECK(redislimit_decide(REDISLIMIT_LIMITED, 3 * S, 5 * S, &d));
    CHECK_INT(d.verdict, RATELIMIT_LIMITED);
    CHECK_INT(d.reason, RATELIMIT_R_LIMITED);
    CHECK(d.allowed_at == 8 * S);
    d.verdict = RATELIMIT_CHECK;
    d.allowed_at = 0;
    CHECK(!redislimit_decide(REDISLIMIT_UNAVAILABLE, 3 * S, 5 * S, &d));
    CHECK_INT(d.verdict, RATELIMIT_CHECK);
    CHECK(d.allowed_at == 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (redis_server_init(&rs) < 0)
        return 1;
    redis_start();

    UNIT_RUN(test_decide);
    UNIT_RUN(test_script_sha1);
    UNIT_RUN(test_url);
    UNIT_RUN(test_gcra_in_redis);
    UNIT_RUN(test_one_charge_per_message);
    UNIT_RUN(test_two_nodes_share);
    UNIT_RUN(test_database_and_unix_socket);
    UNIT_RUN(test_script_flushed);
    UNIT_RUN(test_auth);
    UNIT_RUN(test_cancel);
    UNIT_RUN(test_hung_server);
    UNIT_RUN(test_dead_server);

    redis_server_cleanup(&rs);
    return unit_summary();
}
