/* dkimsign: DKIM-signing of outgoing mail, so a relay needs no OpenDKIM.
 *
 * Signs with d=mail_domain, the relay's selector and key (chatmail's defaults:
 * selector "opendkim", /etc/dkimkeys/opendkim.private, PKCS#8 or traditional
 * PEM, decoded once at start-up), relaxed/simple canonicalisation,
 * rsa-sha256 or ed25519-sha256 by key type, signed by dkimsig.c (which says
 * why not libopendkim). It signs libopendkim's default header list plus Autocrypt, and
 * oversigns (signs one more instance than present, so none can be added) the
 * headers chatmail's OpenDKIM configuration oversigns plus Message-ID and
 * Content-Type: see DKIMSIGN_OVERSIGN.
 *
 * The signer is shared by all threads; each message has its own handle.
 */
#ifndef FILTERMAIL_DKIMSIGN_H
#define FILTERMAIL_DKIMSIGN_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

struct dkimsign;
struct dkimsign_msg;

/* For tests only: a fixed signing time (t=) and a signature lifetime (x=). */
struct dkimsign_test {
    time_t fixed_time; /* 0: now */
    uint64_t ttl;      /* 0: no x= tag */
};

/* Loads the private key from keyfile. Returns NULL with a message in err when
 * the key cannot be read or is unusable (not RSA or Ed25519, RSA under 1024
 * or over 8192 bits). test may be NULL. */
struct dkimsign *dkimsign_new(const char *keyfile, const char *selector, const char *domain,
                              const struct dkimsign_test *test, char *err, size_t errlen);
void dkimsign_free(struct dkimsign **s);

/* "rsa-sha256" or "ed25519-sha256". */
const char *dkimsign_algorithm(const struct dkimsign *s);

struct dkimsign_msg *dkimsign_msg_new(struct dkimsign *s);
void dkimsign_msg_free(struct dkimsign_msg **m);

/* As in dkimcheck.h: one field without the final CRLF, end of headers, body. */
void dkimsign_header(struct dkimsign_msg *m, const char *field, size_t len);
void dkimsign_eoh(struct dkimsign_msg *m);
void dkimsign_body(struct dkimsign_msg *m, const void *data, size_t len);

/* Computes the signature. On success returns 0 and writes the value of the
 * DKIM-Signature field (without the name, folded with LF + TAB as the milter protocol
 * expects) to value; -1 with a reason in value on failure. */
int dkimsign_finish(struct dkimsign_msg *m, char *value, size_t len);

#endif
