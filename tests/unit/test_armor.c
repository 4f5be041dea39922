/* Tests for armor.c: the armor check of spec 4.3 (13.7 U1), fed whole, one
 * byte at a time and in random chunks, each result also compared with the
 * literal transcription of upstream in tests/support/ref_armor.c. */
#include "armor.h"
#include "ref_armor.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool stream(const char *p, size_t n, enum armor_direction dir, int mode, unsigned seed)
{
    struct armor_checker a;
    size_t i = 0;
    bool failed = false, ok;

    armor_init(&a, dir);
    while (i < n) {
        size_t take = n - i;
        if (mode == 1)
            take = 1;
        if (mode == 2) {
            seed = seed * 1103515245u + 12345u;
            take = 1 + (seed >> 16) % 200;
            if (take > n - i)
                take = n - i;
        }
        armor_push(&a, p + i, take);
        failed = failed || armor_failed(&a);
        i += take;
    }
    ok = armor_finish(&a);
    CHECK(!(failed && ok)); /* armor_failed() is final */
    return ok;
}

/* Checks one text against the expected verdicts in both directions, in every
 * feeding mode, and against the reference. */
static void expect(const char *name, const char *p, size_t n, bool out, bool in)
{
    CHECKF(ref_armor_check(p, n, true) == out, "%s: reference, outgoing", name);
    CHECKF(ref_armor_check(p, n, false) == in, "%s: reference, incoming", name);
    for (int mode = 0; mode < 3; mode++) {
        CHECKF(stream(p, n, ARMOR_OUTGOING, mode, (unsigned)n) == out, "%s: outgoing, mode %d",
               name, mode);
        CHECKF(stream(p, n, ARMOR_INCOMING, mode, (unsigned)n) == in, "%s: incoming, mode %d", name,
               mode);
    }
    CHECKF(armor_check(p, n, ARMOR_OUTGOING) == out, "%s: armor_check", name);
}

