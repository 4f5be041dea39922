/* tlspolicy: per-destination exceptions to "STARTTLS required", from a file.
 *
 * Upstream filtermail hard-codes nauta.cu as a domain whose mail servers are
 * reached without TLS. Here such exceptions are data, in the file named by
 * filtermail_transport_tls_policy:
 *
 *     # comment
 *     nauta.cu        no-starttls
 *     .example.net    no-starttls     # every subdomain of example.net
 *
 * One destination per line: a domain (ASCII, any case) or ".domain" for its
 * subdomains, then a policy. The only policy is `no-starttls`: plain SMTP,
 * STARTTLS is not even tried (the HTTPS channel is still tried first, with a
 * verified certificate). '#' starts a comment. Anything else is an error
 * naming the line. Limits: lines of at most TLS_POLICY_LINE_MAX bytes, at
 * most TLS_POLICY_MAX_ENTRIES entries, files of at most 1 MiB.
 *
 * Pure parser; the table is immutable once built and may be shared.
 */
#ifndef FILTERMAIL_TLSPOLICY_H
#define FILTERMAIL_TLSPOLICY_H

#include <stddef.h>

#define TLS_POLICY_LINE_MAX 1024
#define TLS_POLICY_MAX_ENTRIES 100000
#define TLS_POLICY_MAX_FILE (1024 * 1024)

enum tls_policy { TLS_POLICY_DEFAULT, TLS_POLICY_NO_STARTTLS };

struct tls_policy_table;

/* Parses text[0..len). Returns 0 and a new table (free with tls_policy_free),
 * or -1 with a message naming origin and the line in err. */
int tls_policy_parse(const char *text, size_t len, const char *origin,
                     struct tls_policy_table **t_r, char *err, size_t errlen);

/* Reads and parses the file at path; as tls_policy_parse. */
int tls_policy_load(const char *path, struct tls_policy_table **t_r, char *err, size_t errlen);

/* The policy for a destination domain (lowercase); t may be NULL. An exact
 * entry wins over a ".parent" entry; the longest parent wins. */
enum tls_policy tls_policy_lookup(const struct tls_policy_table *t, const char *domain);

/* Number of entries. */
size_t tls_policy_count(const struct tls_policy_table *t);

void tls_policy_free(struct tls_policy_table **t);

#endif
