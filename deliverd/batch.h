/* batch: deliveries of one message to one domain, sent together ("group
 * commit").
 *
 * With recipient limit 1, pipe(8) runs one delivery per recipient, so one
 * message to many recipients of one relay arrives as many handoffs at once.
 * A delivery that finds none of its kind (same queue id, sender, recipient
 * domain and message bytes) under way goes out at once, alone: no added
 * wait. Those that arrive while one of their kind is under way join a batch
 * that goes out, as one POST or SMTP transaction for all its recipients, as
 * soon as the one before it has finished. A batch that is not delivered as a
 * whole delivers nothing (a relay's /mxdeliv and the SMTP client are all or
 * nothing), so then each member delivers on its own and gets its own exact
 * outcome.
 *
 * A batch holds at most BATCH_MAX_RCPTS recipients and BATCH_MAX_BYTES of
 * X-Mail-To header lines, so that the POST's header fits nginx's default
 * large_client_header_buffers (4 x 8 KiB).
 *
 * Thread-safe: one mutex for the table, waits on its condition variable,
 * each bounded by the waiter's deadline.
 */
#ifndef FILTERMAIL_DELIVERD_BATCH_H
#define FILTERMAIL_DELIVERD_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "deliver.h"
#include "dsn.h"

#define BATCH_MAX_RCPTS 100
/* "X-Mail-To: <address>\r\n" lines of one POST. */
#define BATCH_MAX_BYTES (16 * 1024)
/* Batches under way or forming at once (each has a delivery thread). */
#define BATCH_SLOTS 512

/* What deliveries must share to go together. */
struct batch_key {
    char queue_id[40];
    char sender[520];
    char domain[256];
    uint64_t size;
    unsigned char digest[32];
};

struct batcher;
struct batch;

struct batcher *batcher_new(void);
void batcher_free(struct batcher **b);

/* Adds a copy of rcpt to the open batch of key, or opens a new one. Returns the batch,
 * with *leader_r true when this caller opened it and must send it (then
 * batch_turn, batch_close, batch_finish), false when it is a member (then
 * batch_wait). NULL when the table is full or memory ran out: deliver
 * alone. */
struct batch *batch_join(struct batcher *b, const struct batch_key *key, const char *rcpt,
                         bool *leader_r);

/* Leader: waits until no earlier batch of its key is under way (or until
 * deadline_ms, monotonic), then closes the batch to new members. Returns
 * the recipients (*n_r of them; valid until the leader's batch_release),
 * the leader's own first. */
const char *const *batch_close(struct batcher *b, struct batch *bt, int64_t deadline_ms,
                               size_t *n_r);

/* Leader: publishes the batch's outcome and where it went; wakes the
 * members. */
void batch_finish(struct batcher *b, struct batch *bt, const struct outcome *o,
                  const struct deliver_report *rep);

/* Member: waits for the outcome until deadline_ms. Returns 0 with o and rep
 * set, or -1 when the deadline passed first (the batch may still deliver:
 * report a deferral, not a failure). */
int batch_wait(struct batcher *b, struct batch *bt, int64_t deadline_ms, struct outcome *o,
               struct deliver_report *rep);

/* Leader or member: done with the batch (the last one frees it). */
void batch_release(struct batcher *b, struct batch **bt);

#endif
