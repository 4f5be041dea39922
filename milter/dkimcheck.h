/* dkimcheck: strict DKIM verification of incoming mail (spec 6.3-6.5).
 *
 * libopendkim verifies; this module feeds it the message as Postfix streams
 * it, looks keys up through the DNSSEC-validating resolver (dns.h) with a
 * cache that honours each record's TTL, and applies chatmail's rule: a message
 * passes only when a signature verifies (header and body hash) and its d= equals
 * the From domain exactly (ASCII case-insensitive, no subdomains). RSA keys
 * under 1024 bits and SHA-1 never pass; expired and future-dated signatures
 * fail; at most 10 signatures are evaluated, and those not aligned with the
 * From domain are dropped before any key lookup. A DNS failure (SERVFAIL,
 * timeout, bogus DNSSEC) on an aligned signature that could have passed is a
 * temporary failure, never a reject and never a pass.
 *
 * The checker is shared by all threads; each message has its own handle.
 */
#ifndef FILTERMAIL_DKIMCHECK_H
#define FILTERMAIL_DKIMCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dns.h"
#include "verdict.h"

/* Most signatures evaluated per message (top-down), as upstream's verifier. */
#define DKIMCHECK_MAX_SIGNATURES 10
/* Key records cached (LRU), and the longest a record is kept whatever its TTL. */
#define DKIMCHECK_CACHE_SIZE 1000
#define DKIMCHECK_CACHE_MAX_TTL 86400

struct dkimcheck;
struct dkimcheck_msg;

/* Creates the checker. dns is borrowed (must outlive the checker);
 * dns_timeout_ms bounds all key lookups of one message together: they are
 * started at once and share that deadline. Returns NULL with a message in
 * err. */
struct dkimcheck *dkimcheck_new(struct dns_resolver *dns, int dns_timeout_ms, char *err,
                                size_t errlen);
void dkimcheck_free(struct dkimcheck **c);

/* A verification of one message; id names it in errors (the queue id). NULL
 * when out of memory. Free with dkimcheck_msg_free. */
struct dkimcheck_msg *dkimcheck_msg_new(struct dkimcheck *c, const char *id);
void dkimcheck_msg_free(struct dkimcheck_msg **m);

/* One header field as it appears in the message ("Name: value", folded lines
 * joined with CRLF, no final CRLF). */
void dkimcheck_header(struct dkimcheck_msg *m, const char *field, size_t len);

/* End of the header block. from_domain is the lowercased domain of the From
 * address (NULL when there is none); signatures for other domains are dropped
 * here, before any key lookup. */
void dkimcheck_eoh(struct dkimcheck_msg *m, const char *from_domain);

/* A chunk of the body (CRLF line ends, as Postfix sends it: not dot-stuffed). */
void dkimcheck_body(struct dkimcheck_msg *m, const void *data, size_t len);

/* Verifies against the From domain given at dkimcheck_eoh. Key lookups happen
 * here, so a message refused for other reasons never costs a DNS query. why
 * receives a short explanation for the log. from_count is the number of From
 * fields and from_addresses the number of addresses in the first: anything but
 * 1 and 1 cannot pass. */
enum verdict_origin dkimcheck_finish(struct dkimcheck_msg *m, size_t from_count,
                                     size_t from_addresses, char *why, size_t whylen);

/* Normalises a key record's text as upstream does (spec 6.5): every space,
 * tab, CR, LF and double quote removed. In place; returns the new length. */
size_t dkimcheck_normalize_txt(char *txt, size_t len);

/* Cache statistics, for tests and metrics. */
void dkimcheck_cache_stats(struct dkimcheck *c, uint64_t *lookups_r, uint64_t *hits_r);

#endif
