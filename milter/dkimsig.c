/* dkimsig: DKIM signing (rsa-sha256, ed25519-sha256), see dkimsig.h. */
#include "dkimsig.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

#define MAX_FIELDS 256

struct field {
    size_t off, len;    /* in headers */
    size_t name_len;
    bool used;          /* picked for the hash already */
};

struct dkimsig_msg {
    const struct dkimsig_params *p;
    EVP_MD_CTX *body;        /* SHA-256 of the canonical body */
    unsigned long empty;     /* CRLFs held back: trailing empty lines are dropped */
    bool cr;                 /* a CR held back, waiting for its LF */
    struct buf headers;      /* the kept fields, back to back */
    struct field fields[MAX_FIELDS];
    size_t nfields;
    bool failed;
    char error[128];
};

static void fail(struct dkimsig_msg *m, const char *why)
{
    if (!m->failed)
        snprintf(m->error, sizeof(m->error), "%s", why);
    m->failed = true;
}

struct dkimsig_msg *dkimsig_msg_new(const struct dkimsig_params *p)
{
    struct dkimsig_msg *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->p = p;
    buf_init(&m->headers, DKIMSIG_MAX_HEADERS);
    m->body = EVP_MD_CTX_new();
    if (m->body == NULL || EVP_DigestInit_ex(m->body, EVP_sha256(), NULL) != 1) {
        dkimsig_msg_free(&m);
        return NULL;
    }
    return m;
}

void dkimsig_msg_free(struct dkimsig_msg **mp)
{
    struct dkimsig_msg *m = *mp;
    if (m == NULL)
        return;
    EVP_MD_CTX_free(m->body);
    buf_free(&m->headers);
    free(m);
    *mp = NULL;
}

static bool listed(const char *const *names, const char *name, size_t len)
{
    for (size_t i = 0; names[i] != NULL; i++)
        if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
            return true;
    return false;
}

void dkimsig_header(struct dkimsig_msg *m, const char *field, size_t len)
{
    const char *colon = memchr(field, ':', len);
    size_t nlen;

    if (m->failed || colon == NULL)
        return;
    nlen = (size_t)(colon - field);
    while (nlen > 0 && (field[nlen - 1] == ' ' || field[nlen - 1] == '\t'))
        nlen--;
    if (!listed(m->p->sign, field, nlen))
        return;
    if (m->nfields == MAX_FIELDS) {
        fail(m, "too many signed header fields");
        return;
    }
    struct field *f = &m->fields[m->nfields];
    f->off = m->headers.len;
    f->len = len;
    f->name_len = nlen;
    f->used = false;
    if (buf_append(&m->headers, field, len) < 0) {
        fail(m, "signed header fields too long");
        return;
    }
    m->nfields++;
}

/* Simple body canonicalisation (RFC 6376 3.4.3) as the body streams: every
 * run of CRLFs is held back until more content follows, so the empty lines at
 * the end are never hashed; dkimsig_finish adds the final CRLF. */
void dkimsig_body(struct dkimsig_msg *m, const void *data, size_t len)
{
    const unsigned char *p = data, *end = p + len;
    static const char crlf[] = "\r\n";

    if (m->failed)
        return;
    while (p < end) {
        if (m->cr) {
            m->cr = false;
            if (*p == '\n') {
                m->empty++;
                p++;
                continue;
            }
            /* A bare CR is content. */
            for (; m->empty > 0; m->empty--)
                EVP_DigestUpdate(m->body, crlf, 2);
            EVP_DigestUpdate(m->body, "\r", 1);
        }
        if (*p == '\r') {
            m->cr = true;
            p++;
            continue;
        }
        /* Content up to the next CR, hashed after the held-back line ends. */
        const unsigned char *q = memchr(p, '\r', (size_t)(end - p));
        if (q == NULL)
            q = end;
        for (; m->empty > 0; m->empty--)
            EVP_DigestUpdate(m->body, crlf, 2);
        EVP_DigestUpdate(m->body, p, (size_t)(q - p));
        p = q;
    }
}

