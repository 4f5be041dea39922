/* qp: streaming quoted-printable decoder (RFC 2045 6.7), robust mode.
 *
 * Decodes as the Rust quoted_printable crate does in ParseMode::Robust, which is
 * what mailparse applies to Content-Transfer-Encoding: quoted-printable and to
 * RFC 2047 "Q" words:
 *  - bytes other than HT, CR, LF and 0x20-0x7E are dropped;
 *  - the input is split into lines at LF (a CR before the LF belongs to the
 *    line break); trailing whitespace (SP, HT, CR) of every line is removed;
 *  - "=XY" with two hex digits (either case) gives the byte; an invalid escape
 *    passes through as it is; a line ending in "=" is a soft break;
 *  - lines are joined with CRLF, whatever the input used; no line break follows
 *    the last line.
 *
 * Bounded memory: a run of whitespace that might be trailing is held back; at
 * most QP_WS_MAX bytes of it are kept, so a longer run that turns out not to be
 * trailing comes out shortened to its first QP_WS_MAX bytes (a deliberate
 * limit: the checks downstream give the same verdict either way).
 *
 * Embeddable struct, no allocation. Pure; not thread-safe per instance.
 */
#ifndef FILTERMAIL_QP_H
#define FILTERMAIL_QP_H

#include <stdbool.h>
#include <stddef.h>

#define QP_WS_MAX 64

/* Private fields; use the functions. */
struct qp_dec {
    int esc;         /* 0, 1 after '=', 2 after '=' and one more byte */
    char upper;      /* the byte after '=' */
    bool pend_break; /* a line ended; CRLF comes out if another line starts */
    char ws[QP_WS_MAX];
    size_t wslen;
};

void qp_init(struct qp_dec *d);

/* The value of a hex digit (either case), or -1; for "=XY" here and for the
 * "%XY" of RFC 2231 parameter values. */
int qp_hexval(unsigned char c);

/* The most bytes qp_decode or qp_finish can write for n input bytes. */
#define QP_OUT_MAX(n) (3 * (n) + QP_WS_MAX + 8)

/* Decodes n bytes into out (room for QP_OUT_MAX(n) bytes); returns the number
 * of bytes written. */
size_t qp_decode(struct qp_dec *d, const char *in, size_t n, char *out);

/* Ends the input; writes what is still pending (room for QP_OUT_MAX(0)) and
 * returns its length. */
size_t qp_finish(struct qp_dec *d, char *out);

/* One-shot: decodes in[0..n) into out (room for QP_OUT_MAX(n)). */
size_t qp_decode_all(const char *in, size_t n, char *out);

#endif
