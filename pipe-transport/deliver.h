/* deliver: one message to one destination (spec 7.3 with the rules).
 *
 *  1. The MX hosts of the domain (DNSSEC-validated; implicit MX; null MX and
 *     NXDOMAIN bounce; any DNS failure defers), or the address literal.
 *  2. For each host in order, skipping hosts that recently failed to connect:
 *     HTTPS POST /mxdeliv (unless the host refused HTTPS in the last 30
 *     minutes), then SMTP with STARTTLS required and verified (DANE when the
 *     host's TLSA records are DNSSEC-validated), unless the TLS policy file
 *     says no-starttls. IP literals and `_`-prefixed domains are not verified.
 *  3. Only connection-class failures (connect, TLS, I/O before the end of the
 *     data, DNS failure of a host name) move on to the next host; anything
 *     the remote server answered is final.
 *
 * The result is an outcome (dsn.h) and the host state to remember (state.h).
 * Logs through log.h with the queue id. Not thread-safe.
 */
#ifndef FILTERMAIL_DELIVER_H
#define FILTERMAIL_DELIVER_H

#include <stdint.h>

#include "config.h"
#include "dns.h"
#include "dsn.h"
#include "envelope.h"
#include "spool.h"
#include "state.h"
#include "tlspolicy.h"

struct deliver_ctx {
    const struct config *cfg;
    struct dns_resolver *dns;            /* may be NULL for an address literal */
    struct state_store *state;           /* NULL: no shared state */
    const struct tls_policy_table *policy; /* NULL: no exceptions */
    int64_t deadline;                    /* clock_mono_ms() value to finish by */
    int64_t now_unix;                    /* wall clock at the start (state expiry) */
    uint32_t random;                     /* shuffles equal MX preferences */
    const char *queue_id;                /* for log lines ("-" when unknown) */
    /* Called once the outcome is settled, before the bookkeeping that
     * follows it (the shared state): whatever happens next, this is the
     * outcome to report. NULL: not called. */
    void (*settled)(const struct outcome *out);
};

/* Where the message went, for the log line. */
struct deliver_report {
    char relay[320];      /* "mx.example.org[192.0.2.1]:443", or "none" */
    char channel[8];      /* "https", "smtp" or "" */
    char tls[128];        /* how TLS was set up */
};

void deliver_run(const struct deliver_ctx *ctx, const struct envelope *env,
                 const struct spool *msg, struct outcome *out, struct deliver_report *rep);

/* The delivery's log line after "<queue id>: ", as operators' mtail rules
 * read it: "to=<bob@example.org> and others, relay=mx.example.org[192.0.2.1]
 * :443/https, tls=..., delay=0.012, size=2048, status=sent (delivered via
 * HTTPS ...)"; for a failure the status is bounced or deferred and the
 * parenthesis starts with the DSN code. delay in seconds. Cut to fit linelen
 * (> 0). Pure. */
void deliver_summary(const struct envelope *env, const struct deliver_report *rep, double delay,
                     uint64_t size, const struct outcome *out, char *line, size_t linelen);

/* The EHLO argument for mail_domain: the name, or an address literal for an
 * IP address ("[192.0.2.1]", "[IPv6:2001:db8::1]"). Pure. */
void deliver_helo_name(const char *mail_domain, char *out, size_t outlen);

#endif
