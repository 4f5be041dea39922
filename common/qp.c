/* qp: streaming robust quoted-printable decoder; see qp.h. */
#include "qp.h"

#include <string.h>

void qp_init(struct qp_dec *d)
{
    d->esc = 0;
    d->upper = 0;
    d->pend_break = false;
    d->wslen = 0;
}

int qp_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* One byte of a line after trailing-whitespace trimming. */
static size_t line_byte(struct qp_dec *d, char c, char *out)
{
    switch (d->esc) {
    case 0:
        if (c == '=') {
            d->esc = 1;
            return 0;
        }
        out[0] = c;
        return 1;
    case 1:
        d->upper = c;
        d->esc = 2;
        return 0;
    default: {
        int hi = qp_hexval((unsigned char)d->upper), lo = qp_hexval((unsigned char)c);
        d->esc = 0;
        if (hi >= 0 && lo >= 0) {
            out[0] = (char)(hi << 4 | lo);
            return 1;
        }
        out[0] = '=';
        out[1] = d->upper;
        out[2] = c;
        return 3;
    }
    }
}

/* The end of a line (after trimming). */
static size_t line_end(struct qp_dec *d, char *out)
{
    size_t o = 0;

    if (d->esc == 1) { /* soft line break: no CRLF */
        d->esc = 0;
        d->pend_break = false;
        return 0;
    }
    if (d->esc == 2) {
        out[o++] = '=';
        out[o++] = d->upper;
        d->esc = 0;
    }
    d->pend_break = true;
    return o;
}

size_t qp_decode(struct qp_dec *d, const char *in, size_t n, char *out)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];

        if (!(c == '\t' || c == '\r' || c == '\n' || (c >= 0x20 && c <= 0x7E)))
            continue;        /* dropped before splitting into lines */
        if (d->pend_break) { /* another line follows: the break comes out */
            out[o++] = '\r';
            out[o++] = '\n';
            d->pend_break = false;
        }
        if (c == '\n') {
            d->wslen = 0; /* trailing whitespace of the line */
            o += line_end(d, out + o);
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r') {
            if (d->wslen < QP_WS_MAX)
                d->ws[d->wslen++] = (char)c;
            continue;
        }
        for (size_t k = 0; k < d->wslen; k++)
            o += line_byte(d, d->ws[k], out + o);
        d->wslen = 0;
        /* Plain runs go straight through. */
        if (d->esc == 0 && c != '=') {
            size_t j = i;
            while (j < n) {
                unsigned char b = (unsigned char)in[j];
                if (b < 0x21 || b > 0x7E || b == '=')
                    break;
                j++;
            }
            memcpy(out + o, in + i, j - i);
            o += j - i;
            i = j - 1;
            continue;
        }
        o += line_byte(d, (char)c, out + o);
    }
    return o;
}

size_t qp_finish(struct qp_dec *d, char *out)
{
    size_t o = 0;

    d->wslen = 0;
    if (d->esc == 2) {
        out[o++] = '=';
        out[o++] = d->upper;
    }
    d->esc = 0;
    d->pend_break = false;
    return o;
}

size_t qp_decode_all(const char *in, size_t n, char *out)
{
    struct qp_dec d;
    size_t o;

    qp_init(&d);
    o = qp_decode(&d, in, n, out);
    return o + qp_finish(&d, out + o);
}
