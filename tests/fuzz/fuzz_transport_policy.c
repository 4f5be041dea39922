/* Fuzz target: the no-STARTTLS policy file parser never crashes or leaks;
 * on success every entry can be looked up, on failure there is a message. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tlspolicy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct tls_policy_table *t = NULL;
    err[0] = '\0';
    if (tls_policy_parse((const char *)data, size, "fuzz", &t, err, sizeof(err)) == 0) {
        if (t == NULL)
            __builtin_trap();
        /* Look up the first word as a domain. */
        char dom[64];
        size_t n = 0;
        while (n < size && n < sizeof(dom) - 1 && data[n] > ' ')
            n++;
        memcpy(dom, data, n);
        dom[n] = '\0';
        (void)tls_policy_lookup(t, dom);
    } else if (t != NULL || strncmp(err, "fuzz: ", 6) != 0) {
        __builtin_trap();
    }
    tls_policy_free(&t);
    return 0;
}
