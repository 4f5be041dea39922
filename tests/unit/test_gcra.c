/* Tests for gcra.c: upstream's GCRA (spec 5.2) on an injected clock. */
#include "gcra.h"
#include "unit.h"

#define S 1000000000ull

static void test_params(void)
{
    struct gcra g;

    CHECK_INT(gcra_init(&g, 60, 10), 0);
    CHECK(g.interval == 1 * S);
    CHECK(g.tolerance == 9 * S);
    CHECK(gcra_max_debt(&g) == 10 * S);
    /* T is 60 s / R rounded down to whole nanoseconds. */
    CHECK_INT(gcra_init(&g, 7, 1), 0);
    CHECK(g.interval == 8571428571ull);
    CHECK(g.tolerance == 0);
    CHECK_INT(gcra_init(&g, 0, 10), -1);
    CHECK_INT(gcra_init(&g, 60, 0), -1);
    /* Extremes do not overflow. */
    CHECK_INT(gcra_init(&g, 1, 0xffffffffu), 0);
    CHECK(g.tolerance == UINT64_MAX);
    CHECK(gcra_max_debt(&g) == UINT64_MAX);
}

/* A new key: tat = now. Returns how many of n checks at `now` pass. */
static int burst_at(const struct gcra *g, uint64_t *tat, uint64_t now, int n)
{
    int passed = 0;
    for (int i = 0; i < n; i++)
        passed += gcra_step(g, tat, now, NULL);
    return passed;
}

static void test_burst_then_interval(void)
{
    struct gcra g;
    uint64_t t0 = 1000 * S, tat = t0, at = 0;

    gcra_init(&g, 60, 10);
    /* Spec O19: ten at once, the eleventh refused. */
    CHECK_INT(burst_at(&g, &tat, t0, 10), 10);
    CHECK(!gcra_step(&g, &tat, t0, &at));
    CHECK(at == t0 + 1 * S);
    CHECK(tat == t0 + 10 * S); /* a refusal charges nothing */
    CHECK(!gcra_step(&g, &tat, t0 + S - 1, NULL));
    /* One interval later exactly one more. */
    CHECK(gcra_step(&g, &tat, t0 + S, NULL));
    CHECK(!gcra_step(&g, &tat, t0 + S, &at));
    CHECK(at == t0 + 2 * S);
    /* Steady state: one per interval. */
    for (uint64_t k = 2; k < 20; k++) {
        CHECK(gcra_step(&g, &tat, t0 + k * S, NULL));
        CHECK(!gcra_step(&g, &tat, t0 + k * S, NULL));
    }
}

static void test_idle_reset(void)
{
    struct gcra g;
    uint64_t t0 = 5 * S, tat = t0;

    gcra_init(&g, 60, 10);
    CHECK_INT(burst_at(&g, &tat, t0, 10), 10);
    CHECK(!gcra_is_full(tat, t0 + 10 * S - 1));
    /* Idle for B x T: the key is as good as new, and gets a whole burst. */
    CHECK(gcra_is_full(tat, t0 + 10 * S));
    CHECK_INT(burst_at(&g, &tat, t0 + 10 * S, 11), 10);
    /* Half the idle time gives half the burst back. */
    tat = t0;
    CHECK_INT(burst_at(&g, &tat, t0, 10), 10);
    CHECK_INT(burst_at(&g, &tat, t0 + 5 * S, 11), 5);
}

static void test_burst_one(void)
{
    struct gcra g;
    uint64_t tat = 0;

    /* Spec O20: burst 1 at 60/min refuses the second immediate message. */
    gcra_init(&g, 60, 1);
    CHECK(gcra_step(&g, &tat, 0, NULL));
    CHECK(!gcra_step(&g, &tat, 0, NULL));
    CHECK(!gcra_step(&g, &tat, S - 1, NULL));
    CHECK(gcra_step(&g, &tat, S, NULL));
}

static void test_clock_at_zero(void)
{
    struct gcra g;
    uint64_t tat = 0, at;

    /* tat - tau saturates at 0 (an injected clock may start at 0). */
    gcra_init(&g, 60, 3);
    CHECK_INT(burst_at(&g, &tat, 0, 3), 3);
    CHECK(!gcra_step(&g, &tat, 0, &at));
    CHECK(at == 1 * S);
    /* A TAT near the end of time saturates instead of wrapping. */
    tat = UINT64_MAX - 10;
    CHECK(gcra_step(&g, &tat, UINT64_MAX - 5, NULL));
    CHECK(tat == UINT64_MAX);
}

int main(void)
{
    UNIT_RUN(test_params);
    UNIT_RUN(test_burst_then_interval);
    UNIT_RUN(test_idle_reset);
    UNIT_RUN(test_burst_one);
    UNIT_RUN(test_clock_at_zero);
    return unit_summary();
}
