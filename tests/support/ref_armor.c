/* ref_armor: literal transcription of upstream's armor and packet checks. */
#include "ref_armor.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Reading past the end is a truncated header: the whole check fails. */
#define GET(i, v)                                                                                  \
    do {                                                                                           \
        if ((i) >= n)                                                                              \
            return false;                                                                          \
        (v) = p[(i)];                                                                              \
    } while (0)

bool ref_packet_check(const unsigned char *p, size_t n)
{
    uint64_t i = 0;

    while (i < n) {
        unsigned h, tag, o;
        uint64_t len;

        GET(i, h);
        if ((h & 0xC0) == 0xC0) {
            tag = h & 0x3F;
            i += 1;
            for (;;) { /* partial body lengths */
                GET(i, o);
                if (o >= 224 && o < 255)
                    i += 1 + ((uint64_t)1 << (o & 0x1F));
                else
                    break;
            }
            GET(i, o);
            if (o < 192) {
                len = o;
                i += 1;
            } else if (o < 224) {
                unsigned o2;
                GET(i + 1, o2);
                len = ((uint64_t)(o - 192) << 8) + o2 + 192;
                i += 2;
            } else {
                unsigned b1, b2, b3, b4;
                GET(i + 1, b1);
                GET(i + 2, b2);
                GET(i + 3, b3);
                GET(i + 4, b4);
                len = (uint64_t)b1 << 24 | (uint64_t)b2 << 16 | (uint64_t)b3 << 8 | b4;
                i += 5;
            }
        } else if ((h & 0xC0) == 0x80) {
            unsigned lt = h & 0x03, b;
            tag = (h >> 2) & 0x0F;
            i += 1;
            if (lt == 3)
                return false;
            len = 0;
            for (unsigned k = 0; k < (lt == 0 ? 1u : lt == 1 ? 2u : 4u); k++) {
                GET(i, b);
                len = len << 8 | b;
                i += 1;
            }
        } else {
            return false;
        }
        i += len;
        if (i == n)
            return tag == 18;
        if (tag != 1 && tag != 3)
            return false;
    }
    return false;
}

static int b64v(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

bool ref_base64_strict(const char *s, size_t n, unsigned char **out_r, size_t *len_r)
{
    unsigned char *out;
    size_t o = 0;

    *out_r = NULL;
    *len_r = 0;
    if (n % 4 != 0)
        return false;
    out = malloc(n / 4 * 3 + 1);
    if (out == NULL)
        abort();
    for (size_t i = 0; i < n; i += 4) {
        const unsigned char *q = (const unsigned char *)s + i;
        bool last = i + 4 == n;
        int v0 = b64v(q[0]), v1 = b64v(q[1]), v2 = b64v(q[2]), v3 = b64v(q[3]);
        if (v0 < 0 || v1 < 0)
            goto bad;
        if (v2 >= 0 && v3 >= 0) {
            out[o++] = (unsigned char)(v0 << 2 | v1 >> 4);
            out[o++] = (unsigned char)(v1 << 4 | v2 >> 2);
            out[o++] = (unsigned char)(v2 << 6 | v3);
        } else if (last && v2 < 0 && q[2] == '=' && q[3] == '=') {
            if (v1 & 0x0F)
                goto bad;
            out[o++] = (unsigned char)(v0 << 2 | v1 >> 4);
        } else if (last && v2 >= 0 && q[3] == '=') {
            if (v2 & 0x03)
                goto bad;
            out[o++] = (unsigned char)(v0 << 2 | v1 >> 4);
            out[o++] = (unsigned char)(v1 << 4 | v2 >> 2);
        } else {
            goto bad;
        }
    }
    *out_r = out;
    *len_r = o;
    return true;
bad:
    free(out);
    return false;
}

static bool starts_with(const char *s, size_t n, const char *pre)
{
    size_t k = strlen(pre);
    return n >= k && memcmp(s, pre, k) == 0;
}

static bool ends_with(const char *s, size_t n, const char *suf)
{
    size_t k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

bool ref_armor_check(const char *in, size_t n, bool outgoing)
{
    static const char prefix[] = "-----BEGIN PGP MESSAGE-----\r\n";
    static const char suffix[] = "-----END PGP MESSAGE-----";
    const char *s;
    char *clean;
    size_t len, k = 0;
    unsigned char *bin;
    size_t binlen;
    bool ok;

    if (!starts_with(in, n, prefix))
        return false;
    s = in + strlen(prefix);
    len = n - strlen(prefix);
    while (ends_with(s, len, "\r\n"))
        len -= 2;
    if (!ends_with(s, len, suffix))
        return false;
    len -= strlen(suffix);
    if (starts_with(s, len, "Version: ")) {
        if (outgoing)
            return false;
        const char *crlf = memmem(s, len, "\r\n", 2);
        if (crlf != NULL) {
            len -= (size_t)(crlf + 2 - s);
            s = crlf + 2;
        }
    }
    while (starts_with(s, len, "\r\n")) {
        s += 2;
        len -= 2;
    }
    for (size_t i = len; i > 0; i--) { /* cut at the last '=' */
        if (s[i - 1] == '=') {
            len = i - 1;
            break;
        }
    }
    clean = malloc(len + 1);
    if (clean == NULL)
        abort();
    for (size_t i = 0; i < len; i++)
        if (s[i] != '\r' && s[i] != '\n')
            clean[k++] = s[i];
    ok = ref_base64_strict(clean, k, &bin, &binlen);
    free(clean);
    if (!ok)
        return false;
    ok = ref_packet_check(bin, binlen);
    free(bin);
    return ok;
}
