/* rfc2047: a header field value as mailparse's MailHeader::get_value gives it.
 *
 * The raw value (the bytes after the colon and the skipped spaces, folding line
 * breaks included, trailing CR/LF excluded) is read as UTF-8, or as Latin-1 when
 * it is not valid UTF-8. Each line is stripped of leading whitespace and the
 * line breaks become single spaces; RFC 2047 encoded words ("=?cs?B?...?=",
 * "=?cs?Q?...?=") are decoded when their charset is UTF-8 or windows-1252
 * (WHATWG labels: us-ascii, iso-8859-1, latin1, ...), and whitespace between
 * two adjacent encoded words is dropped. Words in other charsets, or that do
 * not decode, stay as they are. Trailing whitespace is kept.
 *
 * Pure; thread-safe (no state).
 */
#ifndef FILTERMAIL_RFC2047_H
#define FILTERMAIL_RFC2047_H

#include <stdbool.h>
#include <stddef.h>

/* Scratch room rfc2047_decode needs for an n-byte raw value. */
#define RFC2047_SCRATCH(n) (16 * (n) + 256)

/* Decodes raw[0..n) into out (at most cap bytes; *truncated_r set when the
 * result was longer), using scratch (at least RFC2047_SCRATCH(n) bytes).
 * Returns the length written. out is not NUL-terminated. */
size_t rfc2047_decode(const char *raw, size_t n, char *scratch, size_t scratch_cap, char *out,
                      size_t cap, bool *truncated_r);

#endif
