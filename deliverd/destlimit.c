/* destlimit: deliveries at once per destination domain, see destlimit.h. */
#include "destlimit.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "clock.h"

struct dest {
    char domain[256];
    unsigned running;     /* places taken */
    unsigned waiting;     /* threads waiting for one */
    pthread_cond_t freed; /* a place of this domain was given back */
};

struct destlimit {
    pthread_mutex_t mu;
    unsigned per_domain;
    struct dest slot[DESTLIMIT_SLOTS];
    bool used[DESTLIMIT_SLOTS];
};

struct destlimit *destlimit_new(unsigned per_domain)
{
    struct destlimit *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    for (size_t i = 0; i < DESTLIMIT_SLOTS; i++)
        pthread_cond_init(&l->slot[i].freed, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&l->mu, NULL);
    l->per_domain = per_domain > 0 ? per_domain : 1;
    return l;
}

void destlimit_free(struct destlimit **lp)
{
    struct destlimit *l = *lp;
    if (l == NULL)
        return;
    for (size_t i = 0; i < DESTLIMIT_SLOTS; i++)
        pthread_cond_destroy(&l->slot[i].freed);
    pthread_mutex_destroy(&l->mu);
    free(l);
    *lp = NULL;
}

/* The entry of domain, made when missing and create is true. Called locked. */
static struct dest *find(struct destlimit *l, const char *domain, bool create)
{
    size_t free_slot = DESTLIMIT_SLOTS;
    for (size_t i = 0; i < DESTLIMIT_SLOTS; i++) {
        if (!l->used[i]) {
            if (free_slot == DESTLIMIT_SLOTS)
                free_slot = i;
            continue;
        }
        if (strcasecmp(l->slot[i].domain, domain) == 0)
            return &l->slot[i];
    }
    if (!create || free_slot == DESTLIMIT_SLOTS || strlen(domain) >= sizeof(l->slot[0].domain))
        return NULL;
    struct dest *d = &l->slot[free_slot];
    l->used[free_slot] = true;
    strcpy(d->domain, domain);
    d->running = d->waiting = 0;
    return d;
}

/* Frees the entry once nobody runs or waits. Called locked. */
static void drop_if_idle(struct destlimit *l, struct dest *d)
{
    if (d->running == 0 && d->waiting == 0)
        l->used[d - l->slot] = false;
}

enum destlimit_result destlimit_acquire(struct destlimit *l, const char *domain,
                                        int64_t deadline_ms)
{
    enum destlimit_result waited = DESTLIMIT_TAKEN;
    pthread_mutex_lock(&l->mu);
    struct dest *d = find(l, domain, true);
    if (d == NULL) {
        pthread_mutex_unlock(&l->mu);
        return DESTLIMIT_UNLIMITED;
    }
    while (d->running >= l->per_domain) {
        int64_t left = deadline_ms - (int64_t)clock_mono_ms();
        /* (A waiter woken for a place takes it even when its deadline has
         * just passed: the condition is looked at first, so no wake-up is
         * lost.) */
        if (left <= 0) {
            drop_if_idle(l, d);
            pthread_mutex_unlock(&l->mu);
            return DESTLIMIT_DEADLINE;
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        ts.tv_sec += left / 1000;
        ts.tv_nsec += (left % 1000) * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        d->waiting++;
        waited = DESTLIMIT_WAITED;
        pthread_cond_timedwait(&d->freed, &l->mu, &ts);
        d->waiting--;
    }
    d->running++;
    pthread_mutex_unlock(&l->mu);
    return waited;
}

void destlimit_release(struct destlimit *l, const char *domain)
{
    pthread_mutex_lock(&l->mu);
    struct dest *d = find(l, domain, false);
    if (d != NULL && d->running > 0) {
        d->running--;
        if (d->waiting > 0)
            pthread_cond_signal(&d->freed);
        drop_if_idle(l, d);
    }
    pthread_mutex_unlock(&l->mu);
}
