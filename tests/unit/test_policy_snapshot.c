/* Tests for policyd/snapshot.c: the state file written in this process and
 * in the background, read back, a failing disk, and persistence off. */
#include "snapshot.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"

#define S CLOCK_NS_PER_SEC

static struct ratelimit *limiter(void)
{
    struct ratelimit_config c = {.per_minute = 60, .burst = 3, .seed = {7, 8}};
    return ratelimit_new(&c);
}

/* Spends sender's whole burst at now. */
static void spend(struct ratelimit *rl, const char *sender, uint64_t now)
{
    for (int i = 0; i < 3; i++) {
        char inst[16];
        struct ratelimit_request req = {"smtpd_access_policy", sender, NULL, inst};
        struct ratelimit_decision d;
        snprintf(inst, sizeof(inst), "i%d", i);
        ratelimit_decide(rl, NULL, &req, now, &d);
    }
}

static bool limited(struct ratelimit *rl, const char *sender, uint64_t now)
{
    struct ratelimit_request req = {"smtpd_access_policy", sender, NULL, "x"};
    struct ratelimit_decision d;
    ratelimit_decide(rl, NULL, &req, now, &d);
    return d.verdict == RATELIMIT_LIMITED;
}

static void test_round_trip(void)
{
    char dir[] = "/tmp/filtermail-snap-XXXXXX", path[128];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/ratelimit.state", dir);
    struct snapshot *s = snapshot_new(path);
    struct ratelimit *rl = limiter(), *back = limiter();
    uint64_t now = clock_mono_ns(), wall = clock_wall_ns();

    CHECK(!snapshot_dirty(s));
    CHECK_INT(snapshot_load(s, back, now, wall), 0); /* no file yet */
    spend(rl, "a@x.org", now);
    snapshot_touch(s);
    CHECK(snapshot_dirty(s));
    CHECK_INT(snapshot_save(s, rl, "test"), 0);
    CHECK(!snapshot_dirty(s));
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    CHECK_INT(snapshot_load(s, back, now, wall), 1);
    CHECK(limited(back, "a@x.org", now));
    CHECK(!limited(back, "b@x.org", now));
    ratelimit_free(&back);

    /* In the background: the tick reaps the writer. */
    spend(rl, "b@x.org", now);
    snapshot_touch(s);
    snapshot_save_background(s, rl, "test");
    CHECK(!snapshot_dirty(s));
    for (int i = 0; i < 200 && access(path, F_OK) == 0; i++) {
        snapshot_tick(s, rl, now);
        struct timespec ms = {.tv_nsec = 10 * 1000000};
        nanosleep(&ms, NULL);
    }
    snapshot_free(&s); /* waits for the writer */
    CHECK(s == NULL);
    s = snapshot_new(path);
    back = limiter();
    CHECK_INT(snapshot_load(s, back, now, wall), 2);
    CHECK(limited(back, "b@x.org", now));
    ratelimit_free(&back);

    /* A file that is not a snapshot is ignored, and the start goes on. */
    FILE *f = fopen(path, "w");
    fputs("garbage\n", f);
    fclose(f);
    back = limiter();
    CHECK_INT(snapshot_load(s, back, now, wall), 0);
    CHECK(!limited(back, "a@x.org", now));
    ratelimit_free(&back);
    snapshot_free(&s);

    /* A directory that is gone: the save fails, and the table stays dirty
     * for the next try. */
    unlink(path);
    rmdir(dir);
    s = snapshot_new(path);
    snapshot_touch(s);
    CHECK_INT(snapshot_save(s, rl, "test"), -1);
    CHECK(snapshot_dirty(s));
    snapshot_save_background(s, rl, "test");
    snapshot_free(&s);
    ratelimit_free(&rl);
}

static void test_off(void)
{
    struct snapshot *s = snapshot_new("");
    struct ratelimit *rl = limiter();
    snapshot_touch(s);
    CHECK_INT(snapshot_save(s, rl, "test"), 0);
    snapshot_save_background(s, rl, "test");
    snapshot_tick(s, rl, 100 * S);
    CHECK_INT(snapshot_load(s, rl, 0, 0), 0);
    snapshot_free(&s);
    ratelimit_free(&rl);
}

int main(void)
{
    UNIT_RUN(test_round_trip);
    UNIT_RUN(test_off);
    return unit_summary();
}
