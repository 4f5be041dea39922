/* dkimsig: DKIM signatures, rsa-sha256 (RFC 6376) and ed25519-sha256
 * (RFC 8463), relaxed/simple.
 *
 * Written here rather than taken from libopendkim, for a reason measured for
 * each algorithm:
 *  - Ed25519: libopendkim 2.11 never frees the key it loads for an Ed25519
 *    signature (dkim_privkey_load in dkim_eom; dkim_free only frees RSA
 *    keys): a relay signing with Ed25519 would lose about 1.3 KB per message.
 *  - RSA: libopendkim takes the key as PEM text and decodes it again for
 *    every signature. With OpenSSL 3 that decoding and the first use of the
 *    fresh key cost 0.6 ms of the 0.9 ms a 2048-bit signature then takes,
 *    twice the signature itself; a key decoded once at start-up signs in
 *    0.3 ms (bench/README.md, "DKIM signing").
 * The algorithm is small and fully specified (RFC 6376 3.4.2 relaxed header
 * and 3.4.3 simple body canonicalisation, 3.7 hash computation; RSASSA-PKCS1-
 * v1_5 with SHA-256 over the header data, or RFC 8463 3: PureEdDSA over its
 * SHA-256 hash); OpenSSL does the cryptography. Every signature is checked
 * in the tests by libopendkim (our verifier) and by python3-dkim.
 *
 * Header fields whose names are in the sign list are kept (bounded) until the
 * end; the body is hashed as it streams.
 */
#ifndef FILTERMAIL_DKIMSIG_H
#define FILTERMAIL_DKIMSIG_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>

/* The signed fields kept per message, at most (bytes). */
#define DKIMSIG_MAX_HEADERS (256 * 1024)
/* The largest signature (bytes): an RSA key of 8192 bits. */
#define DKIMSIG_MAX_SIG 1024

struct dkimsig_params {
    EVP_PKEY *key;                   /* RSA or Ed25519 private key (borrowed) */
    const char *domain, *selector;
    const char *const *sign;         /* names signed when present (lowercase) */
    const char *const *oversign;     /* names listed once more than present */
    time_t t;                        /* signing time */
    uint64_t ttl;                    /* 0: no x= */
};

struct dkimsig_msg;

/* NULL when out of memory. The params' strings and key must outlive it. */
struct dkimsig_msg *dkimsig_msg_new(const struct dkimsig_params *p);
void dkimsig_msg_free(struct dkimsig_msg **m);

/* One field without the final CRLF (folded lines joined with CRLF). */
void dkimsig_header(struct dkimsig_msg *m, const char *field, size_t len);
/* A chunk of the body, CRLF line ends. */
void dkimsig_body(struct dkimsig_msg *m, const void *data, size_t len);
/* The DKIM-Signature value (no name; folded with LF + TAB) in value; 0, or -1
 * with a reason in value. */
int dkimsig_finish(struct dkimsig_msg *m, char *value, size_t len);

#endif
