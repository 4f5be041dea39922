/* array: growing a C array by doubling, with a maximum. */
#include "array.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

void *array_grow(void *items, size_t elem_size, size_t cap, size_t need, size_t max,
                 size_t *cap_r)
{
    size_t ncap, bytes, limit;
    void *p;

    if (need <= cap) {
        *cap_r = cap;
        return items;
    }
    if (need > max) {
        errno = ENOBUFS;
        return NULL;
    }
    if (elem_size == 0) {
        errno = EINVAL;
        return NULL;
    }
    /* No object may pass PTRDIFF_MAX bytes (pointer differences must fit). */
    limit = PTRDIFF_MAX / elem_size;
    if (need > limit) {
        errno = EOVERFLOW;
        return NULL;
    }
    if (max > limit)
        max = limit;
    ncap = cap ? cap : ARRAY_FIRST;
    while (ncap < need && ncap <= max / 2)
        ncap *= 2;
    if (ncap < need || ncap > max)
        ncap = max; /* the next doubling would pass max, which holds need */
    bytes = ncap * elem_size;
    p = realloc(items, bytes);
    if (p == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    *cap_r = ncap;
    return p;
}
