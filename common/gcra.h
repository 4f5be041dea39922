/* gcra: the Generic Cell Rate Algorithm, as upstream filtermail uses it.
 *
 * Upstream (the `governor` crate, spec 5.2): with R = messages per minute and
 * B = burst size, the emission interval is T = 60 s / R (whole nanoseconds,
 * rounded down) and the tolerance is tau = T * (B - 1). Each key keeps a
 * "theoretical arrival time" TAT. A check at time t, with tat = TAT (or t for a
 * new key), is refused when t < tat - tau (saturating at 0); otherwise it is
 * allowed and TAT becomes max(tat, t) + T. So B messages may go at once, then
 * one every T, and a key idle for B * T has its whole burst back.
 *
 * A key whose TAT is at or before now is in exactly the state of a key never
 * seen (max(tat, t) = t), so such keys can be forgotten: gcra_is_full().
 *
 * Times are nanoseconds on a clock that never goes backwards (the caller's
 * CLOCK_MONOTONIC, or an injected clock in tests). Pure; thread-safe.
 */
#ifndef FILTERMAIL_GCRA_H
#define FILTERMAIL_GCRA_H

#include <stdbool.h>
#include <stdint.h>

#define GCRA_NS_PER_MINUTE 60000000000ull

struct gcra {
    uint64_t interval;  /* T, ns */
    uint64_t tolerance; /* tau = T * (B - 1), ns */
};

/* Sets up the parameters for per_minute messages a minute and a burst of
 * burst messages (both nonzero). Returns 0, or -1 when either is zero. */
int gcra_init(struct gcra *g, uint32_t per_minute, uint32_t burst);

/* One check of a key at now. *tat is the key's TAT; for a key not seen
 * before the caller passes now. Allowed: returns true and advances *tat.
 * Refused: returns false, leaves *tat alone and sets *allowed_at_r (may be
 * NULL) to the earliest time the next check can pass. */
bool gcra_step(const struct gcra *g, uint64_t *tat, uint64_t now, uint64_t *allowed_at_r);

/* True when a key with this TAT has its full burst back at now, i.e. it is
 * indistinguishable from a key never seen and may be dropped. */
bool gcra_is_full(uint64_t tat, uint64_t now);

/* The most a live key's TAT can lie ahead of now: T + tau. */
uint64_t gcra_max_debt(const struct gcra *g);

#endif
