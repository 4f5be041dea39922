/* pgp_packet: streaming OpenPGP packet-sequence check (spec 4.4).
 *
 * Upstream walks an index over the whole buffer; here the same walk is a state
 * machine that only reads header octets and skips bodies by count, so packet
 * bodies cost O(1) per push. */
#include "pgp_packet.h"

enum {
    ST_HEADER,   /* at a packet start (the first, or after a body) */
    ST_NEW_LEN,  /* new format: the first length octet */
    ST_LEN_MORE, /* further length octets (len_bytes_left of them) */
    ST_SKIP,     /* inside a body or a partial chunk: skip bytes */
};

/* After a skip: what follows. A partial chunk is followed by another length. */
#define AFTER_PARTIAL 1
#define AFTER_BODY 0

void pgp_packet_init(struct pgp_packet_checker *c)
{
    c->state = ST_HEADER;
    c->failed = false;
    c->have_packet = false;
    c->tag = 0;
    c->last_tag = 0;
    c->len_bytes_left = 0;
    c->plus192 = false;
    c->len = 0;
    c->skip = 0;
}

/* Starts skipping len bytes of body; the packet ends after them. */
static void start_body(struct pgp_packet_checker *c, uint64_t len)
{
    c->skip = len;
    c->len = AFTER_BODY;
    c->state = ST_SKIP;
    if (len == 0) {
        c->last_tag = c->tag;
        c->have_packet = true;
        c->state = ST_HEADER;
    }
}

/* A header octet. */
static void header(struct pgp_packet_checker *c, unsigned char h)
{
    /* Another packet follows the previous one, which therefore must be a
     * session key packet. */
    if (c->have_packet && c->last_tag != 1 && c->last_tag != 3) {
        c->failed = true;
        return;
    }
    if ((h & 0xC0) == 0xC0) {
        c->tag = h & 0x3F;
        c->state = ST_NEW_LEN;
    } else if ((h & 0xC0) == 0x80) {
        static const unsigned char octets[3] = {1, 2, 4};
        unsigned lt = h & 0x03;
        c->tag = (h >> 2) & 0x0F;
        if (lt == 3) { /* indeterminate length */
            c->failed = true;
            return;
        }
        c->len = 0;
        c->len_bytes_left = octets[lt];
        c->state = ST_LEN_MORE;
    } else {
        c->failed = true;
    }
}

/* The first new-format length octet. */
static void new_len(struct pgp_packet_checker *c, unsigned char o)
{
    if (o < 192) {
        start_body(c, o);
    } else if (o < 224) {
        c->len = (uint64_t)(o - 192);
        c->plus192 = true;
        c->len_bytes_left = 1;
        c->state = ST_LEN_MORE;
    } else if (o < 255) { /* partial chunk of 2^(o & 0x1F) bytes, then a length */
        c->skip = (uint64_t)1 << (o & 0x1F);
        c->len = AFTER_PARTIAL;
        c->state = ST_SKIP;
    } else {
        c->len = 0;
        c->len_bytes_left = 4;
        c->state = ST_LEN_MORE;
    }
}

void pgp_packet_push(struct pgp_packet_checker *c, const unsigned char *p, size_t n)
{
    size_t i = 0;

    while (i < n && !c->failed) {
        switch (c->state) {
        case ST_HEADER:
            header(c, p[i++]);
            break;
        case ST_NEW_LEN:
            new_len(c, p[i++]);
            break;
        case ST_LEN_MORE:
            c->len = c->len << 8 | p[i++];
            if (--c->len_bytes_left == 0) {
                uint64_t len = c->len + (c->plus192 ? 192 : 0);
                c->plus192 = false;
                start_body(c, len);
            }
            break;
        case ST_SKIP: {
            uint64_t room = n - i;
            if (c->skip > room) {
                c->skip -= room;
                i = n;
                break;
            }
            i += (size_t)c->skip;
            c->skip = 0;
            if (c->len == AFTER_PARTIAL) {
                c->state = ST_NEW_LEN;
            } else {
                c->last_tag = c->tag;
                c->have_packet = true;
                c->state = ST_HEADER;
            }
            break;
        }
        }
    }
}

bool pgp_packet_failed(const struct pgp_packet_checker *c)
{
    return c->failed;
}

bool pgp_packet_finish(struct pgp_packet_checker *c)
{
    if (c->failed || c->state != ST_HEADER || !c->have_packet)
        return false;
    return c->last_tag == 18;
}
