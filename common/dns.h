/* dns: DNSSEC-validating lookups on libunbound, with a bounded wait per query.
 *
 * One resolver per process, shared by all threads. It validates with a trust
 * anchor (the root key by default, /usr/share/dns/root.key), forwards to the
 * system's resolvers (/etc/resolv.conf; a chatmail relay runs a local unbound),
 * treats bogus answers as errors, and never caches negative answers (a new
 * relay must be reachable at once). For tests, an unbound.conf-style file
 * (filtermail_unbound_config) replaces the forwarding: it can serve
 * DNSSEC-signed zones from files with no network at all.
 *
 * Queries run asynchronously in libunbound's worker thread; a pump thread of
 * ours delivers the results, so any number of threads may wait on their own
 * queries, each with its own deadline. A query that times out is cancelled and
 * reported as a temporary failure. Thread-safe.
 */
#ifndef FILTERMAIL_DNS_H
#define FILTERMAIL_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dns_type {
    DNS_TYPE_A = 1,
    DNS_TYPE_MX = 15,
    DNS_TYPE_TXT = 16,
    DNS_TYPE_AAAA = 28,
    DNS_TYPE_TLSA = 52,
};

enum dns_status {
    DNS_OK,       /* records in rr[] */
    DNS_NODATA,   /* the name exists, no records of that type */
    DNS_NXDOMAIN, /* the name does not exist */
    DNS_TEMPFAIL, /* SERVFAIL, timeout, bogus DNSSEC, resolver error: try later */
};

struct dns_config {
    const char *unbound_config; /* NULL or "": forward to /etc/resolv.conf */
    const char *trust_anchor;   /* a file of DS or DNSKEY records (root.key) */
    /* true: dns_resolver_new starts no thread; dns_resolver_start does. A
     * daemon creates the resolver as root (its files are read then) and
     * starts it after dropping privileges, before any query. */
    bool start_later;
};

/* One record's RDATA in wire format. */
struct dns_rr {
    const unsigned char *data;
    size_t len;
};

struct dns_result {
    enum dns_status status;
    bool secure;          /* validated by DNSSEC (false for unsigned zones) */
    uint32_t ttl;         /* of the answer (0 when not OK) */
    size_t n;             /* records */
    const struct dns_rr *rr;
    char why[160];        /* for DNS_TEMPFAIL: what went wrong */
    void *priv;           /* the libunbound result; freed by dns_result_free */
};

struct dns_resolver;
struct dns_query;

/* Creates the resolver. Returns NULL with a message in err when libunbound
 * cannot be set up (bad config file, unreadable trust anchor). */
struct dns_resolver *dns_resolver_new(const struct dns_config *cfg, char *err, size_t errlen);

/* Starts the threads of a resolver made with start_later (no-op otherwise).
 * Returns 0, or -1 with a message in err. */
int dns_resolver_start(struct dns_resolver *r, char *err, size_t errlen);

/* Stops the pump, cancels what is pending, frees; sets *r to NULL. */
void dns_resolver_free(struct dns_resolver **r);

/* Starts a query (name without or with the final dot). Returns NULL when out
 * of memory or libunbound refused it; dns_query_wait then is not called. */
struct dns_query *dns_query_start(struct dns_resolver *r, const char *name, enum dns_type type);

/* Waits at most timeout_ms for the answer, fills *res (free it with
 * dns_result_free) and frees the query. A timeout gives DNS_TEMPFAIL. */
void dns_query_wait(struct dns_query *q, int timeout_ms, struct dns_result *res);

/* Gives up a started query without waiting for it (the answer, if any, is
 * discarded). q may be NULL. */
void dns_query_cancel(struct dns_query *q);

/* Start and wait in one call. */
void dns_lookup(struct dns_resolver *r, const char *name, enum dns_type type, int timeout_ms,
                struct dns_result *res);

void dns_result_free(struct dns_result *res);

/* Pure helpers for RDATA in wire format. */

/* Joins a TXT record's character-strings into out (NUL-terminated). Returns
 * the length, or -1 when the RDATA is malformed or does not fit. */
int dns_txt_join(const struct dns_rr *rr, char *out, size_t outlen);

/* MX: preference and exchange name (text, no final dot; "" for the null MX
 * target "."). Returns 0, or -1 when malformed or too long. */
int dns_mx_parse(const struct dns_rr *rr, uint16_t *pref_r, char *name, size_t namelen);

/* A name in uncompressed wire format at data[*off] as text without the final
 * dot; advances *off. Returns 0 or -1. */
int dns_name_to_text(const unsigned char *data, size_t len, size_t *off, char *out, size_t outlen);

#endif
