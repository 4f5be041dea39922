/* buf: a growable byte buffer with a hard maximum. */
#include "buf.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"

void buf_init(struct buf *b, size_t max)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->max = max;
}

/* Makes room for need bytes plus the terminator, doubling to amortise. */
static int buf_reserve(struct buf *b, size_t need)
{
    size_t want;
    char *p;

    if (__builtin_add_overflow(need, 1, &want))
        return -1;
    p = array_grow(b->data, 1, b->cap, want, b->max == SIZE_MAX ? SIZE_MAX : b->max + 1,
                   &b->cap);
    if (p == NULL) {
        if (errno != ENOMEM)
            errno = ENOBUFS;
        return -1;
    }
    b->data = p;
    return 0;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    size_t need;

    if (__builtin_add_overflow(b->len, n, &need) || need > b->max) {
        errno = ENOBUFS;
        return -1;
    }
    if (buf_reserve(b, need) < 0)
        return -1;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len = need;
    b->data[b->len] = '\0';
    return 0;
}

int buf_putc(struct buf *b, char c)
{
    return buf_append(b, &c, 1);
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data != NULL)
        b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

const char *buf_cstr(const struct buf *b)
{
    return b->data != NULL ? b->data : "";
}
