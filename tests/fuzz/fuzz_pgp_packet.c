/* Fuzz target: the streaming packet checker agrees with the literal reference
 * walk (tests/support/ref_armor.c), fed whole, byte by byte and in chunks
 * derived from the input. Aborts on any disagreement. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "pgp_packet.h"
#include "ref_armor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool chunked(const uint8_t *p, size_t n, uint32_t seed)
{
    struct pgp_packet_checker c;
    size_t i = 0;

    pgp_packet_init(&c);
    while (i < n) {
        seed = seed * 1103515245u + 12345u;
        size_t take = 1 + (seed >> 16) % 7;
        if (take > n - i)
            take = n - i;
        pgp_packet_push(&c, p + i, take);
        i += take;
    }
    return pgp_packet_finish(&c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct pgp_packet_checker c;
    bool want = ref_packet_check(data, size), whole, failed_early;

    pgp_packet_init(&c);
    pgp_packet_push(&c, data, size);
    failed_early = pgp_packet_failed(&c);
    whole = pgp_packet_finish(&c);
    if (whole != want || (failed_early && want))
        abort();
    pgp_packet_init(&c);
    for (size_t i = 0; i < size; i++)
        pgp_packet_push(&c, data + i, 1);
    if (pgp_packet_finish(&c) != want)
        abort();
    if (chunked(data, size, (uint32_t)size) != want)
        abort();
    return 0;
}
