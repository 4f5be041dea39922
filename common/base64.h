/* base64: streaming base64 decoders (RFC 4648 standard alphabet).
 *
 * Three flavours, each matching one decoder upstream filtermail relies on:
 *
 *  BASE64_ARMOR  the armor payload decoder (Rust base64 STANDARD after CR and LF
 *                were removed): CR and LF are skipped, anything else outside
 *                the alphabet fails, padding is required and canonical
 *                (non-zero trailing bits fail), nothing may follow the padded
 *                quantum.
 *  BASE64_MIME   Content-Transfer-Encoding: base64 (mailparse: ASCII
 *                whitespace removed, then data_encoding BASE64_MIME_PERMISSIVE):
 *                space, HT, LF, FF and CR are skipped; padding is required
 *                (whole quanta only) but a padded quantum may be followed by
 *                more quanta (concatenated encodings); trailing bits are
 *                ignored; any other byte fails.
 *  BASE64_WORD   RFC 2047 "B" encoded words: as BASE64_MIME, but nothing is
 *                skipped.
 *
 * A decoder is a small struct to embed (no allocation): init, decode spans in
 * any chunking, finish. Pure; not thread-safe per instance.
 */
#ifndef FILTERMAIL_BASE64_H
#define FILTERMAIL_BASE64_H

#include <stdbool.h>
#include <stddef.h>

enum base64_mode { BASE64_ARMOR, BASE64_MIME, BASE64_WORD };

/* Private fields; use the functions. */
struct base64_dec {
    enum base64_mode mode;
    unsigned char q[4]; /* symbols (or the pad marker) of the pending quantum */
    unsigned qlen;
    bool done; /* ARMOR: a padded quantum ended the input */
    bool failed;
};

void base64_init(struct base64_dec *d, enum base64_mode mode);

/* The most bytes base64_decode can write for n input bytes. */
#define BASE64_OUT_MAX(n) (((n) / 4 + 1) * 3)

/* Decodes n bytes, writing the decoded bytes to out, which must have room for
 * BASE64_OUT_MAX(n) bytes. Returns the number written. Once the input is
 * invalid the decoder is failed and writes nothing more. */
size_t base64_decode(struct base64_dec *d, const char *in, size_t n, unsigned char *out);

/* True once the input can no longer be valid. */
bool base64_failed(const struct base64_dec *d);

/* Ends the input; true when everything decoded was valid and complete. */
bool base64_finish(struct base64_dec *d);

#endif
