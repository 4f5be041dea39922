/* edsign: ed25519-sha256 DKIM signatures (RFC 8463), relaxed/simple.
 *
 * Written here rather than taken from libopendkim because libopendkim 2.11
 * never frees the key it loads for an Ed25519 signature (dkim_privkey_load in
 * dkim_eom; dkim_free only frees RSA keys): a relay signing with Ed25519 would
 * lose about 1.3 KB per message. The algorithm is small and fully specified
 * (RFC 6376 3.4.2 relaxed header and 3.4.3 simple body canonicalisation,
 * 3.7 hash computation; RFC 8463 3 signing the SHA-256 hash with PureEdDSA);
 * OpenSSL does the cryptography. Every signature is checked in the tests by
 * libopendkim (our verifier) and by python3-dkim.
 *
 * Header fields whose names are in the sign list are kept (bounded) until the
 * end; the body is hashed as it streams.
 */
#ifndef FILTERMAIL_EDSIGN_H
#define FILTERMAIL_EDSIGN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>

/* The signed fields kept per message, at most (bytes). */
#define EDSIGN_MAX_HEADERS (256 * 1024)

struct edsign_params {
    EVP_PKEY *key;                   /* Ed25519 private key (borrowed) */
    const char *domain, *selector;
    const char *const *sign;         /* names signed when present (lowercase) */
    const char *const *oversign;     /* names listed once more than present */
    time_t t;                        /* signing time */
    uint64_t ttl;                    /* 0: no x= */
};

struct edsign_msg;

/* NULL when out of memory. The params' strings and key must outlive it. */
struct edsign_msg *edsign_msg_new(const struct edsign_params *p);
void edsign_msg_free(struct edsign_msg **m);

/* One field without the final CRLF (folded lines joined with CRLF). */
void edsign_header(struct edsign_msg *m, const char *field, size_t len);
/* A chunk of the body, CRLF line ends. */
void edsign_body(struct edsign_msg *m, const void *data, size_t len);
/* The DKIM-Signature value (no name; folded with LF + TAB) in value; 0, or -1
 * with a reason in value. */
int edsign_finish(struct edsign_msg *m, char *value, size_t len);

#endif
