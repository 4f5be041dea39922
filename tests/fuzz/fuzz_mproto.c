/* Fuzz target: milter packet framing, strings and macros never read outside
 * the input, whatever Postfix (or anything else on the socket) sends. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "mproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    struct mpacket p;
    long n;
    while ((n = mproto_next(data + off, size - off, 4096, &p)) > 0) {
        if ((size_t)n > size - off || p.data + p.len > data + size)
            __builtin_trap();
        off += (size_t)n;
        for (size_t i = 0; i < 4; i++) {
            const char *s = mproto_string(&p, i);
            if (s != NULL && (const uint8_t *)s + strlen(s) >= p.data + p.len + 1)
                __builtin_trap();
        }
        const char *name, *value;
        size_t moff = 1;
        while (mproto_macro(&p, &moff, &name, &value))
            if ((const uint8_t *)value + strlen(value) >= p.data + p.len)
                __builtin_trap();
        uint32_t v, a, pr;
        (void)mproto_parse_optneg(&p, &v, &a, &pr);
    }
    return 0;
}
