/* address: e-mail addresses as upstream filtermail extracts and splits them.
 *
 * address_extract() reproduces spec section 3.3: the input is lowercased
 * (ASCII), leading "mail from:" / "rcpt to:" prefixes are stripped, the text is
 * cut after the first '>', and the rest is parsed as an RFC 5322 address list
 * with the semantics of mailparse's addrparse (display names, <addr>, bare
 * addresses, quoted names, groups, trailing comments); the first entry is the
 * result (for a group, its first member). Every address in the list must
 * contain an '@', and any error in the list means no address, as upstream.
 * Input containing a NUL byte has no address.
 *
 * Pure; thread-safe.
 */
#ifndef FILTERMAIL_ADDRESS_H
#define FILTERMAIL_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>

/* The longest address we accept from a header or an envelope (RFC 5321 paths
 * are at most 256 bytes; headers can hold longer display names, not addresses). */
#define ADDRESS_MAX 1024

/* Extracts the first address from in[0..len). Returns 0 and writes it,
 * lowercased and NUL-terminated, to out (outlen bytes); -1 when there is no
 * address or it does not fit. */
int address_extract(const char *in, size_t len, char *out, size_t outlen);

/* The number of mailboxes in the whole address list in[0..len) (group
 * members included; unlike address_extract, nothing is cut after a '>');
 * -1 when it does not parse. DKIM alignment needs exactly one. */
int address_count(const char *in, size_t len);

enum address_domain_kind { ADDRESS_DOMAIN_NAME, ADDRESS_DOMAIN_LITERAL };

/* Splits addr at its '@' (there must be exactly one; spec 6.3 step 1). For a
 * domain literal `[...]` the result is the inside of the brackets with an
 * "ipv6:" prefix removed (ASCII case-insensitive). Returns 0 and sets *kind_r,
 * *domain_r (pointing into addr) and *domain_len_r; -1 when addr does not split. */
int address_domain(const char *addr, enum address_domain_kind *kind_r, const char **domain_r,
                   size_t *domain_len_r);

/* True when addr may name a mailbox directory (spec 2.4): non-empty, contains
 * '@', and contains no '/'. */
bool address_valid_mailbox(const char *addr);

/* Envelope address checks: the one set every program uses.
 *
 * The longest envelope address taken from the network: RFC 5321's 256-octet
 * path less the angle brackets. */
#define ADDRESS_PATH_MAX 254

/* For an address from an untrusted peer (mxdeliv's X-Mail-From/To): true
 * when the len bytes of v may stand between the angle brackets of `MAIL
 * FROM:<...>` or `RCPT TO:<...>` as they are: 1 to ADDRESS_PATH_MAX bytes of
 * visible ASCII (0x21-0x7e) other than '<' and '>'. A NUL, space, control
 * character or non-ASCII byte anywhere makes it false. */
bool address_path_ok(const char *v, size_t len);

/* For an address from Postfix's own queue (the transport's argv; it may be
 * SMTPUTF8): true when the NUL-terminated a has no control character (below
 * 0x20, or 0x7f) and at most max bytes. Sets *len_r to its length, and
 * *utf8_r to true when it has a byte of 0x80 or above (else leaves it). */
bool address_path_safe(const char *a, size_t max, size_t *len_r, bool *utf8_r);

/* True when s is a domain name as mail is routed by: lowercase ASCII letters,
 * digits, '-' and '_' (test deployments' names) in labels of 1 to 63 bytes,
 * at most 253 bytes in all, no empty label, no final dot. An
 * internationalised name must be given in its "xn--" form. */
bool address_domain_name_ok(const char *s);

/* Lowercases ASCII letters in place. */
void address_lowercase(char *s);

/* Copies in to out (outlen bytes, cut to fit) without one enclosing pair of
 * angle brackets: "<a@b>" -> "a@b", "<>" -> "". */
void address_strip_brackets(const char *in, char *out, size_t outlen);

/* The address an envelope path (MAIL FROM / RCPT TO argument as the MTA gives
 * it) is keyed by, as upstream keys it: extracted and lowercased; a path
 * address_extract() does not understand is used as given, without brackets,
 * lowercased; "" for the null path "<>". */
void address_envelope(const char *path, char *out, size_t outlen);

/* The domain of the From header's address (from_value is the header's
 * value), lowercased, for DKIM alignment (spec 6.3); "" when there is no
 * address, the domain is a literal, or it does not fit in outlen. */
void address_from_domain(const char *from_value, char *out, size_t outlen);

#endif