static void test_vectors(void)
{
    size_t len;
    char *tsv = unit_read_file("tests/data/armor-verdicts.tsv", &len);
    int files = 0;

    for (char *line = strtok(tsv, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char file[128], path[256];
        int out, in;
        if (line[0] == '#' || sscanf(line, "%127s %d %d", file, &out, &in) != 3)
            continue;
        snprintf(path, sizeof(path), "tests/data/armor/%s", file);
        char *text = unit_read_file(path, &len);
        expect(file, text, len, out, in);
        free(text);
        files++;
    }
    CHECK_INT(files, 13);
    free(tsv);
}

/* ---- crafted armor ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

struct text {
    char p[16384];
    size_t n;
};

static void add(struct text *t, const char *s)
{
    size_t k = strlen(s);
    if (t->n + k <= sizeof(t->p)) {
        memcpy(t->p + t->n, s, k);
        t->n += k;
    }
}

/* Base64 of bin in lines of width characters ended by nl. */
static void add_b64(struct text *t, const unsigned char *bin, size_t n, size_t width,
                    const char *nl)
{
    size_t col = 0;

    for (size_t i = 0; i < n; i += 3) {
        size_t k = n - i < 3 ? n - i : 3;
        unsigned v = (unsigned)bin[i] << 16 | (k > 1 ? (unsigned)bin[i + 1] << 8 : 0) |
                     (k > 2 ? bin[i + 2] : 0);
        char q[5] = {b64chars[v >> 18 & 63], b64chars[v >> 12 & 63],
                     k > 1 ? b64chars[v >> 6 & 63] : '=', k > 2 ? b64chars[v & 63] : '=', 0};
        add(t, q);
        col += 4;
        if (col >= width) {
            add(t, nl);
            col = 0;
        }
    }
    if (col)
        add(t, nl);
}

/* A complete armor around packet bytes: BEGIN, blank line, base64, CRC, END. */
static void armor_of(struct text *t, const unsigned char *bin, size_t n, bool crc)
{
    t->n = 0;
    add(t, "-----BEGIN PGP MESSAGE-----\r\n\r\n");
    add_b64(t, bin, n, 64, "\r\n");
    if (crc)
        add(t, "=njUN\r\n");
    add(t, "-----END PGP MESSAGE-----\r\n");
}

static const unsigned char pkt_ok[] = {0xc1, 0x03, 1, 2, 3, 0xd2, 0x05, 9, 9, 9, 9, 9};

static void packets(const char *name, const unsigned char *bin, size_t n, bool want)
{
    struct text t;
    char label[128];

    armor_of(&t, bin, n, true);
    snprintf(label, sizeof(label), "packets: %s", name);
    expect(label, t.p, t.n, want, want);
}

static void test_packets(void)
{
    static const unsigned char legacy[] = {0x84, 0x02, 1, 2, 0xd2, 0x01, 7};
    static const unsigned char partial[] = {0xd2, 0xe1, 1, 2, 0x01, 3};
    static const unsigned char skesk[] = {0xc3, 0x02, 4, 1, 0xd2, 0x01, 7};
    static const unsigned char aead[] = {0xc1, 0x01, 1, 0xd4, 0x01, 7};
    static const unsigned char literal[] = {0xcb, 0x03, 0x62, 0, 0};
    static const unsigned char trunc[] = {0xc1, 0x03, 1, 2, 3, 0xd2};
    static const unsigned char trailing[] = {0xd2, 0x01, 7, 0xc1, 0x01, 1};
    static const unsigned char indet[] = {0x87, 0xd2, 0x01, 7};

    packets("pkesk seipd", pkt_ok, sizeof(pkt_ok), true);
    packets("legacy header", legacy, sizeof(legacy), true);
    packets("partial length", partial, sizeof(partial), true);
    packets("skesk", skesk, sizeof(skesk), true);
    packets("aead (tag 20)", aead, sizeof(aead), false);
    packets("literal (tag 11)", literal, sizeof(literal), false);
    packets("truncated header", trunc, sizeof(trunc), false);
    packets("packet after seipd", trailing, sizeof(trailing), false);
    packets("legacy indeterminate length", indet, sizeof(indet), false);
}

struct crafted {
    const char *name, *text;
    bool out, in;
};

/* Base64 of pkt_ok is "wQMBAgPSBQkJCQkJ" (16 characters, no padding). */
#define B "-----BEGIN PGP MESSAGE-----\r\n"
#define E "-----END PGP MESSAGE-----"
static const struct crafted crafted[] = {
    {"reference shape", B "\r\nwQMBAgPSBQkJCQkJ\r\n=njUN\r\n" E "\r\n", true, true},
    {"no CRC", B "\r\nwQMBAgPSBQkJCQkJ\r\n" E, true, true},
    {"no blank line", B "wQMBAgPSBQkJCQkJ\r\n" E, true, true},
    {"many trailing CRLFs", B "wQMBAgPSBQkJCQkJ\r\n" E "\r\n\r\n\r\n\r\n", true, true},
    {"trailing LF only", B "wQMBAgPSBQkJCQkJ\r\n" E "\n", false, false},
    {"trailing CR", B "wQMBAgPSBQkJCQkJ\r\n" E "\r", false, false},
    {"trailing space", B "wQMBAgPSBQkJCQkJ\r\n" E " ", false, false},
    {"junk after the last =", B "wQMBAgPSBQkJCQkJ\r\n=njUN junk!\r\n" E, true, true},
    {"junk lines after the CRC", B "wQMBAgPSBQkJCQkJ\r\n=njUN\r\nmore\r\njunk\r\n" E, true, true},
    {"= then data then =", B "wQMBAgPSBQkJCQkJ\r\n=xx\r\n=njUN\r\n" E, false, false},
    {"== after the data", B "wQMBAgPSBQkJCQkJ\r\n==njUN\r\n" E, false, false},
    {"END not at a line start", B "wQMBAgPSBQkJCQkJ\r\n=njUN" E, true, true},
    {"END right after the base64", B "wQMBAgPSBQkJCQkJ" E, true, true},
    {"lone LF line endings", B "wQMBAgPS\nBQkJCQkJ\n=njUN\n" E, true, true},
    {"lone LF after BEGIN", "-----BEGIN PGP MESSAGE-----\nwQMBAgPSBQkJCQkJ\r\n" E, false, false},
    {"CR before END", B "wQMBAgPSBQkJCQkJ\r\r" E, true, true},
    {"leading blank line before BEGIN", "\r\n" B "wQMBAgPSBQkJCQkJ\r\n" E, false, false},
    {"empty payload", B E, false, false},
    {"only CRC", B "=njUN\r\n" E, false, false},
    {"BEGIN only", B, false, false},
    {"END only", E, false, false},
    {"Version line", B "Version: GopenPGP\r\nwQMBAgPSBQkJCQkJ\r\n" E, false, true},
    {"Version line, blank line", B "Version: x\r\n\r\nwQMBAgPSBQkJCQkJ\r\n" E, false, true},
    {"Version line without CRLF", B "Version: wQMBAgPSBQkJCQkJ" E, false, false},
    {"Version with LF only", B "Version: x\nwQMBAgPSBQkJCQkJ\r\n" E, false, false},
    {"Version: empty", B "Version: \r\nwQMBAgPSBQkJCQkJ\r\n" E, false, true},
    {"Version without space", B "Version:x\r\nwQMBAgPSBQkJCQkJ\r\n" E, false, false},
    {"lowercase version", B "version: x\r\nwQMBAgPSBQkJCQkJ\r\n" E, false, false},
    {"two Version lines", B "Version: a\r\nVersion: b\r\nwQMBAgPSBQkJCQkJ\r\n" E, false, false},
    {"Comment line", B "Comment: x\r\nwQMBAgPSBQkJCQkJ\r\n" E, false, false},
    {"Version line holding =", B "Version: a=b\r\nwQMBAgPSBQkJCQkJ\r\n" E, false, true},
    {"space inside base64", B "wQMBAgPS BQkJCQkJ\r\n" E, false, false},
    {"padding without CRC (upstream cuts it)", B "wQMBAgPSBQkJCQk=\r\n" E, false, false},
    {"padding with CRC", B "wQMBAgPSBQkJCQk=\r\n=abcd\r\n" E, false, false},
};

static void test_crafted(void)
{
    for (size_t i = 0; i < sizeof(crafted) / sizeof(crafted[0]); i++)
        expect(crafted[i].name, crafted[i].text, strlen(crafted[i].text), crafted[i].out,
               crafted[i].in);
}

/* Padding that upstream keeps: base64 ending in '=' plus a CRC line. */
static void test_padding(void)
{
    static const unsigned char two[] = {0xd2, 0x02, 1, 2}; /* 4 bytes: "0gIBAg==" */
    struct text t;

    armor_of(&t, two, sizeof(two), true);
    expect("padded payload with CRC", t.p, t.n, true, true);
    armor_of(&t, two, sizeof(two), false);
    expect("padded payload without CRC", t.p, t.n, false, false);
}

/* A long armor: many lines, fed in chunks, still agrees. */
static void test_long(void)
{
    static unsigned char bin[9000];
    static struct text t;
    size_t n = sizeof(bin);

    bin[0] = 0xc1;
    bin[1] = 3;
    bin[5] = 0xd2;
    bin[6] = 0xff;
    bin[7] = 0;
    bin[8] = 0;
    bin[9] = (unsigned char)((n - 11) >> 8);
    bin[10] = (unsigned char)(n - 11);
    for (size_t i = 11; i < n; i++)
        bin[i] = (unsigned char)(i * 31);
    armor_of(&t, bin, n, true);
    expect("long", t.p, t.n, true, true);
    armor_of(&t, bin, n - 1, true);
    expect("long, one byte short", t.p, t.n, false, false);
}

int main(void)
{
    UNIT_RUN(test_vectors);
    UNIT_RUN(test_packets);
    UNIT_RUN(test_crafted);
    UNIT_RUN(test_padding);
    UNIT_RUN(test_long);
    return unit_summary();
}
