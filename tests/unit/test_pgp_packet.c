/* Tests for pgp_packet.c: the packet-sequence walk of spec 4.4, fed whole, one
 * byte at a time and in random chunks, against a table and against the
 * literal reference walk in tests/support/ref_armor.c. */
#include "pgp_packet.h"
#include "ref_armor.h"
#include "unit.h"

#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    const char *hex; /* packet bytes */
    bool want;
} cases[] = {
    {"empty", "", false},
    {"seipd only", "d20101", true},
    {"seipd zero length", "d200", true},
    {"pkesk seipd", "c102aabb d20100", true},
    {"skesk seipd", "c301aa d201ff", true},
    {"two pkesk seipd", "c101aa c101bb d20100", true},
    {"pkesk only", "c102aabb", false},
    {"seipd then pkesk", "d20100 c101aa", false},
    {"seipd then seipd", "d20100 d20100", false},
    {"literal (tag 11)", "cb0100", false},
    {"aead (tag 20)", "d40100", false},
    {"pkesk then aead", "c101aa d40100", false},
    {"not a packet (bit 7 clear)", "12", false},
    {"legacy pkesk then seipd", "8402aabb d20100", true},
    {"legacy two-octet length", "850002aabb d20100", true},
    {"legacy four-octet length", "8600000002aabb d20100", true},
    {"legacy indeterminate length", "87 d20100", false},
    {"legacy tag 18 is tag 4", "c800", false},
    {"two-octet length", "d2c000", false}, /* needs 192 body bytes */
    {"five-octet length", "d2ff00000002aabb", true},
    {"five-octet truncated", "d2ff0000", false},
    {"partial chunk then final", "d2e1aabb 01cc", true},
    {"partial chunk then nothing", "d2e1aabb", false},
    {"partial chunk past the end", "d2e4aabb", false},
    {"body past the end", "d205aabb", false},
    {"truncated header", "c1", false},
    {"truncated two-octet length", "d2c0", false},
    {"trailing byte after seipd", "d20100 00", false},
    {"pkesk, legacy skesk, seipd", "c101aa 8c01bb d20100", true},
};

static size_t unhex(const char *h, unsigned char *out)
{
    size_t n = 0;
    while (*h) {
        if (*h == ' ') {
            h++;
            continue;
        }
        unsigned v;
        char b[3] = {h[0], h[1], 0};
        v = (unsigned)strtoul(b, NULL, 16);
        out[n++] = (unsigned char)v;
        h += 2;
    }
    return n;
}

static bool run(const unsigned char *p, size_t n, int mode, unsigned seed)
{
    struct pgp_packet_checker c;
    size_t i = 0;

    pgp_packet_init(&c);
    while (i < n) {
        size_t take = n - i;
        if (mode == 1)
            take = 1;
        if (mode == 2) {
            seed = seed * 1103515245u + 12345u;
            take = 1 + (seed >> 16) % 5;
            if (take > n - i)
                take = n - i;
        }
        pgp_packet_push(&c, p + i, take);
        i += take;
    }
    return pgp_packet_finish(&c);
}

static void test_table(void)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        unsigned char buf[512];
        size_t n = unhex(cases[i].hex, buf);
        if (strcmp(cases[i].name, "two-octet length") == 0) {
            /* 0xc0 0x00 = length 192: supply the body */
            memset(buf + n, 0x55, 192);
            n += 192;
            CHECKF(run(buf, n, 0, 1), "%s", cases[i].name);
            n -= 1;
            CHECKF(!run(buf, n, 0, 1), "%s (one short)", cases[i].name);
            continue;
        }
        CHECKF(ref_packet_check(buf, n) == cases[i].want, "ref: %s", cases[i].name);
        for (int mode = 0; mode < 3; mode++)
            CHECKF(run(buf, n, mode, (unsigned)i) == cases[i].want, "%s (mode %d)", cases[i].name,
                   mode);
    }
}

/* Bodies are skipped by count: a 4 GiB length costs nothing to walk past. */
static void test_large_lengths(void)
{
    struct pgp_packet_checker c;
    unsigned char hdr[] = {0xd2, 0xff, 0xff, 0xff, 0xff, 0xff}, chunk[4096];

    memset(chunk, 0xAB, sizeof(chunk));
    pgp_packet_init(&c);
    pgp_packet_push(&c, hdr, sizeof(hdr));
    for (int i = 0; i < 1000; i++)
        pgp_packet_push(&c, chunk, sizeof(chunk));
    CHECK(!pgp_packet_failed(&c));
    CHECK(!pgp_packet_finish(&c)); /* 0xffffffff bytes were promised */

    /* A 2^30 partial chunk, then a final length of 0. */
    unsigned char part[] = {0xd2, 0xfe};
    pgp_packet_init(&c);
    pgp_packet_push(&c, part, 2);
    CHECK(c.skip == (uint64_t)1 << 30);
}

static void test_failed_is_final(void)
{
    struct pgp_packet_checker c;
    unsigned char bad[] = {0x12, 0xd2, 0x00};

    pgp_packet_init(&c);
    pgp_packet_push(&c, bad, 1);
    CHECK(pgp_packet_failed(&c));
    pgp_packet_push(&c, bad + 1, 2);
    CHECK(!pgp_packet_finish(&c));
}

int main(void)
{
    UNIT_RUN(test_table);
    UNIT_RUN(test_large_lengths);
    UNIT_RUN(test_failed_is_final);
    return unit_summary();
}