/* Relaxed header canonicalisation (RFC 6376 3.4.2) of name and value,
 * appended to out: lowercase name, no space around the colon, whitespace runs
 * (unfolded) made one space, none at the ends. */
static int relaxed(struct buf *out, const char *name, size_t nlen, const char *value, size_t vlen)
{
    bool space = false, started = false;
    for (size_t i = 0; i < nlen; i++)
        if (buf_putc(out, (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i])) < 0)
            return -1;
    if (buf_putc(out, ':') < 0)
        return -1;
    for (size_t i = 0; i < vlen; i++) {
        char c = value[i];
        if (c == '\r' || c == '\n')
            continue;
        if (c == ' ' || c == '\t') {
            space = started;
            continue;
        }
        if (space && buf_putc(out, ' ') < 0)
            return -1;
        space = false;
        started = true;
        if (buf_putc(out, c) < 0)
            return -1;
    }
    return 0;
}

static void b64(const unsigned char *in, size_t len, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)len);
}

/* Appends " tag" to the value being built, breaking the line (LF + TAB) before
 * it when the line would pass 76 columns. */
static int add_tag(struct buf *v, size_t *col, const char *tag)
{
    size_t n = strlen(tag);
    if (*col > 0 && *col + n + 1 > 76) {
        if (buf_puts(v, "\n\t") < 0)
            return -1;
        *col = 8;
    } else if (v->len > 0) {
        if (buf_putc(v, ' ') < 0)
            return -1;
        (*col)++;
    }
    *col += n;
    return buf_puts(v, tag);
}

