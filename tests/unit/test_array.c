/* Tests for array.c: doubling, the maximum, refused sizes, allocation failure. */
#include "array.h"
#include "unit.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

/* Huge requests must come back as NULL, not abort the sanitizer build: this
 * is how the allocation failure path is reached without a mock allocator.
 * ASan prints one "failed to allocate" warning for it: that is expected. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

static void test_table(void)
{
    static const struct {
        const char *name;
        size_t elem, cap, need, max;
        size_t want_cap; /* 0: refused */
        int want_errno;
    } cases[] = {
        {"first allocation", 4, 0, 1, SIZE_MAX, ARRAY_FIRST, 0},
        {"first allocation, large need", 4, 0, 100, SIZE_MAX, 128, 0},
        {"room already", 4, 16, 16, SIZE_MAX, 16, 0},
        {"doubles", 4, 16, 17, SIZE_MAX, 32, 0},
        {"doubles until need", 4, 16, 65, SIZE_MAX, 128, 0},
        {"cut to max", 4, 16, 17, 20, 20, 0},
        {"first cut to max", 4, 0, 1, 5, 5, 0},
        {"need is max", 4, 16, 20, 20, 20, 0},
        {"need over max", 4, 16, 21, 20, 0, ENOBUFS},
        {"need over max, empty", 4, 0, 1, 0, 0, ENOBUFS},
        {"byte size overflows", 8, 0, SIZE_MAX / 4, SIZE_MAX, 0, EOVERFLOW},
        {"past PTRDIFF_MAX", 1, 0, (size_t)PTRDIFF_MAX + 1, SIZE_MAX, 0, EOVERFLOW},
        {"zero element size", 0, 0, 1, SIZE_MAX, 0, EINVAL},
        {"memory runs out", (size_t)1 << 46, 0, 1, SIZE_MAX, 0, ENOMEM},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        /* A live allocation, so a refusal can be seen to leave it alone. */
        size_t cap = cases[i].cap, got_cap = 12345;
        unsigned char *items = NULL;
        if (cap > 0) {
            items = calloc(cap, cases[i].elem);
            CHECK(items != NULL);
            items[0] = 0xa5;
        }
        errno = 0;
        unsigned char *p = array_grow(items, cases[i].elem, cap, cases[i].need, cases[i].max,
                                      &got_cap);
        if (cases[i].want_cap == 0) {
            CHECKF(p == NULL, "%s: refused", cases[i].name);
            CHECKF(errno == cases[i].want_errno, "%s: errno %d, want %d", cases[i].name, errno,
                   cases[i].want_errno);
            CHECKF(got_cap == 12345, "%s: capacity untouched", cases[i].name);
            CHECKF(items == NULL || items[0] == 0xa5, "%s: old array intact", cases[i].name);
            free(items);
            continue;
        }
        CHECKF(p != NULL, "%s: granted", cases[i].name);
        CHECKF(got_cap == cases[i].want_cap, "%s: capacity %zu, want %zu", cases[i].name,
               got_cap, cases[i].want_cap);
        if (p != NULL) {
            if (cap > 0)
                CHECKF(p[0] == 0xa5, "%s: contents kept", cases[i].name);
            /* The whole new capacity is writable (ASan sees any shortfall). */
            p[got_cap * cases[i].elem - 1] = 1;
        }
        free(p != NULL ? p : items);
    }
}

/* Appending one at a time: amortised growth, and the maximum holds. */
static void test_append_to_max(void)
{
    int *a = NULL;
    size_t n = 0, cap = 0, reallocs = 0;
    for (int i = 0; i < 1000; i++) {
        if (n == cap) {
            size_t old = cap;
            int *p = array_grow(a, sizeof(*a), cap, n + 1, 1000, &cap);
            CHECK(p != NULL);
            if (p == NULL)
                break;
            a = p;
            reallocs += cap != old;
        }
        a[n++] = i;
    }
    CHECK_INT(n, 1000);
    CHECK_INT(cap, 1000); /* 16 .. 512, then cut to 1000 */
    CHECK_INT(reallocs, 7);
    for (int i = 0; i < 1000; i++)
        CHECKF(a[i] == i, "a[%d]", i);
    errno = 0;
    CHECK(array_grow(a, sizeof(*a), cap, n + 1, 1000, &cap) == NULL);
    CHECK_INT(errno, ENOBUFS);
    CHECK_INT(cap, 1000);
    free(a);
}

int main(void)
{
    UNIT_RUN(test_table);
    UNIT_RUN(test_append_to_max);
    return unit_summary();
}
