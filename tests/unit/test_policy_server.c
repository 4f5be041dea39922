/* Tests for policyd/server.c: the connection state machine driven through a
 * real unix socket (requests answered on one connection, a malformed one
 * closing it, a peer gone), and which decisions touch the local table for
 * the snapshot: local checks do, checks answered by Redis do not (they once
 * marked the table changed on every message, rewriting the unchanged state
 * file every minute). */
#include "listener.h"
#include "redis_server.h"
#include "server.h"
#include "snapshot.h"
#include "unit.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char dir[64];
static struct redis_server rs;
static bool redis_up;

static struct ratelimit *limiter(uint32_t burst)
{
    struct ratelimit_config c = {.per_minute = 1, .burst = burst, .seed = {1, 2}};
    return ratelimit_new(&c);
}

struct rig {
    struct listener lsn;
    struct server *srv;
    struct snapshot *snap;
};

static bool rig_start(struct rig *r, const struct redislimit_target *redis, uint32_t burst)
{
    char spec[128], err[256];
    struct listener_addr a;
    snprintf(dir, sizeof(dir), "/tmp/filtermail-server-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return false;
    snprintf(spec, sizeof(spec), "unix:%s/p.sock", dir);
    if (listener_parse(spec, &a, err, sizeof(err)) < 0 ||
        listener_open(&r->lsn, &a, 16, SOCK_NONBLOCK, err, sizeof(err)) < 0)
        return false;
    r->snap = snapshot_new("");
    struct server_params p = {.listen_fd = r->lsn.fd, .rl = limiter(burst), .redis = redis,
                              .snap = r->snap};
    r->srv = server_new(&p, err, sizeof(err));
    CHECKF(r->srv != NULL, "%s", err);
    return r->srv != NULL;
}

static void rig_stop(struct rig *r)
{
    server_free(&r->srv);
    snapshot_free(&r->snap);
    listener_close(&r->lsn);
    rmdir(dir);
}

static int client(struct rig *r)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", r->lsn.addr.path);
    CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
    return fd;
}

/* Runs the loop until fd has a whole answer (a line and an empty line) or
 * is closed; returns it ("" when closed). */
static const char *exchange(struct rig *r, int fd, const char *request)
{
    static char buf[2048];
    size_t have = 0;

    if (request != NULL)
        CHECK(write(fd, request, strlen(request)) == (ssize_t)strlen(request));
    buf[0] = '\0';
    for (int i = 0; i < 300; i++) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        server_poll(r->srv);
        if (poll(&p, 1, 0) == 1) {
            ssize_t n = read(fd, buf + have, sizeof(buf) - 1 - have);
            if (n <= 0)
                return "";
            have += (size_t)n;
            buf[have] = '\0';
            if (strstr(buf, "\n\n") != NULL)
                return buf;
        }
    }
    return "(no answer)";
}

static const char *ask(struct rig *r, int fd, const char *sender, const char *instance)
{
    char req[512];
    snprintf(req, sizeof(req),
             "request=smtpd_access_policy\nprotocol_state=RCPT\nsender=%s\n"
             "sasl_username=%s\ninstance=%s\n\n",
             sender, sender, instance);
    return exchange(r, fd, req);
}

static void test_local(void)
{
    struct rig r;
    if (!rig_start(&r, NULL, 2))
        return;
    int fd = client(&r);
    CHECK(!snapshot_dirty(r.snap));
    CHECK_STR(ask(&r, fd, "a@x.org", "i1"), "action=DUNNO\n\n");
    CHECK(snapshot_dirty(r.snap)); /* the local table changed */
    /* The same message (instance) again costs nothing. */
    CHECK_STR(ask(&r, fd, "a@x.org", "i1"), "action=DUNNO\n\n");
    CHECK_STR(ask(&r, fd, "a@x.org", "i2"), "action=DUNNO\n\n");
    const char *limited = ask(&r, fd, "a@x.org", "i3");
    CHECKF(strncmp(limited, "action=450 ", 11) == 0, "%s", limited);
    /* A malformed request closes the connection; others are unharmed. */
    int other = client(&r);
    CHECK_STR(exchange(&r, other, "no equals sign\n\n"), "");
    close(other);
    CHECK_STR(ask(&r, fd, "b@x.org", "j1"), "action=DUNNO\n\n");
    /* Several requests in one write are answered in order. */
    const char *two = exchange(&r, fd,
                               "request=smtpd_access_policy\nsender=c@x.org\ninstance=k1\n\n"
                               "request=smtpd_access_policy\nsender=c@x.org\ninstance=k2\n\n");
    if (strcmp(two, "action=DUNNO\n\naction=DUNNO\n\n") != 0) {
        /* The second answer may come in a later read. */
        CHECK_STR(two, "action=DUNNO\n\n");
        CHECK_STR(exchange(&r, fd, NULL), "action=DUNNO\n\n");
    }
    close(fd);
    rig_stop(&r);
}

static void test_redis_leaves_local_table_alone(void)
{
    struct redislimit_target t;
    char url[128], err[128];
    struct rig r;

    if (!redis_up) {
        CHECKF(0, "no redis-server to test with");
        return;
    }
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/5", rs.port);
    CHECK(redislimit_parse_url(url, &t, err, sizeof(err)) == 0);
    if (!rig_start(&r, &t, 2))
        return;
    CHECK(server_shared(r.srv));
    int fd = client(&r);
    /* The first ticks connect to Redis. */
    for (int i = 0; i < 20; i++)
        server_poll(r.srv);
    CHECK_STR(ask(&r, fd, "shared@x.org", "s1"), "action=DUNNO\n\n");
    CHECK_STR(ask(&r, fd, "shared@x.org", "s2"), "action=DUNNO\n\n");
    const char *limited = ask(&r, fd, "shared@x.org", "s3");
    CHECKF(strncmp(limited, "action=450 ", 11) == 0, "%s", limited);
    CHECK(!snapshot_dirty(r.snap));
    /* Redis gone: the local fallback decides, and that is a change. */
    redis_server_stop(&rs);
    redis_up = false;
    const char *fb = ask(&r, fd, "local@x.org", "f1");
    CHECK_STR(fb, "action=DUNNO\n\n");
    CHECK(snapshot_dirty(r.snap));
    close(fd);
    rig_stop(&r);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    redis_up = redis_server_init(&rs) == 0 && redis_server_start(&rs) == 0;
    UNIT_RUN(test_local);
    UNIT_RUN(test_redis_leaves_local_table_alone);
    if (redis_up)
        redis_server_stop(&rs);
    redis_server_cleanup(&rs);
    return unit_summary();
}
