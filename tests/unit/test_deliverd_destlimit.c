/* Tests for deliverd/destlimit.c: places per domain, waiting, deadlines and
 * the hand-over of a freed place, with real threads. */
#include "destlimit.h"
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

static int64_t in_ms(int ms)
{
    return (int64_t)clock_mono_ms() + ms;
}

static void test_places_per_domain(void)
{
    struct destlimit *l = destlimit_new(2);
    CHECK_INT(destlimit_acquire(l, "b.test", in_ms(1000)), DESTLIMIT_TAKEN);
    CHECK_INT(destlimit_acquire(l, "B.TEST", in_ms(1000)), DESTLIMIT_TAKEN); /* ASCII case */
    /* The third waits out its deadline; another domain is not held up. */
    int64_t t0 = (int64_t)clock_mono_ms();
    CHECK_INT(destlimit_acquire(l, "b.test", in_ms(200)), DESTLIMIT_DEADLINE);
    CHECK((int64_t)clock_mono_ms() - t0 >= 190);
    CHECK_INT(destlimit_acquire(l, "c.test", in_ms(0)), DESTLIMIT_TAKEN);
    /* A place given back is there again. */
    destlimit_release(l, "b.test");
    CHECK_INT(destlimit_acquire(l, "b.test", in_ms(0)), DESTLIMIT_TAKEN);
    /* A name that does not fit the table goes unlimited. */
    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    CHECK_INT(destlimit_acquire(l, longname, in_ms(0)), DESTLIMIT_UNLIMITED);
    destlimit_release(l, longname); /* finds nothing: harmless */
    destlimit_release(l, "b.test");
    destlimit_release(l, "b.test");
    destlimit_release(l, "c.test");
    destlimit_release(l, "c.test"); /* one too many: harmless */
    CHECK_INT(destlimit_acquire(l, "c.test", in_ms(0)), DESTLIMIT_TAKEN);
    destlimit_release(l, "c.test");
    destlimit_free(&l);
    CHECK(l == NULL);
}

struct crowd {
    struct destlimit *l;
    atomic_int now, most, waited, failed;
};

static void *one_delivery(void *arg)
{
    struct crowd *c = arg;
    enum destlimit_result r = destlimit_acquire(c->l, "relay.test", in_ms(10000));
    if (r != DESTLIMIT_TAKEN && r != DESTLIMIT_WAITED) {
        atomic_fetch_add(&c->failed, 1);
        return NULL;
    }
    if (r == DESTLIMIT_WAITED)
        atomic_fetch_add(&c->waited, 1);
    int n = atomic_fetch_add(&c->now, 1) + 1;
    int m = atomic_load(&c->most);
    while (n > m && !atomic_compare_exchange_weak(&c->most, &m, n)) {
    }
    usleep(20 * 1000);
    atomic_fetch_sub(&c->now, 1);
    destlimit_release(c->l, "relay.test");
    return NULL;
}

/* 40 deliveries at once to one domain with 3 places: never more than 3 run,
 * every one gets its turn (a freed place wakes a waiter), none fails. */
static void test_crowd_takes_turns(void)
{
    struct crowd c = {.l = destlimit_new(3)};
    pthread_t t[40];
    for (size_t i = 0; i < 40; i++)
        pthread_create(&t[i], NULL, one_delivery, &c);
    for (size_t i = 0; i < 40; i++)
        pthread_join(t[i], NULL);
    CHECK_INT(atomic_load(&c.most), 3);
    CHECK_INT(atomic_load(&c.failed), 0);
    CHECK(atomic_load(&c.waited) >= 37 - 3);
    destlimit_free(&c.l);
}

struct waiter {
    struct destlimit *l;
    int64_t deadline;
    enum destlimit_result r;
};

static void *wait_one(void *arg)
{
    struct waiter *w = arg;
    w->r = destlimit_acquire(w->l, "x.test", w->deadline);
    if (w->r == DESTLIMIT_WAITED)
        destlimit_release(w->l, "x.test");
    return NULL;
}

/* A place freed while two wait, one of them at the end of its deadline: no
 * wake-up is lost, the other gets the place long before its own deadline. */
static void test_freed_place_not_lost(void)
{
    struct destlimit *l = destlimit_new(1);
    CHECK_INT(destlimit_acquire(l, "x.test", in_ms(0)), DESTLIMIT_TAKEN);
    struct waiter a = {.l = l, .deadline = in_ms(150)}, b = {.l = l, .deadline = in_ms(20000)};
    pthread_t ta, tb;
    pthread_create(&ta, NULL, wait_one, &a);
    pthread_create(&tb, NULL, wait_one, &b);
    usleep(150 * 1000);
    destlimit_release(l, "x.test");
    int64_t t0 = (int64_t)clock_mono_ms();
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK((int64_t)clock_mono_ms() - t0 < 5000);
    CHECK_INT(b.r, DESTLIMIT_WAITED);
    CHECK(a.r == DESTLIMIT_WAITED || a.r == DESTLIMIT_DEADLINE);
    CHECK_INT(destlimit_acquire(l, "x.test", in_ms(0)), DESTLIMIT_TAKEN);
    destlimit_release(l, "x.test");
    destlimit_free(&l);
}

int main(void)
{
    UNIT_RUN(test_places_per_domain);
    UNIT_RUN(test_crowd_takes_turns);
    UNIT_RUN(test_freed_place_not_lost);
    return unit_summary();
}
