/* dkimsign: libopendkim signing with chatmail's header lists. */
#include "dkimsign.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <opendkim/dkim.h>

#include "edsign.h"

/* Headers signed: libopendkim's default list (RFC 6376 section 5.4.1) plus
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
    DKIM_LIB *lib;
    char *key;         /* PEM text, wiped on free */
    size_t keylen;
    char *selector;
    char *domain;
    dkim_alg_t alg;
    EVP_PKEY *edkey;   /* Ed25519: signed by edsign.c, not libopendkim */
    time_t fixed_time; /* tests */
    uint64_t ttl;      /* tests */
};

struct dkimsign_msg {
    DKIM *dkim;
    struct edsign_params ed;
    struct edsign_msg *edm;
    bool broken;
    char error[160];
};

const char *dkimsign_algorithm(const struct dkimsign *s)
{
    return s->alg == DKIM_SIGN_ED25519SHA256 ? "ed25519-sha256" : "rsa-sha256";
}

/* Reads the key file and finds its type with OpenSSL. */
static int load_key(struct dkimsign *s, const char *keyfile, char *err, size_t errlen)
{
    FILE *f = fopen(keyfile, "r");
    EVP_PKEY *pkey;
    long size;

    if (f == NULL) {
        snprintf(err, errlen, "filtermail_dkim_key %s: %s", keyfile, strerror(errno));
        return -1;
    }
    pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    if (pkey == NULL) {
        fclose(f);
        snprintf(err, errlen, "filtermail_dkim_key %s: not a PEM private key", keyfile);
        return -1;
    }
    int id = EVP_PKEY_base_id(pkey);
    int bits = EVP_PKEY_bits(pkey);
    EVP_PKEY_free(pkey);
    if (id == EVP_PKEY_ED25519) {
        /* Signed by edsign.c: libopendkim 2.11 leaks Ed25519 signing keys. */
        rewind(f);
        s->edkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
        if (s->edkey == NULL) {
            snprintf(err, errlen, "filtermail_dkim_key %s: cannot read", keyfile);
            return -1;
        }
        s->alg = DKIM_SIGN_ED25519SHA256;
        return 0;
    } else if (id == EVP_PKEY_RSA && bits >= 1024) {
        s->alg = DKIM_SIGN_RSASHA256;
    } else {
        fclose(f);
        snprintf(err, errlen, "filtermail_dkim_key %s: need an RSA key of 1024 bits or more, "
                 "or an Ed25519 key", keyfile);
        return -1;
    }
    if (fseek(f, 0, SEEK_END) < 0 || (size = ftell(f)) < 0 || size > 65536 ||
        fseek(f, 0, SEEK_SET) < 0) {
        fclose(f);
        snprintf(err, errlen, "filtermail_dkim_key %s: cannot read", keyfile);
        return -1;
    }
    s->key = calloc(1, (size_t)size + 1);
    if (s->key == NULL || fread(s->key, 1, (size_t)size, f) != (size_t)size) {
        fclose(f);
        snprintf(err, errlen, "filtermail_dkim_key %s: cannot read", keyfile);
        return -1;
    }
    s->keylen = (size_t)size;
    fclose(f);
    return 0;
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
    s->lib = dkim_init(NULL, NULL);
    if (s->selector == NULL || s->domain == NULL || s->lib == NULL) {
        snprintf(err, errlen, "cannot initialise libopendkim");
        goto fail;
    }
    if (dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNHDRS, (void *)sign_headers,
                     sizeof(char **)) != DKIM_STAT_OK ||
        dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_OVERSIGNHDRS, (void *)oversign_headers,
                     sizeof(char **)) != DKIM_STAT_OK) {
        snprintf(err, errlen, "cannot configure libopendkim's header lists");
        goto fail;
    }
    if (test != NULL) {
        s->fixed_time = test->fixed_time;
        s->ttl = test->ttl;
    }
    if (test != NULL && test->fixed_time != 0) {
        uint64_t t = (uint64_t)test->fixed_time;
        dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_FIXEDTIME, &t, sizeof(t));
    }
    if (test != NULL && test->ttl != 0) {
        uint64_t ttl = test->ttl;
        dkim_options(s->lib, DKIM_OP_SETOPT, DKIM_OPTS_SIGNATURETTL, &ttl, sizeof(ttl));
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
    if (s->key != NULL) {
        OPENSSL_cleanse(s->key, s->keylen);
        free(s->key);
    }
    EVP_PKEY_free(s->edkey);
    if (s->lib != NULL)
        dkim_close(s->lib);
    free(s->selector);
    free(s->domain);
    free(s);
    *sp = NULL;
}

