/* mproto: the milter protocol (version 6) as byte strings, with no I/O.
 *
 * The milter speaks this protocol itself instead of through libmilter. The
 * benchmark (bench/run.py) showed why: Debian's libmilter, built with its
 * worker pool, polls and reads twice for every milter command and hands each
 * command between threads, about 220 system calls for a 2 KB message, which
 * cost Postfix more than a tenth of its throughput. Postfix sends the
 * commands we ask no reply for back to back, so a buffered reader sees a
 * whole message in a few reads. The command and flag values are libmilter's
 * (libmilter/mfdef.h); the protocol is documented there and in Postfix's
 * milter8.c.
 *
 * A packet is a 4-byte big-endian length, a command byte and length - 1 bytes
 * of data.
 */
#ifndef FILTERMAIL_MPROTO_H
#define FILTERMAIL_MPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The largest packet accepted. Postfix sends body chunks of at most 64 KiB
 * and header fields of at most header_size_limit (100 KiB by default). */
#define MPROTO_MAX_PACKET (1024 * 1024)

struct mpacket {
    char cmd;
    const unsigned char *data;
    size_t len;
};

/* Finds the first packet in buf. Returns the bytes it takes (> 0) and fills
 * p; 0 when more bytes are needed; -1 when the length is 0 or over max. */
long mproto_next(const unsigned char *buf, size_t len, size_t max, struct mpacket *p);

/* Appends a packet; -1 when out has no room. */
int mproto_put(struct buf *out, char cmd, const void *data, size_t len);

/* The MTA's option negotiation ('O'): version, actions, protocol flags. */
int mproto_parse_optneg(const struct mpacket *p, uint32_t *version, uint32_t *actions,
                        uint32_t *protocol);

/* Our answer: version, actions, protocol and, when symlist is not NULL, the
 * macros wanted at stage (SMFIM_*). */
int mproto_put_optneg(struct buf *out, uint32_t version, uint32_t actions, uint32_t protocol,
                      int stage, const char *symlist);

/* The i-th NUL-terminated string of a packet's data (MAIL and RCPT
 * arguments, header name and value); NULL when there is none. Strings must be
 * terminated inside the data. */
const char *mproto_string(const struct mpacket *p, size_t i);

/* Iterates over the name/value pairs of a macro packet ('D', after its stage
 * byte): *off starts at 1. Returns false at the end or on a malformed pair. */
bool mproto_macro(const struct mpacket *p, size_t *off, const char **name, const char **value);

/* Packets sent at end of message. */
int mproto_put_str(struct buf *out, char cmd, const char *s);           /* '-', 'y' */
int mproto_put_chgfrom(struct buf *out, const char *from);              /* 'e' */
int mproto_put_insheader(struct buf *out, uint32_t idx, const char *name,
                         const char *value);                            /* 'i' */

#endif
