/* Fuzz target: the SMTP reply parser of mxdeliv/reinject.c. The input is
 * parsed whole and in pieces (sizes from the first byte); both must give the
 * same replies, codes must be 200-599, texts printable and bounded, and the
 * parser must never claim more bytes than it was given. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "reinject.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

static uint64_t run(const uint8_t *data, size_t size, size_t piece)
{
    struct reinject_parser p;
    struct reinject_reply r;
    uint64_t h = 1469598103934665603ull;
    size_t off = 0;

    reinject_parser_init(&p);
    while (off < size) {
        size_t n = size - off < piece ? size - off : piece, used = 0;
        int st = reinject_parser_push(&p, (const char *)data + off, n, &used, &r);
        if (st < 0)
            return mix(h, "!", 1);
        if (used > n || (st == 0 && used != n) || (st == 1 && used == 0))
            __builtin_trap();
        off += used;
        if (st == 1) {
            size_t len = strnlen(r.text, sizeof(r.text));
            if (len >= sizeof(r.text) || r.code < 200 || r.code > 599 || len < 3)
                __builtin_trap();
            for (size_t i = 0; i < len; i++)
                if ((unsigned char)r.text[i] < 0x20 || (unsigned char)r.text[i] > 0x7e)
                    __builtin_trap();
            h = mix(h, &r.code, sizeof(r.code));
            h = mix(h, r.text, len + 1);
            h = mix(h, r.pipelining ? "P" : "-", 1);
        }
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t piece;
    if (size < 1)
        return 0;
    piece = (size_t)data[0] % 32 + 1;
    data++;
    size--;
    if (run(data, size, size ? size : 1) != run(data, size, piece))
        __builtin_trap();
    return 0;
}
