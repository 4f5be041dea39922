/* Fuzz target: the streaming armor check (armor.c) agrees with the literal
 * transcription of upstream's check_armored_payload() (ref_armor.c), in both
 * directions, fed whole, byte by byte and in chunks derived from the input.
 *
 * The first byte chooses the shape: raw armor text, or (bit 0 set) the rest is
 * taken as packet bytes and wrapped into plausible armor (BEGIN line, optional
 * Version line, base64 in lines of varying length and line ending, optional
 * CRC, END line, trailing blank lines), so the packet and base64 paths are
 * reached often. Aborts on any disagreement. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "armor.h"
#include "ref_armor.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool stream(const char *p, size_t n, enum armor_direction dir, uint32_t seed, int mode)
{
    struct armor_checker a;
    bool failed = false, ok;
    size_t i = 0;

    armor_init(&a, dir);
    while (i < n) {
        size_t take = n - i;
        if (mode == 1) {
            take = 1;
        } else if (mode == 2) {
            seed = seed * 1103515245u + 12345u;
            take = 1 + (seed >> 16) % 97;
            if (seed & 0x80000000u)
                take += 60;
            if (take > n - i)
                take = n - i;
        }
        armor_push(&a, p + i, take);
        failed = failed || armor_failed(&a);
        i += take;
    }
    ok = armor_finish(&a);
    if (failed && ok) /* "failed" must be final */
        abort();
    return ok;
}

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static size_t put(char *out, const char *s)
{
    size_t n = strlen(s);
    memcpy(out, s, n);
    return n;
}

/* Wraps packet bytes into armor text; returns its length (buf is big enough). */
static size_t wrap(const uint8_t *p, size_t n, uint8_t flags, char *out)
{
    size_t o = 0, col = 0, width = 16 + (flags >> 4) * 4;
    const char *nl = (flags & 2) ? "\n" : "\r\n";

    o += put(out + o, "-----BEGIN PGP MESSAGE-----\r\n");
    if (flags & 4)
        o += put(out + o, (flags & 8) ? "Version: fuzz\r\n\r\n" : "Version: fuzz\r\n");
    else
        o += put(out + o, "\r\n");
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        size_t k = n - i < 3 ? n - i : 3;
        if (k > 1)
            v |= (uint32_t)p[i + 1] << 8;
        if (k > 2)
            v |= p[i + 2];
        char q[4] = {b64chars[v >> 18 & 63], b64chars[v >> 12 & 63],
                     k > 1 ? b64chars[v >> 6 & 63] : '=', k > 2 ? b64chars[v & 63] : '='};
        for (int j = 0; j < 4; j++) {
            out[o++] = q[j];
            if (++col == width) {
                o += put(out + o, nl);
                col = 0;
            }
        }
    }
    if (col)
        o += put(out + o, nl);
    if (!(flags & 1))
        o += put(out + o, "=abcd\r\n");
    o += put(out + o, "-----END PGP MESSAGE-----");
    if (flags & 8)
        o += put(out + o, "\r\n\r\n");
    return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = NULL;
    const char *p;
    size_t n;

    if (size < 2)
        return 0;
    if (data[0] & 1) {
        text = malloc(size * 3 + 256);
        if (text == NULL)
            return 0;
        n = wrap(data + 2, size - 2, data[1], text);
        p = text;
    } else {
        p = (const char *)data + 1;
        n = size - 1;
    }
    for (int dir = 0; dir < 2; dir++) {
        bool want = ref_armor_check(p, n, dir == 0);
        enum armor_direction d = dir == 0 ? ARMOR_OUTGOING : ARMOR_INCOMING;
        for (int mode = 0; mode < 3; mode++)
            if (stream(p, n, d, (uint32_t)size * 2654435761u + data[0], mode) != want)
                abort();
    }
    free(text);
    return 0;
}
