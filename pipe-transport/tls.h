/* tls: the client side of STARTTLS, with the verification the destination
 * calls for, on OpenSSL.
 *
 *  - TLS_VERIFY_NAME: the certificate must chain to a trusted CA
 *    (filtermail_tls_ca_file, or the system store) and name the MX host
 *    (SNI and name check: the host name, no partial wildcards);
 *  - TLS_VERIFY_DANE: the MX's TLSA records are DNSSEC-validated; a matching
 *    DANE-TA(2) or DANE-EE(3) record authenticates the server instead of the
 *    CA store, as Postfix's "dane" level does (RFC 7672: no name check for
 *    DANE-EE, the MX host name as the reference identifier for DANE-TA);
 *  - TLS_VERIFY_NONE: encrypted, not authenticated (IP literals and
 *    `_`-prefixed test domains, as upstream).
 *
 * TLS 1.2 at least. A session from an earlier delivery may be offered for
 * resumption; callers key stored sessions by host, port and policy, so a
 * session is never resumed under a different policy.
 *
 * One tls_client per process; not thread-safe.
 */
#ifndef FILTERMAIL_TLS_H
#define FILTERMAIL_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "mx.h"
#include <openssl/ssl.h>

#include "netio.h"

enum tls_verify { TLS_VERIFY_NAME, TLS_VERIFY_DANE, TLS_VERIFY_NONE };

struct tls_client;

/* Sets up the client; ca_file NULL or "" means the system's CA directory.
 * Returns NULL with a message in err. */
struct tls_client *tls_client_new(const char *ca_file, char *err, size_t errlen);
void tls_client_free(struct tls_client **tc);

struct tls_params {
    enum tls_verify mode;
    const char *host;            /* the MX host name (SNI, name checks); NULL for an IP */
    const struct mx_tlsa *tlsa;  /* for TLS_VERIFY_DANE: status MX_TLSA_USABLE */
    const unsigned char *session; /* a stored session (DER) to resume, or NULL */
    size_t session_len;
};

/* Runs the handshake on the connection (within its limits). Returns 0 with
 * the TLS layer on c (conn_set_tls: reads, writes and conn_close go through
 * it), or -1 with the reason in err (verification failures say so). */
int tls_connect(struct tls_client *tc, struct conn *c, const struct tls_params *p, char *err,
                size_t errlen);

/* "TLSv1.3 TLS_AES_256_GCM_SHA384, verified by DANE, resumed" and the like. */
void tls_describe(const struct conn *c, enum tls_verify mode, char *out, size_t outlen);

/* The connection's OpenSSL object when tls_connect() put TLS on it, else
 * NULL. */
SSL *tls_conn_ssl(const struct conn *c);

/* The connection's session in DER form for storing (a new buffer the caller
 * frees), when it is a TLS connection whose session can be resumed. Returns 0
 * or -1. */
int tls_session_export(const struct conn *c, unsigned char **der_r, size_t *len_r);

/* A short hash of the policy for session keys: mode, and the TLSA records. */
void tls_policy_tag(const struct tls_params *p, char *out, size_t outlen);

#endif
