/* gcra: the rate-limit arithmetic, shared by the in-process table and the
 * snapshot loader of filtermail-policyd (the Redis script does the same in Lua). */
#include "gcra.h"

#include <stddef.h>

static uint64_t gcra_sat_add(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_add_overflow(a, b, &r) ? UINT64_MAX : r;
}

static uint64_t gcra_sat_mul(uint64_t a, uint64_t b)
{
    uint64_t r;
    return __builtin_mul_overflow(a, b, &r) ? UINT64_MAX : r;
}

int gcra_init(struct gcra *g, uint32_t per_minute, uint32_t burst)
{
    if (per_minute == 0 || burst == 0)
        return -1;
    g->interval = GCRA_NS_PER_MINUTE / per_minute;
    g->tolerance = gcra_sat_mul(g->interval, (uint64_t)burst - 1);
    return 0;
}

bool gcra_step(const struct gcra *g, uint64_t *tat, uint64_t now, uint64_t *allowed_at_r)
{
    uint64_t t = *tat;
    uint64_t allowed_at = t > g->tolerance ? t - g->tolerance : 0;

    if (now < allowed_at) {
        if (allowed_at_r != NULL)
            *allowed_at_r = allowed_at;
        return false;
    }
    *tat = gcra_sat_add(t > now ? t : now, g->interval);
    return true;
}

bool gcra_is_full(uint64_t tat, uint64_t now)
{
    return tat <= now;
}

uint64_t gcra_max_debt(const struct gcra *g)
{
    return gcra_sat_add(g->interval, g->tolerance);
}
