/* base64: streaming base64 decoders; see base64.h for the three flavours. */
#include "base64.h"

#include <stdint.h>
#include <string.h>

#define PAD 64   /* '=' */
#define BAD 0x80 /* anything else: skipped or invalid, decided by the mode */

/* Symbol values of the standard alphabet; 0x80 for every other byte. */
#define IS_SYM(c)                                                                                  \
    (((c) >= 'A' && (c) <= 'Z') || ((c) >= 'a' && (c) <= 'z') || ((c) >= '0' && (c) <= '9') ||     \
     (c) == '+' || (c) == '/')
#define SYM_VAL(c)                                                                                 \
    ((c) >= 'A' && (c) <= 'Z'   ? (c) - 'A'                                                        \
     : (c) >= 'a' && (c) <= 'z' ? (c) - 'a' + 26                                                   \
     : (c) >= '0' && (c) <= '9' ? (c) - '0' + 52                                                   \
     : (c) == '+'               ? 62                                                               \
                                : 63)
#define S(c) ((unsigned char)(IS_SYM(c) ? SYM_VAL(c) : 0x80))
#define R4(c) S(c), S((c) + 1), S((c) + 2), S((c) + 3)
#define R16(c) R4(c), R4((c) + 4), R4((c) + 8), R4((c) + 12)
#define R64(c) R16(c), R16((c) + 16), R16((c) + 32), R16((c) + 48)

static const unsigned char b64_sym[256] = {R64(0), R64(64), R64(128), R64(192)};

/* Fast-path tables (as in modp_b64): each symbol's bits already in place in a
 * little-endian word, so a quantum is four lookups ORed together; anything
 * else sets the top byte. */
#define BAD32 0xFF000000u
#define T0(c) (IS_SYM(c) ? (uint32_t)SYM_VAL(c) << 2 : BAD32)
#define T1(c)                                                                                      \
    (IS_SYM(c) ? ((uint32_t)SYM_VAL(c) >> 4 | ((uint32_t)SYM_VAL(c) & 0x0F) << 12) : BAD32)
#define T2(c)                                                                                      \
    (IS_SYM(c) ? (((uint32_t)SYM_VAL(c) >> 2) << 8 | ((uint32_t)SYM_VAL(c) & 0x03) << 22) : BAD32)
#define T3(c) (IS_SYM(c) ? (uint32_t)SYM_VAL(c) << 16 : BAD32)
#define Q4(T, c) T(c), T((c) + 1), T((c) + 2), T((c) + 3)
#define Q16(T, c) Q4(T, c), Q4(T, (c) + 4), Q4(T, (c) + 8), Q4(T, (c) + 12)
#define Q64(T, c) Q16(T, c), Q16(T, (c) + 16), Q16(T, (c) + 32), Q16(T, (c) + 48)
#define Q256(T)                                                                                    \
    {                                                                                              \
        Q64(T, 0), Q64(T, 64), Q64(T, 128), Q64(T, 192)                                            \
    }

static const uint32_t d0[256] = Q256(T0);
static const uint32_t d1[256] = Q256(T1);
static const uint32_t d2[256] = Q256(T2);
static const uint32_t d3[256] = Q256(T3);

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define STORE3(out, x) memcpy((out), &(x), 4) /* the 4th byte is overwritten next */
#else
#define STORE3(out, x)                                                                             \
    do {                                                                                           \
        (out)[0] = (unsigned char)(x);                                                             \
        (out)[1] = (unsigned char)((x) >> 8);                                                      \
        (out)[2] = (unsigned char)((x) >> 16);                                                     \
    } while (0)
#endif

static unsigned char value_of(unsigned char c)
{
    if (b64_sym[c] < 64)
        return b64_sym[c];
    return c == '=' ? PAD : BAD;
}

static bool skipped(enum base64_mode mode, unsigned char c)
{
    switch (mode) {
    case BASE64_ARMOR:
        return c == '\r' || c == '\n';
    case BASE64_MIME:
        return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
    case BASE64_WORD:
        return false;
    }
    return false;
}

