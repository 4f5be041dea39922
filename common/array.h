/* array: growing a C array of fixed-size elements by doubling, with a maximum.
 *
 * The one place where "cap ? cap * 2 : N, realloc" lives: the capacity
 * doubles from ARRAY_FIRST elements (amortised O(1) appends), never passes the
 * caller's maximum, and the byte size is computed with checked arithmetic.
 * Pure: no globals, no logging; thread-safe as long as the array has one owner.
 */
#ifndef FILTERMAIL_ARRAY_H
#define FILTERMAIL_ARRAY_H

#include <stddef.h>

/* Capacity of an array's first allocation, in elements. */
#define ARRAY_FIRST 16

/* Makes room for need elements of elem_size bytes in items (NULL or from
 * malloc/realloc), which holds cap elements now. The new capacity is cap
 * (or ARRAY_FIRST) doubled until it reaches need, cut to max.
 *
 * Returns the array, possibly moved, and stores its capacity in *cap_r; the
 * caller keeps the pointer and frees it with free(). When need <= cap this is
 * items unchanged. Returns NULL with errno ENOBUFS when need > max, EOVERFLOW
 * when the byte size does not fit (or passes PTRDIFF_MAX), ENOMEM when memory
 * ran out; then items is still valid, still the caller's, and *cap_r untouched.
 *
 * It returns the pointer rather than taking a void ** so that callers keep
 * their typed pointers (a struct foo * is not a void * object to write through).
 * Arrays kept side by side with one capacity call it once per array with the
 * same cap and store the capacity after the last call succeeded.
 * EINVAL when elem_size is 0. */
void *array_grow(void *items, size_t elem_size, size_t cap, size_t need, size_t max,
                 size_t *cap_r);

#endif
