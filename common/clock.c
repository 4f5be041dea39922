/* clock: monotonic and wall-clock time in nanoseconds; see clock.h. */
#include "clock.h"

#include <time.h>

static uint64_t clock_read(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * CLOCK_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

uint64_t clock_mono_ns(void)
{
    return clock_read(CLOCK_MONOTONIC);
}

uint64_t clock_mono_ms(void)
{
    return clock_read(CLOCK_MONOTONIC) / CLOCK_NS_PER_MS;
}

uint64_t clock_wall_ns(void)
{
    return clock_read(CLOCK_REALTIME);
}

double clock_elapsed_s(uint64_t start_ns)
{
    uint64_t now = clock_mono_ns();
    return now > start_ns ? (double)(now - start_ns) / 1e9 : 0.0;
}
