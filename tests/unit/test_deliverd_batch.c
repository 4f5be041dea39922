/* Tests for deliverd/batch.c: who leads, who joins, when a batch may go,
 * what the members learn, and the limits, with real threads. */
#include "batch.h"
#include "unit.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "clock.h"

static struct batch_key key_of(const char *qid, const char *domain)
{
    struct batch_key k;
    memset(&k, 0, sizeof(k));
    snprintf(k.queue_id, sizeof(k.queue_id), "%s", qid);
    snprintf(k.sender, sizeof(k.sender), "a@example.org");
    snprintf(k.domain, sizeof(k.domain), "%s", domain);
    k.size = 2048;
    k.digest[0] = 7;
    return k;
}

static int64_t in_ms(int ms)
{
    return (int64_t)clock_mono_ms() + ms;
}

static void test_lone_delivery_goes_at_once(void)
{
    struct batcher *b = batcher_new();
    struct batch_key k = key_of("Q1", "example.net");
    bool leader = false;
    struct batch *bt = batch_join(b, &k, "bob@example.net", &leader);
    CHECK(bt != NULL && leader);
    int64_t t0 = (int64_t)clock_mono_ms();
    size_t n = 0;
    const char *const *r = batch_close(b, bt, in_ms(5000), &n);
    CHECK((int64_t)clock_mono_ms() - t0 < 1000);
    CHECK_INT(n, 1);
    CHECK_STR(r[0], "bob@example.net");
    /* Closed: the next one of its kind leads a batch of its own. */
    bool l2 = false;
    struct batch *b2 = batch_join(b, &k, "carol@example.net", &l2);
    CHECK(b2 != NULL && b2 != bt && l2);
    batch_release(b, &b2);
    batch_release(b, &bt);
    CHECK(bt == NULL);
    batcher_free(&b);
}

struct closer {
    struct batcher *b;
    struct batch *bt;
    size_t n;
    int64_t returned;
};

static void *close_thread(void *arg)
{
    struct closer *c = arg;
    batch_close(c->b, c->bt, in_ms(5000), &c->n);
    c->returned = (int64_t)clock_mono_ms();
    return NULL;
}

static void test_batch_waits_for_the_one_under_way_and_members_learn_the_outcome(void)
{
    struct batcher *b = batcher_new();
    struct batch_key k = key_of("Q2", "example.net"), other = key_of("Q2", "example.com");
    bool leader;
    size_t n;
    struct batch *a = batch_join(b, &k, "a1@example.net", &leader);
    CHECK(leader);
    batch_close(b, a, in_ms(5000), &n); /* under way */

    struct batch *nb = batch_join(b, &k, "b1@example.net", &leader);
    CHECK(nb != NULL && nb != a && leader);
    struct batch *m1 = batch_join(b, &k, "b2@example.net", &leader);
    CHECK(m1 == nb && !leader);
    struct batch *m2 = batch_join(b, &k, "b3@example.net", &leader);
    CHECK(m2 == nb && !leader);
    /* Another domain of the same message is another batch. */
    struct batch *o = batch_join(b, &other, "x@example.com", &leader);
    CHECK(o != NULL && o != nb && leader);

    struct closer c = {.b = b, .bt = nb};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, close_thread, &c) == 0);
    usleep(100 * 1000);
    CHECK_INT(c.returned, 0); /* still waiting for the first batch */
    int64_t finished = (int64_t)clock_mono_ms();
    struct outcome ok;
    struct deliver_report rep;
    memset(&rep, 0, sizeof(rep));
    snprintf(rep.relay, sizeof(rep.relay), "mx.example.net[192.0.2.1]:443");
    outcome_set(&ok, OUTCOME_DELIVERED, "2.0.0", "delivered via HTTPS");
    batch_finish(b, a, &ok, &rep);
    pthread_join(t, NULL);
    CHECK(c.returned >= finished);
    CHECK_INT(c.n, 3);

    struct outcome refused, got;
    struct deliver_report grep;
    outcome_set(&refused, OUTCOME_TEMPFAIL, "4.0.0", "1 of 3 recipients refused");
    batch_finish(b, nb, &refused, &rep);
    CHECK_INT(batch_wait(b, m1, in_ms(1000), &got, &grep), 0);
    CHECK_INT(got.cls, OUTCOME_TEMPFAIL);
    CHECK_STR(got.text, "1 of 3 recipients refused");
    CHECK_STR(grep.relay, "mx.example.net[192.0.2.1]:443");
    batch_release(b, &m1);
    batch_release(b, &m2);
    batch_release(b, &nb);
    batch_release(b, &a);
    batch_release(b, &o);
    batcher_free(&b);
}

