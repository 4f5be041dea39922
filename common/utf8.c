/* utf8: charset labels, decoding to UTF-8, Unicode whitespace; see utf8.h. */
#include "utf8.h"

#include <string.h>
#include <strings.h>

static const char *const labels_utf8[] = {
    "unicode-1-1-utf-8", "unicode11utf8", "unicode20utf8", "utf-8", "utf8", "x-unicode20utf8",
};

static const char *const labels_1252[] = {
    "ansi_x3.4-1968", "ascii",           "cp1252",     "cp819",     "csisolatin1",
    "ibm819",         "iso-8859-1",      "iso-ir-100", "iso8859-1", "iso88591",
    "iso_8859-1",     "iso_8859-1:1987", "l1",         "latin1",    "us-ascii",
    "windows-1252",   "x-cp1252",
};

static bool label_ws(char c)
{
    return c == '\t' || c == '\n' || c == '\f' || c == '\r' || c == ' ';
}

static bool in_list(const char *const *list, size_t count, const char *s, size_t n)
{
    for (size_t i = 0; i < count; i++)
        if (strlen(list[i]) == n && strncasecmp(list[i], s, n) == 0)
            return true;
    return false;
}

enum utf8_charset utf8_charset_lookup(const char *label, size_t n)
{
    while (n > 0 && label_ws(label[0])) {
        label++;
        n--;
    }
    while (n > 0 && label_ws(label[n - 1]))
        n--;
    if (in_list(labels_utf8, sizeof(labels_utf8) / sizeof(labels_utf8[0]), label, n))
        return UTF8_CS_UTF8;
    if (in_list(labels_1252, sizeof(labels_1252) / sizeof(labels_1252[0]), label, n))
        return UTF8_CS_1252;
    return UTF8_CS_UNKNOWN;
}

static size_t put_cp(char *out, unsigned long cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

static const unsigned short cp1252_high[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

/* WHATWG UTF-8 decode: each maximal invalid subpart becomes one U+FFFD. */
static size_t utf8_replace(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    unsigned need = 0, seen = 0;
    unsigned char lower = 0x80, upper = 0xBF;
    unsigned long cp = 0;

    while (i < n) {
        unsigned char b = in[i];
        if (need == 0) {
            i++;
            if (b <= 0x7F) {
                out[o++] = (char)b;
            } else if (b >= 0xC2 && b <= 0xDF) {
                need = 1;
                cp = b & 0x1F;
            } else if (b >= 0xE0 && b <= 0xEF) {
                if (b == 0xE0)
                    lower = 0xA0;
                if (b == 0xED)
                    upper = 0x9F;
                need = 2;
                cp = b & 0x0F;
            } else if (b >= 0xF0 && b <= 0xF4) {
                if (b == 0xF0)
                    lower = 0x90;
                if (b == 0xF4)
                    upper = 0x8F;
                need = 3;
                cp = b & 0x07;
            } else {
                o += put_cp(out + o, 0xFFFD);
            }
            continue;
        }
        if (b < lower || b > upper) {
            need = seen = 0;
            cp = 0;
            lower = 0x80;
            upper = 0xBF;
            o += put_cp(out + o, 0xFFFD);
            continue; /* b is looked at again */
        }
        i++;
        lower = 0x80;
        upper = 0xBF;
        cp = cp << 6 | (b & 0x3F);
        if (++seen == need) {
            o += put_cp(out + o, cp);
            need = seen = 0;
            cp = 0;
        }
    }
    if (need != 0)
        o += put_cp(out + o, 0xFFFD);
    return o;
}

size_t utf8_from_charset(enum utf8_charset cs, const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;

    if (cs == UTF8_CS_UTF8)
        return utf8_replace(in, n, out);
    for (size_t i = 0; i < n; i++) {
        unsigned long cp = in[i];
        if (cp >= 0x80 && cp < 0xA0)
            cp = cp1252_high[cp - 0x80];
        o += put_cp(out + o, cp);
    }
    return o;
}

size_t utf8_from_latin1(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++)
        o += put_cp(out + o, in[i]);
    return o;
}

bool utf8_valid(const unsigned char *in, size_t n)
{
    size_t i = 0;

    while (i < n) {
        unsigned char b = in[i];
        unsigned need;
        unsigned char lower = 0x80, upper = 0xBF;

        if (b <= 0x7F) {
            i++;
            continue;
        }
        if (b >= 0xC2 && b <= 0xDF) {
            need = 1;
        } else if (b >= 0xE0 && b <= 0xEF) {
            need = 2;
            if (b == 0xE0)
                lower = 0xA0;
            if (b == 0xED)
                upper = 0x9F;
        } else if (b >= 0xF0 && b <= 0xF4) {
            need = 3;
            if (b == 0xF0)
                lower = 0x90;
            if (b == 0xF4)
                upper = 0x8F;
        } else {
            return false;
        }
        if (n - i <= need)
            return false;
        if (in[i + 1] < lower || in[i + 1] > upper)
            return false;
        for (unsigned k = 2; k <= need; k++)
            if (in[i + k] < 0x80 || in[i + k] > 0xBF)
                return false;
        i += need + 1;
    }
    return true;
}

bool utf8_is_ws_cp(unsigned long cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* Decodes one character of valid UTF-8 at p; returns its length. */
static size_t decode_one(const unsigned char *p, size_t n, unsigned long *cp)
{
    if (p[0] < 0x80 || n < 2) {
        *cp = p[0];
        return 1;
    }
    if (p[0] < 0xE0) {
        *cp = (unsigned long)(p[0] & 0x1F) << 6 | (p[1] & 0x3F);
        return 2;
    }
    if (p[0] < 0xF0 || n < 4) {
        if (n < 3) {
            *cp = p[0];
            return 1;
        }
        *cp =
            (unsigned long)(p[0] & 0x0F) << 12 | (unsigned long)(p[1] & 0x3F) << 6 | (p[2] & 0x3F);
        return 3;
    }
    *cp = (unsigned long)(p[0] & 0x07) << 18 | (unsigned long)(p[1] & 0x3F) << 12 |
          (unsigned long)(p[2] & 0x3F) << 6 | (p[3] & 0x3F);
    return 4;
}

size_t utf8_ws_at(const char *p, size_t n)
{
    unsigned long cp;
    size_t len;

    if (n == 0)
        return 0;
    len = decode_one((const unsigned char *)p, n, &cp);
    return utf8_is_ws_cp(cp) ? len : 0;
}

size_t utf8_ws_before(const char *p, size_t n)
{
    size_t start = n;

    if (n == 0)
        return 0;
    /* Step back over continuation bytes to the lead byte (at most 3). */
    while (start > 0 && n - start < 4) {
        start--;
        if (((unsigned char)p[start] & 0xC0) != 0x80)
            break;
    }
    if (utf8_ws_at(p + start, n - start) == n - start)
        return n - start;
    return 0;
}

void utf8_trim(const char **p, size_t *n)
{
    size_t w;

    while ((w = utf8_ws_at(*p, *n)) > 0) {
        *p += w;
        *n -= w;
    }
    utf8_trim_end(*p, n);
}

void utf8_trim_end(const char *p, size_t *n)
{
    size_t w;

    while ((w = utf8_ws_before(p, *n)) > 0)
        *n -= w;
}

long utf8_nth_char(const char *s, size_t n, size_t idx)
{
    size_t i = 0, k = 0;

    while (i < n) {
        unsigned long cp;
        size_t len = decode_one((const unsigned char *)s + i, n - i, &cp);
        if (k == idx)
            return (long)cp;
        k++;
        i += len;
    }
    return -1;
}
