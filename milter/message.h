/* message: what the milter counts of one message while it streams by: its
 * size against max_message_size, and the From fields (how many, and the
 * value of the first, which the policy and the DKIM alignment read).
 *
 * Pure; one struct per message, used by one thread at a time.
 */
#ifndef FILTERMAIL_MESSAGE_H
#define FILTERMAIL_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest From value kept; a longer one is kept as "" (no address). */
#define MESSAGE_MAX_FROM 4096

struct message {
    uint64_t max_size;       /* max_message_size */
    uint64_t size;           /* bytes counted so far */
    bool oversize;           /* over max_size, or a field too long to look at */
    size_t from_count;       /* From fields */
    char from[MESSAGE_MAX_FROM]; /* the first From value; "" when none or too long */
};

/* Starts a message that may have max_size bytes. */
void message_reset(struct message *m, uint64_t max_size);

/* Counts n more bytes of the message. Returns false once it is over
 * max_size (and from then on): the rest is not to be looked at. */
bool message_account(struct message *m, size_t n);

/* A header field as Postfix gives it (value with its leading space when
 * SMFIP_HDR_LEADSPC was negotiated): counts it as it was in the message
 * (name, ':', value, CRLF) and notes a From field. Returns false once the
 * message is over max_size (the field is not noted). */
bool message_header(struct message *m, const char *name, const char *value);

/* The message cannot be looked at whole (a field over the milter's limit):
 * it is the message's fault, answered like an oversized one (552). */
void message_set_oversize(struct message *m);

#endif