void base64_init(struct base64_dec *d, enum base64_mode mode)
{
    d->mode = mode;
    d->qlen = 0;
    d->done = false;
    d->failed = false;
}

/* Decodes a complete quantum; returns the bytes written or -1. */
static int quantum(struct base64_dec *d, unsigned char *out)
{
    const unsigned char *q = d->q;
    bool strict = d->mode == BASE64_ARMOR;

    if (q[0] >= PAD || q[1] >= PAD)
        return -1;
    if (q[2] < PAD && q[3] < PAD) {
        uint32_t v = (uint32_t)q[0] << 18 | (uint32_t)q[1] << 12 | (uint32_t)q[2] << 6 | q[3];
        out[0] = (unsigned char)(v >> 16);
        out[1] = (unsigned char)(v >> 8);
        out[2] = (unsigned char)v;
        return 3;
    }
    if (q[2] == PAD && q[3] == PAD) {
        if (strict && (q[1] & 0x0F) != 0)
            return -1;
        out[0] = (unsigned char)(q[0] << 2 | q[1] >> 4);
        d->done = strict;
        return 1;
    }
    if (q[2] < PAD && q[3] == PAD) {
        if (strict && (q[2] & 0x03) != 0)
            return -1;
        out[0] = (unsigned char)(q[0] << 2 | q[1] >> 4);
        out[1] = (unsigned char)(q[1] << 4 | q[2] >> 2);
        d->done = strict;
        return 2;
    }
    return -1;
}

size_t base64_decode(struct base64_dec *d, const char *in_, size_t n, unsigned char *out)
{
    const unsigned char *in = (const unsigned char *)in_;
    bool crlf = d->mode != BASE64_WORD;
    size_t i = 0, o = 0;

    if (d->failed)
        return 0;
    while (i < n) {
        if (d->qlen == 0 && !d->done) {
            /* Whole quanta of symbols, two at a time, then one; the output
             * has room for the fourth byte each store writes (see
             * BASE64_OUT_MAX). */
            while (n - i >= 8) {
                const unsigned char *s = in + i;
                uint32_t x = d0[s[0]] | d1[s[1]] | d2[s[2]] | d3[s[3]];
                uint32_t y = d0[s[4]] | d1[s[5]] | d2[s[6]] | d3[s[7]];
                if ((x | y) & BAD32)
                    break;
                STORE3(out + o, x);
                STORE3(out + o + 3, y);
                o += 6;
                i += 8;
            }
            if (n - i >= 4) {
                const unsigned char *s = in + i;
                uint32_t x = d0[s[0]] | d1[s[1]] | d2[s[2]] | d3[s[3]];
                if (!(x & BAD32)) {
                    STORE3(out + o, x);
                    o += 3;
                    i += 4;
                    continue;
                }
            }
            if (crlf && n - i >= 2 && in[i] == '\r' && in[i + 1] == '\n') {
                i += 2;
                continue;
            }
            if (i >= n)
                break;
        }
        /* One byte at a time: skips, padding, quanta split across calls. */
        unsigned char c = in[i++];
        unsigned char v = value_of(c);
        if (v == BAD) {
            if (skipped(d->mode, c))
                continue;
            d->failed = true;
            return o;
        }
        if (d->done) { /* ARMOR: nothing may follow the padding */
            d->failed = true;
            return o;
        }
        d->q[d->qlen++] = v;
        if (d->qlen == 4) {
            int w = quantum(d, out + o);
            d->qlen = 0;
            if (w < 0) {
                d->failed = true;
                return o;
            }
            o += (size_t)w;
        }
    }
    return o;
}

bool base64_failed(const struct base64_dec *d)
{
    return d->failed;
}

bool base64_finish(struct base64_dec *d)
{
    if (d->qlen != 0)
        d->failed = true;
    return !d->failed;
}
