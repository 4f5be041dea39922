/* armor: streaming check of an ASCII-armored OpenPGP message (spec section 4.3).
 *
 * Fed the decoded body of the second part of a multipart/encrypted message, it
 * decides, without holding the payload, whether upstream filtermail's
 * check_armored_payload() would accept it: the exact BEGIN line with CRLF, the
 * END line at the end (trailing CRLF pairs allowed), one `Version: ` header line
 * only when incoming, the CRC cut at the last '=', strict base64, and then the
 * packet-sequence check of pgp_packet.h over the decoded bytes.
 *
 * Embeddable struct, no allocation; push in any chunking, then finish. Pure;
 * not thread-safe per instance.
 */
#ifndef FILTERMAIL_ARMOR_H
#define FILTERMAIL_ARMOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base64.h"
#include "pgp_packet.h"

/* Mail leaving the relay allows no armor headers; mail coming in may carry one
 * `Version:` line (GopenPGP, Proton). */
enum armor_direction { ARMOR_OUTGOING, ARMOR_INCOMING };

/* Private fields; use the functions. */
struct armor_checker {
    enum armor_direction dir;
    int state;                   /* BEGIN line, then content */
    bool failed;
    size_t matched;              /* bytes of the BEGIN line matched so far */
    unsigned char window[32];    /* the last content bytes (the END line candidate) */
    size_t wlen;
    uint64_t crlf_pairs;         /* trailing CRLF pairs not yet known to be content */
    bool pending_cr;
    int pstate;                  /* payload: look-ahead, Version line, base64 */
    unsigned char look[9];       /* the payload's first bytes ("Version: "?) */
    size_t lookn;
    bool ver_cr;                 /* in the Version line, the last byte was CR */
    bool in_tail;                /* after an '=' that may be the last one */
    bool tail_has_data;
    struct base64_dec b64;
    struct pgp_packet_checker packets;
};

void armor_init(struct armor_checker *a, enum armor_direction dir);

/* Consumes n bytes of armor text. */
void armor_push(struct armor_checker *a, const char *p, size_t n);

/* True once the input can no longer pass, whatever follows. */
bool armor_failed(const struct armor_checker *a);

/* Ends the input; true when the whole armor passed. */
bool armor_finish(struct armor_checker *a);

/* One-shot convenience: the verdict for a complete armor text. */
bool armor_check(const char *p, size_t n, enum armor_direction dir);

#endif
