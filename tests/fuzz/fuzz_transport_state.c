/* Fuzz target: the transport's host-state file. Whatever the file holds
 * (it is shared, and may be damaged), parsing never crashes, keeps at most
 * STATE_MAX_ENTRIES unexpired entries, and what it writes back parses to the
 * same table. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct state_table t, u;
    struct buf b;
    const int64_t now = 1000;

    state_table_init(&t);
    state_table_init(&u);
    buf_init(&b, STATE_MAX_FILE);
    if (state_parse((const char *)data, size, now, &t) < 0)
        goto out;
    if (t.n > STATE_MAX_ENTRIES)
        __builtin_trap();
    for (size_t i = 0; i < t.n; i++)
        if (t.e[i].until <= now || t.e[i].port == 0 ||
            !state_has(&t, t.e[i].kind, t.e[i].host, t.e[i].port, now))
            __builtin_trap();
    if (state_format(&t, now, &b) < 0)
        goto out;
    if (state_parse(b.data, b.len, now, &u) != 0 || u.n != t.n)
        __builtin_trap();
    for (size_t i = 0; i < t.n; i++)
        if (!state_has(&u, t.e[i].kind, t.e[i].host, t.e[i].port, now))
            __builtin_trap();
out:
    state_table_free(&t);
    state_table_free(&u);
    buf_free(&b);
    return 0;
}
