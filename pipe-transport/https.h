/* https: the sending side of /mxdeliv over libcurl (spec 7.4).
 *
 * POST https://<mx-host>:<port>/mxdeliv with one X-Mail-From header (left out
 * for the null sender), one X-Mail-To header per recipient, no Content-Type,
 * and the message in SMTP transparent form as the body, streamed from the
 * spool. curl connects only to the DNSSEC-validated addresses it is given
 * (CURLOPT_RESOLVE: no lookup of its own) and races IPv6 and IPv4 (Happy
 * Eyeballs). The certificate must be valid for the MX host name, unless the
 * destination is an IP literal or a `_`-prefixed test domain. No redirects,
 * HTTPS only, TLS 1.2 at least. A 2xx status means delivered.
 *
 * A TLS session from an earlier delivery may be offered for resumption, and
 * the session of this one is handed back for storing.
 *
 * Thread-safe once curl_global_init is done (by main): transfers in several
 * threads each have their own handle.
 */
#ifndef FILTERMAIL_HTTPS_H
#define FILTERMAIL_HTTPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "spool.h"

struct https_job {
    const char *host;            /* the MX host name, or an IP address's text */
    uint16_t port;
    const struct sockaddr_storage *addrs; /* where to connect (ignored for an IP host) */
    size_t naddrs;
    bool verify;                 /* check the certificate against host */
    const char *ca_file;         /* NULL or "": the system's CA directory */
    const char *sender;
    const char *const *rcpts;
    size_t nrcpts;
    const struct spool *msg;
    int connect_timeout_ms;
    int timeout_ms;              /* the whole request */
    const unsigned char *session; /* a stored TLS session (DER) to offer, or NULL */
    size_t session_len;
};

enum https_status {
    HTTPS_DELIVERED,   /* 2xx */
    HTTPS_REFUSED,     /* another HTTP status */
    HTTPS_FAILED,      /* no HTTP answer: connect, TLS, timeout, ... */
};

struct https_result {
    enum https_status status;
    long http_code;
    char ip[64];                 /* the address used, when connected */
    char err[300];               /* what went wrong, or the status and body start */
    unsigned char *session;      /* the session to store (malloc()ed), or NULL */
    size_t session_len;
};

/* From now on, connections stay open after a delivery (as long as the
 * server keeps them, at most libcurl's CURLOPT_MAXAGE_CONN, 118 s) and any
 * later https_deliver, in any thread, to the same host name, port and TLS
 * settings (verification, CA) reuses one instead of connecting and shaking
 * hands again; the address it goes to is one the name had in a
 * DNSSEC-validated answer when the connection was made. For
 * filtermail-deliverd; call once, after curl_global_init and before the
 * threads. Returns 0 or -1 (then every delivery connects anew). */
int https_share_connections(void);

/* Runs the POST. Free res->session with free(). */
void https_deliver(const struct https_job *job, struct https_result *res);

#endif
