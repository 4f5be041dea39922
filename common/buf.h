/* buf: a growable byte buffer with a hard maximum.
 *
 * A buffer carries its length, its capacity and the most it may ever hold;
 * appends that would pass the maximum fail and leave the buffer unchanged.
 * The data is always NUL-terminated (the terminator is not counted in len),
 * so text can be used as a C string. Not thread-safe; one owner at a time.
 */
#ifndef FILTERMAIL_BUF_H
#define FILTERMAIL_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct buf {
    char *data;     /* NULL until the first append */
    size_t len;     /* bytes in use */
    size_t cap;     /* bytes allocated, terminator included */
    size_t max;     /* most bytes len may reach */
};

/* Sets up an empty buffer that may grow to max bytes. Allocates nothing. */
void buf_init(struct buf *b, size_t max);

/* Appends n bytes. Returns 0, or -1 when len + n would pass max or memory ran
 * out (errno ENOBUFS or ENOMEM); then the buffer is unchanged. */
int buf_append(struct buf *b, const void *p, size_t n);

/* Appends one byte; as buf_append. */
int buf_putc(struct buf *b, char c);

/* Appends a C string; as buf_append. */
int buf_puts(struct buf *b, const char *s);

/* Empties the buffer and keeps its memory for reuse. */
void buf_reset(struct buf *b);

/* Frees the memory; the buffer is empty and reusable afterwards. */
void buf_free(struct buf *b);

/* The contents as a C string ("" when empty). Valid until the next change. */
const char *buf_cstr(const struct buf *b);

#endif
