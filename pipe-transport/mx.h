/* mx: where mail for a domain goes (RFC 5321 5.1, RFC 7505, RFC 7672 for TLSA).
 *
 * The pure parts turn DNS answers (common/dns.h results, already validated by
 * libunbound) into decisions: the MX host list (sorted by preference, equal
 * preferences shuffled with the caller's random number, duplicates dropped,
 * the null MX recognised), the addresses of one host in Happy Eyeballs order
 * (IPv6 and IPv4 interleaved, IPv6 first; RFC 8305 4), and the usable TLSA
 * records of a host. The lookup functions run the queries (A and AAAA at the
 * same time) with a bounded wait.
 *
 * Thread-safe (no state).
 */
#ifndef FILTERMAIL_MX_H
#define FILTERMAIL_MX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "dns.h"

#define MX_MAX_HOSTS 10   /* MX hosts tried per delivery */
#define MX_MAX_ADDRS 8    /* addresses per host */
#define MX_MAX_TLSA 16    /* TLSA records kept per host */
#define MX_TLSA_DATA_MAX 2048 /* the longest association data (a whole certificate) */

struct mx_host {
    char name[256];
    uint16_t pref;
};

enum mx_status {
    MX_OK,        /* hosts[] */
    MX_IMPLICIT,  /* no MX records: the domain itself (one host, preference 0) */
    MX_NULL,      /* the null MX "0 ." (RFC 7505): the domain takes no mail */
    MX_NXDOMAIN,  /* the domain does not exist */
    MX_TEMPFAIL,  /* SERVFAIL, timeout, bogus, malformed: try later */
};

/* Pure: the host list from an MX answer's records. A "." target among other
 * records is ignored; alone, it is the null MX. Malformed records are
 * skipped; if none is left, MX_TEMPFAIL. */
enum mx_status mx_from_records(const struct dns_rr *rr, size_t n, uint32_t random,
                               struct mx_host *hosts, size_t max, size_t *n_r);

struct mx_result {
    enum mx_status status;
    bool secure;                       /* the answer was DNSSEC-validated */
    struct mx_host hosts[MX_MAX_HOSTS];
    size_t n;
    char why[200];                     /* for MX_TEMPFAIL */
};

/* Looks up the MX records of domain (implicit MX when there are none). */
void mx_lookup(struct dns_resolver *r, const char *domain, int timeout_ms, uint32_t random,
               struct mx_result *out);

enum mx_addr_status {
    MX_ADDR_OK,       /* addrs[] */
    MX_ADDR_NONE,     /* the name has no A or AAAA record, or does not exist */
    MX_ADDR_TEMPFAIL, /* neither answer usable and at least one failed */
};

struct mx_addrs {
    enum mx_addr_status status;
    bool secure;      /* every answer used was DNSSEC-validated */
    size_t n;
    struct sockaddr_storage sa[MX_MAX_ADDRS];
    char why[200];
};

/* Pure: the addresses from the A and AAAA answers (either may be NULL), each
 * with port, in Happy Eyeballs order. */
void mx_addrs_from_answers(const struct dns_result *a, const struct dns_result *aaaa,
                           uint16_t port, struct mx_addrs *out);

/* Pure: interleaves families in place, IPv6 first (RFC 8305 4). */
void mx_addrs_interleave(struct sockaddr_storage *sa, size_t n);

/* Looks up A and AAAA of host at the same time. */
void mx_resolve(struct dns_resolver *r, const char *host, uint16_t port, int timeout_ms,
                struct mx_addrs *out);

/* One usable TLSA record (RFC 6698): DANE-TA(2) or DANE-EE(3). */
struct mx_tlsa_rr {
    uint8_t usage, selector, mtype;
    size_t len;
    unsigned char data[MX_TLSA_DATA_MAX];
};

enum mx_tlsa_status {
    MX_TLSA_NONE,     /* no records, or not DNSSEC-validated: no DANE */
    MX_TLSA_USABLE,   /* records[] (n > 0) */
    MX_TLSA_UNUSABLE, /* validated records, none usable (PKIX usages, bad data) */
    MX_TLSA_TEMPFAIL, /* bogus or failed lookup: the host cannot be used now */
};

struct mx_tlsa {
    enum mx_tlsa_status status;
    size_t n;
    struct mx_tlsa_rr rr[MX_MAX_TLSA];
    char why[200];
};

/* Pure: the usable records of a TLSA answer's RDATA. */
void mx_tlsa_from_records(const struct dns_rr *rr, size_t n, struct mx_tlsa *out);

/* Looks up _<port>._tcp.<host> TLSA. Only a validated answer counts. */
void mx_tlsa_lookup(struct dns_resolver *r, const char *host, uint16_t port, int timeout_ms,
                    struct mx_tlsa *out);

#endif
