/* Fuzz target: address extraction and splitting never crash, never write past
 * the output, and always return a lowercased address with an '@'. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "address.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[ADDRESS_MAX], small[16];
    enum address_domain_kind kind;
    const char *domain;
    size_t dlen;

    if (address_extract((const char *)data, size, out, sizeof(out)) == 0) {
        if (strchr(out, '@') == NULL)
            __builtin_trap();
        for (const char *p = out; *p != '\0'; p++)
            if (*p >= 'A' && *p <= 'Z')
                __builtin_trap();
        if (address_domain(out, &kind, &domain, &dlen) == 0 &&
            (domain < out || domain + dlen > out + strlen(out)))
            __builtin_trap();
        (void)address_valid_mailbox(out);
    }
    if (address_extract((const char *)data, size, small, sizeof(small)) == 0 &&
        strlen(small) >= sizeof(small))
        __builtin_trap();
    return 0;
}