struct dkimsign_msg *dkimsign_msg_new(struct dkimsign *s, const char *id)
{
    struct dkimsign_msg *m = calloc(1, sizeof(*m));
    DKIM_STAT st;
    if (m == NULL)
        return NULL;
    if (s->edkey != NULL) {
        m->ed = (struct edsign_params){
            .key = s->edkey,
            .domain = s->domain,
            .selector = s->selector,
            .sign = sign_headers,
            .oversign = oversign_headers,
            .t = s->fixed_time != 0 ? s->fixed_time : time(NULL),
            .ttl = s->ttl,
        };
        m->edm = edsign_msg_new(&m->ed);
        if (m->edm == NULL) {
            free(m);
            return NULL;
        }
        return m;
    }
    m->dkim = dkim_sign(s->lib, (const unsigned char *)(id != NULL ? id : "msg"), NULL,
                        (dkim_sigkey_t)s->key, (const unsigned char *)s->selector,
                        (const unsigned char *)s->domain, DKIM_CANON_RELAXED, DKIM_CANON_SIMPLE,
                        s->alg, -1, &st);
    if (m->dkim == NULL) {
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
    if (m->dkim != NULL)
        dkim_free(m->dkim);
    edsign_msg_free(&m->edm);
    free(m);
    *mp = NULL;
}

static void note_error(struct dkimsign_msg *m, const char *where, DKIM_STAT st)
{
    if (m->broken)
        return;
    m->broken = true;
    const char *e = dkim_geterror(m->dkim);
    snprintf(m->error, sizeof(m->error), "%s: %s%s%s", where, dkim_getresultstr(st),
             e != NULL ? ": " : "", e != NULL ? e : "");
}

void dkimsign_header(struct dkimsign_msg *m, const char *field, size_t len)
{
    DKIM_STAT st;
    if (m->edm != NULL) {
        edsign_header(m->edm, field, len);
        return;
    }
    if (!m->broken && (st = dkim_header(m->dkim, (u_char *)field, len)) != DKIM_STAT_OK)
        note_error(m, "header", st);
}

void dkimsign_eoh(struct dkimsign_msg *m)
{
    DKIM_STAT st;
    if (m->edm != NULL)
        return;
    if (!m->broken && (st = dkim_eoh(m->dkim)) != DKIM_STAT_OK)
        note_error(m, "end of header", st);
}

void dkimsign_body(struct dkimsign_msg *m, const void *data, size_t len)
{
    DKIM_STAT st;
    if (m->edm != NULL) {
        edsign_body(m->edm, data, len);
        return;
    }
    if (!m->broken && (st = dkim_body(m->dkim, (u_char *)data, len)) != DKIM_STAT_OK)
        note_error(m, "body", st);
}

int dkimsign_finish(struct dkimsign_msg *m, char *value, size_t len)
{
    DKIM_STAT st;
    if (m->edm != NULL)
        return edsign_finish(m->edm, value, len);
    if (!m->broken && (st = dkim_eom(m->dkim, NULL)) != DKIM_STAT_OK)
        note_error(m, "end of message", st);
    if (!m->broken &&
        (st = dkim_getsighdr(m->dkim, (u_char *)value, len, strlen("DKIM-Signature: "))) !=
            DKIM_STAT_OK)
        note_error(m, "signature", st);
    if (m->broken) {
        snprintf(value, len, "%s", m->error);
        return -1;
    }
    /* libopendkim folds with CRLF + TAB; the milter protocol wants bare LF in values. */
    size_t o = 0;
    for (size_t i = 0; value[i] != '\0'; i++)
        if (value[i] != '\r')
            value[o++] = value[i];
    value[o] = '\0';
    return 0;
}
