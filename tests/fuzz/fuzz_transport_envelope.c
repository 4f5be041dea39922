/* Fuzz target: the transport's envelope check (pipe(8)'s sender and
 * recipients, IDNA included) never crashes or leaks, and what it accepts is
 * safe to use: a name destination is a valid lowercase ASCII name, a literal
 * is an address inet_pton reads back. The input is split at NUL bytes: the
 * sender, then up to 8 recipients. */
#include <arpa/inet.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "address.h"
#include "envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum { MAX_ARGS = 9 };
    char *copy = malloc(size + 1);
    const char *args[MAX_ARGS];
    size_t n = 0;
    if (copy == NULL)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (char *p = copy; n < MAX_ARGS && p <= copy + size; p += strlen(p) + 1)
        args[n++] = p;
    struct envelope env;
    char err[512];
    err[0] = '\0';
    enum envelope_status st = envelope_check(args[0], args + 1, n - 1, &env, err, sizeof(err));
    if (st == ENVELOPE_OK) {
        unsigned char bin[16];
        if (env.kind == ENVELOPE_NAME && !address_domain_name_ok(env.domain))
            __builtin_trap();
        if (env.kind == ENVELOPE_LITERAL && inet_pton(env.family, env.domain, bin) != 1)
            __builtin_trap();
    } else if (err[0] == '\0') {
        __builtin_trap();
    }
    free(copy);
    return 0;
}