int dkimsig_finish(struct dkimsig_msg *m, char *value, size_t len)
{
    const struct dkimsig_params *p = m->p;
    unsigned char bh[32], hh[32], sig[DKIMSIG_MAX_SIG];
    unsigned int bhlen = 0, hhlen = 0;
    char bh64[48], sig64[4 * (DKIMSIG_MAX_SIG / 3 + 1) + 1], tag[512];
    bool rsa = EVP_PKEY_get_base_id(p->key) == EVP_PKEY_RSA;
    struct buf h, v, data;
    size_t col = strlen("DKIM-Signature: "), siglen = sizeof(sig);
    int rc = -1;

    buf_init(&h, 8192);
    buf_init(&v, 16384);
    buf_init(&data, DKIMSIG_MAX_HEADERS + 16384);
    if (m->failed)
        goto out;
    /* The body hash: held-back line ends dropped, one CRLF to finish. */
    if (m->cr) {
        for (; m->empty > 0; m->empty--)
            EVP_DigestUpdate(m->body, "\r\n", 2);
        EVP_DigestUpdate(m->body, "\r", 1);
    }
    if (EVP_DigestUpdate(m->body, "\r\n", 2) != 1 || EVP_DigestFinal_ex(m->body, bh, &bhlen) != 1) {
        fail(m, "body hash");
        goto out;
    }
    b64(bh, bhlen, bh64);

    /* h=: the signed fields present, in message order, then the oversigned
     * names once more. */
    for (size_t i = 0; i < m->nfields; i++) {
        const char *name = m->headers.data + m->fields[i].off;
        if ((h.len > 0 && buf_putc(&h, ':') < 0) ||
            buf_append(&h, name, m->fields[i].name_len) < 0)
            fail(m, "h= too long");
    }
    for (size_t i = 0; p->oversign[i] != NULL; i++)
        if ((h.len > 0 && buf_putc(&h, ':') < 0) || buf_puts(&h, p->oversign[i]) < 0)
            fail(m, "h= too long");

    int bad = 0;
    bad |= add_tag(&v, &col, "v=1;");
    bad |= add_tag(&v, &col, rsa ? "a=rsa-sha256;" : "a=ed25519-sha256;");
    bad |= add_tag(&v, &col, "c=relaxed/simple;");
    snprintf(tag, sizeof(tag), "d=%s;", p->domain);
    bad |= add_tag(&v, &col, tag);
    snprintf(tag, sizeof(tag), "s=%s;", p->selector);
    bad |= add_tag(&v, &col, tag);
    snprintf(tag, sizeof(tag), "t=%lld;", (long long)p->t);
    bad |= add_tag(&v, &col, tag);
    if (p->ttl > 0) {
        snprintf(tag, sizeof(tag), "x=%lld;", (long long)p->t + (long long)p->ttl);
        bad |= add_tag(&v, &col, tag);
    }
    snprintf(tag, sizeof(tag), "bh=%s;", bh64);
    bad |= add_tag(&v, &col, tag);
    /* h= goes in pieces so that it folds. */
    const char *hs = buf_cstr(&h);
    bool first = true;
    while (bad == 0 && *hs != '\0') {
        size_t n = strcspn(hs, ":");
        snprintf(tag, sizeof(tag), "%s%.*s%s", first ? "h=" : "", (int)n, hs,
                 hs[n] == ':' ? ":" : ";");
        if (first || col + strlen(tag) > 76) {
            bad |= add_tag(&v, &col, tag);
        } else {
            bad |= buf_puts(&v, tag);
            col += strlen(tag);
        }
        first = false;
        hs += n + (hs[n] == ':');
    }
    bad |= add_tag(&v, &col, "b=");
    if (bad != 0 || m->failed) {
        fail(m, "signature field too long");
        goto out;
    }

    /* The header hash input: each h= name picks the last unused instance,
     * then the signature field itself with an empty b=, without its CRLF. */
    hs = buf_cstr(&h);
    while (*hs != '\0') {
        size_t n = strcspn(hs, ":");
        for (size_t i = m->nfields; i-- > 0;) {
            struct field *f = &m->fields[i];
            const char *name = m->headers.data + f->off;
            if (f->used || f->name_len != n || strncasecmp(name, hs, n) != 0)
                continue;
            const char *colon = memchr(name, ':', f->len);
            f->used = true;
            bad |= relaxed(&data, name, f->name_len, colon + 1,
                           f->len - (size_t)(colon + 1 - name));
            bad |= buf_puts(&data, "\r\n");
            break;
        }
        hs += n + (hs[n] == ':');
    }
    bad |= relaxed(&data, "DKIM-Signature", 14, v.data, v.len);
    if (bad != 0) {
        fail(m, "header data too long");
        goto out;
    }

    /* RSA signs the header data with SHA-256 (PKCS #1 v1.5); Ed25519 signs
     * its SHA-256 hash with PureEdDSA (no digest of its own). */
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    if (EVP_PKEY_get_size(p->key) > (int)sizeof(sig) || c == NULL ||
        (rsa ? EVP_DigestSignInit(c, NULL, EVP_sha256(), NULL, p->key) != 1 ||
                   EVP_DigestSign(c, sig, &siglen, (const unsigned char *)data.data, data.len) != 1
             : EVP_Digest(data.data, data.len, hh, &hhlen, EVP_sha256(), NULL) != 1 ||
                   EVP_DigestSignInit(c, NULL, NULL, NULL, p->key) != 1 ||
                   EVP_DigestSign(c, sig, &siglen, hh, hhlen) != 1)) {
        EVP_MD_CTX_free(c);
        fail(m, rsa ? "RSA signing failed" : "Ed25519 signing failed");
        goto out;
    }
    EVP_MD_CTX_free(c);
    b64(sig, siglen, sig64);
    /* b= folded like the rest. */
    for (const char *s = sig64; *s != '\0';) {
        size_t room = col < 76 ? 76 - col : 0, n = strlen(s);
        if (room == 0) {
            bad |= buf_puts(&v, "\n\t ");
            col = 9;
            continue;
        }
        if (n > room)
            n = room;
        bad |= buf_append(&v, s, n);
        col += n;
        s += n;
    }
    if (bad != 0 || v.len + 1 > len) {
        fail(m, "signature field too long");
        goto out;
    }
    memcpy(value, v.data, v.len + 1);
    rc = 0;
out:
    if (rc != 0)
        snprintf(value, len, "%s", m->error);
    buf_free(&h);
    buf_free(&v);
    buf_free(&data);
    return rc;
}
