/* ref_armor: a plain, non-streaming transcription of upstream filtermail's
 * check_armored_payload() and check_openpgp_payload() (spec 4.3, 4.4), for
 * differential tests and fuzzing against the streaming armor.c/pgp_packet.c.
 * Allocates a copy of the input; not for production. Thread-safe. */
#ifndef FILTERMAIL_REF_ARMOR_H
#define FILTERMAIL_REF_ARMOR_H

#include <stdbool.h>
#include <stddef.h>

/* The packet walk over a whole decoded payload. */
bool ref_packet_check(const unsigned char *p, size_t n);

/* The armor check; outgoing selects the direction. Aborts when out of memory. */
bool ref_armor_check(const char *p, size_t n, bool outgoing);

/* Strict standard base64 (padding required and canonical, no trailing bits,
 * nothing else allowed). Returns false when invalid; *out_r is malloc'd. */
bool ref_base64_strict(const char *p, size_t n, unsigned char **out_r, size_t *len_r);

#endif
