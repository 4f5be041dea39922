/* utf8: the few text-encoding helpers the MIME code needs.
 *
 * Character sets are what upstream's Rust crates do with them: WHATWG labels
 * (encoding_rs), so "us-ascii", "iso-8859-1" and "latin1" all mean
 * windows-1252; malformed UTF-8 becomes U+FFFD per maximal subpart; Rust's
 * char::is_whitespace is the whitespace test. Only UTF-8 and windows-1252 are
 * known; every other label is reported as unknown.
 *
 * Pure functions on caller buffers; thread-safe.
 */
#ifndef FILTERMAIL_UTF8_H
#define FILTERMAIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

enum utf8_charset { UTF8_CS_UNKNOWN, UTF8_CS_UTF8, UTF8_CS_1252 };

/* The charset a WHATWG label names (surrounding ASCII whitespace and case
 * ignored). */
enum utf8_charset utf8_charset_lookup(const char *label, size_t n);

/* Decodes n bytes of charset cs (not UNKNOWN) to UTF-8 into out (room for
 * 3 * n bytes); returns the length written. */
size_t utf8_from_charset(enum utf8_charset cs, const unsigned char *in, size_t n, char *out);

/* Latin-1 (ISO-8859-1, byte = code point) to UTF-8; out has room for 2 * n. */
size_t utf8_from_latin1(const unsigned char *in, size_t n, char *out);

/* True when in[0..n) is valid UTF-8 (Rust's str::from_utf8). */
bool utf8_valid(const unsigned char *in, size_t n);

/* Length of the whitespace character (Rust char::is_whitespace) that starts at
 * p, or 0. p[0..n) must be valid UTF-8 from that point. */
size_t utf8_ws_at(const char *p, size_t n);

/* Length of the whitespace character that ends at p + n, or 0. */
size_t utf8_ws_before(const char *p, size_t n);

/* Trims whitespace (Rust str::trim) from both ends of *p, *n. */
void utf8_trim(const char **p, size_t *n);

/* Trims whitespace at the end (Rust str::trim_end). */
void utf8_trim_end(const char *p, size_t *n);

/* The code point of the idx-th character of valid UTF-8 s[0..n), or -1 when
 * there are fewer characters. */
long utf8_nth_char(const char *s, size_t n, size_t idx);

/* True for the code points Rust's char::is_whitespace accepts. */
bool utf8_is_ws_cp(unsigned long cp);

#endif
