/* spool: the message from stdin, kept in SMTP transparent form in an unnamed
 * temporary file.
 *
 * Both channels send the same bytes: the HTTPS body of /mxdeliv is the mail
 * data with CRLF line ends and leading dots doubled, without the final "."
 * line, and SMTP DATA is that plus ".\r\n". So the message is converted once,
 * while it streams in from pipe(8), into a file that is bounded by the
 * configured maximum message size; memory use does not depend on its size.
 *
 * The encoder is pure (no I/O): bare LF and bare CR become CRLF, a line
 * starting with '.' gets a second one, and a last line without a line end is
 * completed. Not thread-safe; one owner.
 */
#ifndef FILTERMAIL_SPOOL_H
#define FILTERMAIL_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct spool_encoder {
    bool line_start; /* the next byte starts a line */
    bool cr;         /* a CR was seen and its LF not yet */
    bool eightbit;   /* a byte >= 0x80 was seen */
};

/* Bytes of output that spool_encode may write for n bytes of input. */
#define SPOOL_ENCODE_MAX(n) (2 * (n) + 2)

void spool_encoder_init(struct spool_encoder *e);

/* Encodes in[0..n) into out, which has room for SPOOL_ENCODE_MAX(n) bytes.
 * Returns the number of bytes written. */
size_t spool_encode(struct spool_encoder *e, const unsigned char *in, size_t n,
                    unsigned char *out);

/* Completes the data (a pending CR, a last line without its line end). Writes
 * at most 2 bytes to out; returns how many. */
size_t spool_encode_finish(struct spool_encoder *e, unsigned char *out);

/* The converted message. */
struct spool {
    int fd;          /* unnamed file, read with pread; -1 when closed */
    uint64_t size;   /* bytes in transparent form */
    bool eightbit;   /* the message has bytes >= 0x80 (BODY=8BITMIME) */
    unsigned char digest[32]; /* SHA-256 of the bytes in transparent form: two
                                 spools with the same one hold the same message */
};

enum spool_status { SPOOL_OK, SPOOL_ERROR, SPOOL_TOO_BIG };

/* Reads in_fd to its end and converts it into a new unnamed file in dir (or
 * in /tmp when dir is NULL, "" or unusable). More than max_in bytes of input
 * give SPOOL_TOO_BIG (the rest is not read); an I/O error, or input still not
 * ended at until_ms (monotonic milliseconds, clock_mono_ms()), gives
 * SPOOL_ERROR with a message in err. On SPOOL_OK, s is set up; close it with
 * spool_close. */
enum spool_status spool_from_fd(int in_fd, const char *dir, uint64_t max_in, int64_t until_ms,
                                struct spool *s, char *err, size_t errlen);

/* As spool_from_fd, from bytes in memory (tests and benchmarks). */
enum spool_status spool_from_bytes(const void *data, size_t len, const char *dir,
                                   struct spool *s, char *err, size_t errlen);

/* Reads at most len bytes at offset off. Returns the count (0 at the end), or
 * -1 with errno set. Thread-safe (pread). */
long spool_read(const struct spool *s, uint64_t off, void *buf, size_t len);

void spool_close(struct spool *s);

#endif