static void test_limits_and_deadline(void)
{
    struct batcher *b = batcher_new();
    struct batch_key k = key_of("Q3", "example.net");
    bool leader;
    size_t n;
    struct batch *a = batch_join(b, &k, "first@example.net", &leader);
    batch_close(b, a, in_ms(5000), &n);
    struct batch *held[BATCH_MAX_RCPTS + 1];
    char addr[BATCH_MAX_RCPTS + 1][40];
    for (int i = 0; i <= BATCH_MAX_RCPTS; i++) {
        snprintf(addr[i], sizeof(addr[i]), "u%d@example.net", i);
        held[i] = batch_join(b, &k, addr[i], &leader);
        CHECK(held[i] != NULL);
        CHECKF(leader == (i == 0 || i == BATCH_MAX_RCPTS), "join %d: leader %d", i, leader);
    }
    CHECK(held[BATCH_MAX_RCPTS] != held[0]); /* full: a new batch */
    /* Long addresses: the header budget closes a batch before the count. */
    static char longaddr[ENVELOPE_ADDRESS_MAX + 1];
    memset(longaddr, 'l', ENVELOPE_ADDRESS_MAX - 12);
    strcpy(longaddr + ENVELOPE_ADDRESS_MAX - 12, "@example.org");
    struct batch_key lk = key_of("Q4", "example.org");
    struct batch *la = batch_join(b, &lk, longaddr, &leader);
    batch_close(b, la, in_ms(5000), &n);
    struct batch *lb = batch_join(b, &lk, longaddr, &leader);
    CHECK(leader);
    size_t cost = strlen(longaddr) + strlen("X-Mail-To: \r\n"), joined = 1;
    struct batch *extra[BATCH_MAX_RCPTS];
    size_t nextra = 0;
    for (;;) {
        struct batch *x = batch_join(b, &lk, longaddr, &leader);
        extra[nextra++] = x;
        if (x != lb) {
            CHECK(leader); /* the budget is spent: a new batch */
            break;
        }
        joined++;
        CHECK(joined * cost <= BATCH_MAX_BYTES);
        if (nextra == BATCH_MAX_RCPTS)
            break;
    }
    CHECKF((joined + 1) * cost > BATCH_MAX_BYTES, "%zu long addresses in one batch", joined);
    for (size_t i = 0; i < nextra; i++)
        batch_release(b, &extra[i]);
    /* A member's wait is bounded by its deadline. */
    struct outcome o;
    struct deliver_report rep;
    CHECK_INT(batch_wait(b, held[1], in_ms(50), &o, &rep), -1);
    for (int i = 0; i <= BATCH_MAX_RCPTS; i++)
        batch_release(b, &held[i]);
    batch_release(b, &a);
    batch_release(b, &la);
    batch_release(b, &lb);
    batcher_free(&b);
}

int main(void)
{
    UNIT_RUN(test_lone_delivery_goes_at_once);
    UNIT_RUN(test_batch_waits_for_the_one_under_way_and_members_learn_the_outcome);
    UNIT_RUN(test_limits_and_deadline);
    return unit_summary();
}
