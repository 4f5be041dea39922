/* envelope: the sender and recipients pipe(8) gives the transport, checked.
 *
 * pipe(8) batches recipients per next hop, which is the recipient domain when
 * default_transport names no next hop: every recipient of one invocation must
 * have the same domain. The domain is either a name (lowercased, LDH labels
 * and '_', no final dot; an internationalised name in its ASCII "xn--" form:
 * address_domain_name_ok()) or an address literal `[192.0.2.1]` / `[IPv6:2001:db8::1]`, which is
 * delivered to directly.
 *
 * Pure; thread-safe.
 */
#ifndef FILTERMAIL_ENVELOPE_H
#define FILTERMAIL_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>

/* The longest address accepted (RFC 5321 paths are at most 256 bytes). */
#define ENVELOPE_ADDRESS_MAX 512

enum envelope_kind { ENVELOPE_NAME, ENVELOPE_LITERAL };

struct envelope {
    const char *sender;          /* "" for the null sender */
    const char *const *rcpts;    /* as given (pointers into the caller's argv) */
    size_t nrcpts;
    enum envelope_kind kind;
    char domain[256];            /* the name (ASCII form), or the literal's address text */
    int family;                  /* AF_INET or AF_INET6 for a literal, else 0 */
    bool underscore;             /* a name starting with '_' (test deployments) */
    bool smtputf8;               /* an address has non-ASCII bytes */
};

enum envelope_status {
    ENVELOPE_OK,
    ENVELOPE_BAD_ADDRESS,   /* an address that cannot be delivered to: permanent */
    ENVELOPE_MIXED,         /* recipients of different domains: a configuration error */
    ENVELOPE_NO_RECIPIENT,  /* none given: a configuration error */
};

/* Checks sender and rcpts[0..n) and fills env (which keeps the pointers).
 * On an error, err says which address and why. */
enum envelope_status envelope_check(const char *sender, const char *const *rcpts, size_t n,
                                    struct envelope *env, char *err, size_t errlen);

#endif
