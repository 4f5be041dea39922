/* Tests for common/clock.c. */
#include "clock.h"
#include "unit.h"

#include <time.h>

static void test_monotonic(void)
{
    uint64_t a = clock_mono_ns(), ms = clock_mono_ms();
    struct timespec d = {.tv_nsec = 20 * 1000000};
    nanosleep(&d, NULL);
    uint64_t b = clock_mono_ns();
    CHECK(b - a >= 20 * CLOCK_NS_PER_MS && b - a < 5 * CLOCK_NS_PER_SEC);
    CHECK(clock_mono_ms() - ms >= 20);
    double s = clock_elapsed_s(a);
    CHECK(s >= 0.02 && s < 5);
    /* A start in the future (a caller's mistake) is no time, not 584 years. */
    CHECK(clock_elapsed_s(clock_mono_ns() + CLOCK_NS_PER_SEC) == 0.0);
}

static void test_wall(void)
{
    uint64_t w = clock_wall_ns();
    time_t t = time(NULL);
    CHECK((int64_t)(w / CLOCK_NS_PER_SEC) - (int64_t)t <= 1 &&
          (int64_t)t - (int64_t)(w / CLOCK_NS_PER_SEC) <= 1);
}

int main(void)
{
    UNIT_RUN(test_monotonic);
    UNIT_RUN(test_wall);
    return unit_summary();
}
