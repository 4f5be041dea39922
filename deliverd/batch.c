/* batch: the table of batches under way, and their hand-over. */
#include "batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

struct batch {
    struct batch_key key;
    bool closed;   /* sent or being sent: nobody joins any more */
    bool done;     /* the outcome is there */
    unsigned refs; /* the leader and the members not yet released */
    size_t n, bytes, used;
    const char *rcpts[BATCH_MAX_RCPTS];
    char pool[BATCH_MAX_BYTES]; /* the recipients' copies: a member that gave
                                   up waiting takes its own string with it */
    struct outcome out;
    struct deliver_report rep;
};

struct batcher {
    pthread_mutex_t mu;
    pthread_cond_t changed; /* a batch was closed or finished */
    struct batch *slot[BATCH_SLOTS];
};

struct batcher *batcher_new(void)
{
    struct batcher *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->changed, &ca);
    pthread_condattr_destroy(&ca);
    return b;
}

void batcher_free(struct batcher **b)
{
    if (*b == NULL)
        return;
    for (size_t i = 0; i < BATCH_SLOTS; i++)
        free((*b)->slot[i]);
    pthread_mutex_destroy(&(*b)->mu);
    pthread_cond_destroy(&(*b)->changed);
    free(*b);
    *b = NULL;
}

static bool same_key(const struct batch_key *a, const struct batch_key *b)
{
    return a->size == b->size && memcmp(a->digest, b->digest, sizeof(a->digest)) == 0 &&
           strcmp(a->queue_id, b->queue_id) == 0 && strcmp(a->sender, b->sender) == 0 &&
           strcmp(a->domain, b->domain) == 0;
}

/* Adds a copy of rcpt; the pool has room, as every copy costs less than
 * its header line. Called locked. */
static void add(struct batch *bt, const char *rcpt, size_t cost)
{
    size_t len = strlen(rcpt) + 1;
    memcpy(bt->pool + bt->used, rcpt, len);
    bt->rcpts[bt->n++] = bt->pool + bt->used;
    bt->used += len;
    bt->bytes += cost;
}

/* The header line a recipient costs in the POST. */
static size_t rcpt_bytes(const char *rcpt)
{
    return strlen("X-Mail-To: \r\n") + strlen(rcpt);
}

struct batch *batch_join(struct batcher *b, const struct batch_key *key, const char *rcpt,
                         bool *leader_r)
{
    size_t cost = rcpt_bytes(rcpt);
    struct batch *bt = NULL;
    size_t free_slot = BATCH_SLOTS;

    pthread_mutex_lock(&b->mu);
    for (size_t i = 0; i < BATCH_SLOTS; i++) {
        struct batch *s = b->slot[i];
        if (s == NULL) {
            if (free_slot == BATCH_SLOTS)
                free_slot = i;
            continue;
        }
        if (!s->closed && s->n < BATCH_MAX_RCPTS && s->bytes + cost <= BATCH_MAX_BYTES &&
            same_key(&s->key, key)) {
            bt = s;
            break;
        }
    }
    if (bt != NULL) {
        add(bt, rcpt, cost);
        bt->refs++;
        *leader_r = false;
    } else if (cost <= BATCH_MAX_BYTES && free_slot < BATCH_SLOTS &&
               (bt = calloc(1, sizeof(*bt))) != NULL) {
        bt->key = *key;
        add(bt, rcpt, cost);
        bt->refs = 1;
        b->slot[free_slot] = bt;
        *leader_r = true;
    }
    pthread_mutex_unlock(&b->mu);
    return bt;
}

/* Whether another batch of bt's key is under way. Called locked. */
static bool key_busy(const struct batcher *b, const struct batch *bt)
{
    for (size_t i = 0; i < BATCH_SLOTS; i++) {
        const struct batch *s = b->slot[i];
        if (s != NULL && s != bt && s->closed && !s->done && same_key(&s->key, &bt->key))
            return true;
    }
    return false;
}

/* Waits on the condition variable until deadline_ms; false when it passed. */
static bool wait_until(struct batcher *b, int64_t deadline_ms)
{
    int64_t now = (int64_t)clock_mono_ms();
    if (now >= deadline_ms)
        return false;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t left = deadline_ms - now;
    ts.tv_sec += left / 1000;
    ts.tv_nsec += (left % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return pthread_cond_timedwait(&b->changed, &b->mu, &ts) != ETIMEDOUT ||
           (int64_t)clock_mono_ms() < deadline_ms;
}

const char *const *batch_close(struct batcher *b, struct batch *bt, int64_t deadline_ms,
                               size_t *n_r)
{
    pthread_mutex_lock(&b->mu);
    while (key_busy(b, bt) && wait_until(b, deadline_ms))
        ;
    bt->closed = true;
    *n_r = bt->n;
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->mu);
    return bt->rcpts;
}

void batch_finish(struct batcher *b, struct batch *bt, const struct outcome *o,
                  const struct deliver_report *rep)
{
    pthread_mutex_lock(&b->mu);
    bt->closed = true;
    bt->out = *o;
    bt->rep = *rep;
    bt->done = true;
    pthread_cond_broadcast(&b->changed);
    pthread_mutex_unlock(&b->mu);
}

int batch_wait(struct batcher *b, struct batch *bt, int64_t deadline_ms, struct outcome *o,
               struct deliver_report *rep)
{
    pthread_mutex_lock(&b->mu);
    while (!bt->done && wait_until(b, deadline_ms))
        ;
    bool done = bt->done;
    if (done) {
        *o = bt->out;
        *rep = bt->rep;
    }
    pthread_mutex_unlock(&b->mu);
    return done ? 0 : -1;
}

void batch_release(struct batcher *b, struct batch **bt)
{
    if (*bt == NULL)
        return;
    pthread_mutex_lock(&b->mu);
    if (--(*bt)->refs == 0) {
        for (size_t i = 0; i < BATCH_SLOTS; i++)
            if (b->slot[i] == *bt)
                b->slot[i] = NULL;
        free(*bt);
    }
    pthread_mutex_unlock(&b->mu);
    *bt = NULL;
}
