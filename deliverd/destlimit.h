/* destlimit: at most N deliveries at once to one destination domain.
 *
 * With recipient limit 1, Postfix's per-destination concurrency limit counts
 * per recipient, so it does not bound how many deliveries go to one relay at
 * once: pipe(8)'s process limit does (100 in master.cf.transport), where
 * smtp(8) keeps to default_destination_concurrency_limit (20) per domain.
 * A hundred POSTs at once to one relay only queue up behind each other there
 * and here (bench/README.md: at 100 the transport's own delivery time went
 * from 48 to 300-500 ms and the throughput down by a fifth), so the daemon
 * lets filtermail_transport_destination_concurrency of them run per
 * recipient domain and the others wait their turn, each within its
 * delivery's deadline. While a delivery waits, more recipients of the same
 * message can join its batch (batch.h).
 *
 * Thread-safe: one mutex for the table; each domain in use has its own
 * condition variable, so a place that frees up wakes only that domain's
 * waiters.
 */
#ifndef FILTERMAIL_DELIVERD_DESTLIMIT_H
#define FILTERMAIL_DELIVERD_DESTLIMIT_H

#include <stdint.h>

/* Domains with deliveries under way or waiting, at most (each has a thread). */
#define DESTLIMIT_SLOTS 512

struct destlimit;

/* per_domain: deliveries at once per domain (at least 1). NULL when out of
 * memory. */
struct destlimit *destlimit_new(unsigned per_domain);
void destlimit_free(struct destlimit **l);

enum destlimit_result {
    DESTLIMIT_TAKEN,     /* a place, at once */
    DESTLIMIT_WAITED,    /* a place, after waiting for it */
    DESTLIMIT_DEADLINE,  /* none: the deadline passed first */
    DESTLIMIT_UNLIMITED, /* none needed: the domain does not fit the table (a
                            name over 255 bytes, or more domains than slots,
                            which DESTLIMIT_SLOTS threads cannot make): the
                            delivery goes unlimited rather than not at all */
};

/* Takes a place for domain (compared without regard to ASCII case), waiting
 * while per_domain are taken, until deadline_ms (CLOCK_MONOTONIC, ms). */
enum destlimit_result destlimit_acquire(struct destlimit *l, const char *domain,
                                        int64_t deadline_ms);

/* Gives back the place taken (DESTLIMIT_TAKEN or DESTLIMIT_WAITED) for domain. */
void destlimit_release(struct destlimit *l, const char *domain);

#endif
