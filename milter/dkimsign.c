/* dkimsign: the relay's key and chatmail's header lists, signed by dkimsig.c. */
#include "dkimsign.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "dkimsig.h"

/* Headers signed: libopendkim's (and OpenDKIM's) default list (RFC 6376 section 5.4.1) plus
 * autocrypt, as chatmail's "SignHeaders *,+autocrypt,+content-type". */
static const char *const sign_headers[] = {
    "from", "sender", "reply-to", "subject", "date", "message-id", "to", "cc", "mime-version",
    "content-type", "content-transfer-encoding", "content-id", "content-description",
    "resent-date", "resent-from", "resent-sender", "resent-to", "resent-cc",
    "resent-message-id", "in-reply-to", "references", "list-id", "list-help",
    "list-unsubscribe", "list-subscribe", "list-post", "list-owner", "list-archive", "autocrypt",
    NULL,
};

/* Oversigned: chatmail's OpenDKIM OversignHeaders, plus message-id and
 * content-type (a second Content-Type could change how the body is read). */
static const char *const oversign_headers[] = {
    "from", "reply-to", "subject", "date", "to", "cc", "resent-date", "resent-from",
    "resent-sender", "resent-to", "resent-cc", "in-reply-to", "references", "list-id",
    "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
    "list-archive", "autocrypt", "message-id", "content-type", NULL,
};

struct dkimsign {
    EVP_PKEY *key;     /* RSA or Ed25519, decoded once */
    char *selector;
    char *domain;
    time_t fixed_time; /* tests */
    uint64_t ttl;      /* tests */
};

struct dkimsign_msg {
    struct dkimsig_params params;
    struct dkimsig_msg *m;
};

const char *dkimsign_algorithm(const struct dkimsign *s)
{
    return EVP_PKEY_get_base_id(s->key) == EVP_PKEY_ED25519 ? "ed25519-sha256" : "rsa-sha256";
}

/* Reads the key file once: every signature uses the decoded key. */
static int load_key(struct dkimsign *s, const char *keyfile, char *err, size_t errlen)
{
    FILE *f = fopen(keyfile, "r");
    if (f == NULL) {
        snprintf(err, errlen, "filtermail_dkim_key %s: %s", keyfile, strerror(errno));
        return -1;
    }
    s->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (s->key == NULL) {
        snprintf(err, errlen, "filtermail_dkim_key %s: not a PEM private key", keyfile);
        return -1;
    }
    int id = EVP_PKEY_get_base_id(s->key), bits = EVP_PKEY_get_bits(s->key);
    if (id == EVP_PKEY_ED25519 ||
        (id == EVP_PKEY_RSA && bits >= 1024 && EVP_PKEY_get_size(s->key) <= DKIMSIG_MAX_SIG))
        return 0;
    snprintf(err, errlen, "filtermail_dkim_key %s: need an RSA key of 1024 bits or more "
             "(at most %d), or an Ed25519 key", keyfile, DKIMSIG_MAX_SIG * 8);
    return -1;
}

struct dkimsign *dkimsign_new(const char *keyfile, const char *selector, const char *domain,
                              const struct dkimsign_test *test, char *err, size_t errlen)
{
    struct dkimsign *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (load_key(s, keyfile, err, errlen) < 0)
        goto fail;
    s->selector = strdup(selector);
    s->domain = strdup(domain);
    if (s->selector == NULL || s->domain == NULL) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (test != NULL) {
        s->fixed_time = test->fixed_time;
        s->ttl = test->ttl;
    }
    return s;
fail:
    dkimsign_free(&s);
    return NULL;
}

void dkimsign_free(struct dkimsign **sp)
{
    struct dkimsign *s = *sp;
    if (s == NULL)
        return;
    EVP_PKEY_free(s->key);
    free(s->selector);
    free(s->domain);
    free(s);
    *sp = NULL;
}

struct dkimsign_msg *dkimsign_msg_new(struct dkimsign *s)
{
    struct dkimsign_msg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->params = (struct dkimsig_params){
        .key = s->key,
        .domain = s->domain,
        .selector = s->selector,
        .sign = sign_headers,
        .oversign = oversign_headers,
        .t = s->fixed_time != 0 ? s->fixed_time : time(NULL),
        .ttl = s->ttl,
    };
    m->m = dkimsig_msg_new(&m->params);
    if (m->m == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void dkimsign_msg_free(struct dkimsign_msg **mp)
{
    struct dkimsign_msg *m = *mp;
    if (m == NULL)
        return;
    dkimsig_msg_free(&m->m);
    free(m);
    *mp = NULL;
}

void dkimsign_header(struct dkimsign_msg *m, const char *field, size_t len)
{
    dkimsig_header(m->m, field, len);
}

void dkimsign_eoh(struct dkimsign_msg *m)
{
    (void)m;
}

void dkimsign_body(struct dkimsign_msg *m, const void *data, size_t len)
{
    dkimsig_body(m->m, data, len);
}

int dkimsign_finish(struct dkimsign_msg *m, char *value, size_t len)
{
    return dkimsig_finish(m->m, value, len);
}
