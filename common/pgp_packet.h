/* pgp_packet: streaming check of an OpenPGP packet sequence (spec section 4.4).
 *
 * Passes exactly when the bytes are a sequence of packets in which every packet
 * but the last has tag 1 (PKESK) or 3 (SKESK) and the last packet has tag 18
 * (SEIPD) and ends exactly at the end of the input. Packet bodies are never
 * looked at. New-format and legacy (pre-RFC 4880) headers are accepted; partial
 * body lengths are skipped without validation, as upstream does.
 *
 * The checker is a small struct meant to be embedded (no allocation): init,
 * push bytes in any chunking, finish. Pure; not thread-safe per instance.
 */
#ifndef FILTERMAIL_PGP_PACKET_H
#define FILTERMAIL_PGP_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Private fields; use the functions. */
struct pgp_packet_checker {
    int state;
    bool failed;
    bool have_packet;
    unsigned char tag;
    unsigned char last_tag;
    unsigned char len_bytes_left;
    bool plus192;             /* a two-octet new-format length */
    uint64_t len;
    uint64_t skip;
};

void pgp_packet_init(struct pgp_packet_checker *c);

/* Consumes n bytes. Cheap for bytes inside packet bodies (O(1) per call). */
void pgp_packet_push(struct pgp_packet_checker *c, const unsigned char *p, size_t n);

/* True once the input can no longer pass, whatever follows. */
bool pgp_packet_failed(const struct pgp_packet_checker *c);

/* Ends the input; true when the whole input passed. */
bool pgp_packet_finish(struct pgp_packet_checker *c);

#endif
