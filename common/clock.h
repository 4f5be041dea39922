/* clock: the one source of time for timeouts, deadlines and durations.
 *
 * Timeouts and durations use the monotonic clock (never set back or forward
 * by the administrator or NTP); only what is shown to people or written to
 * disk for another process uses wall-clock time. Both as nanoseconds in a
 * uint64_t (enough for 584 years). Thread-safe.
 */
#ifndef FILTERMAIL_CLOCK_H
#define FILTERMAIL_CLOCK_H

#include <stdint.h>

#define CLOCK_NS_PER_SEC 1000000000ull
#define CLOCK_NS_PER_MS 1000000ull

/* Nanoseconds on the monotonic clock (an arbitrary start). */
uint64_t clock_mono_ns(void);

/* Milliseconds on the monotonic clock. */
uint64_t clock_mono_ms(void);

/* Nanoseconds since the Unix epoch (wall-clock time). */
uint64_t clock_wall_ns(void);

/* Seconds from start_ns (a clock_mono_ns() value) to now, for logs. */
double clock_elapsed_s(uint64_t start_ns);

#endif
