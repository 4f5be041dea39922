/* Fuzz target: a socket address either parses into a unix path or a host and
 * port of 1-65535, or is refused with a message; what parses formats into
 * the canonical syntax, which parses back to the same address. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "listener.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char spec[512], err[128] = "", out[400];
    struct listener_addr a, b;

    if (size >= sizeof(spec))
        return 0;
    memcpy(spec, data, size);
    spec[size] = '\0';
    if (listener_parse(spec, &a, err, sizeof(err)) < 0) {
        if (err[0] == '\0')
            __builtin_trap();
        return 0;
    }
    if (a.is_unix) {
        if (a.path[0] != '/')
            __builtin_trap();
    } else {
        long port = strtol(a.port, NULL, 10);
        if (port < 1 || port > 65535)
            __builtin_trap();
    }
    listener_format(&a, out, sizeof(out));
    if (listener_parse(out, &b, err, sizeof(err)) < 0 || b.is_unix != a.is_unix ||
        strcmp(b.path, a.path) != 0 || strcmp(b.port, a.port) != 0)
        __builtin_trap();
    /* The wildcard formats as an address, which is fine; otherwise the host
     * comes back as it was. */
    if (a.host[0] != '\0' && strcmp(b.host, a.host) != 0)
        __builtin_trap();
    return 0;
}
