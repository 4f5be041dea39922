/* tls: STARTTLS client with name, DANE or no verification. */
#include "tls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

struct tls_client {
    SSL_CTX *ctx;
};

static void tls_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[160];
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err, errlen, "%s: %s", what, buf);
    } else {
        snprintf(err, errlen, "%s", what);
    }
    ERR_clear_error();
}

struct tls_client *tls_client_new(const char *ca_file, char *err, size_t errlen)
{
    struct tls_client *tc = calloc(1, sizeof(*tc));
    if (tc == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    tc->ctx = SSL_CTX_new(TLS_client_method());
    if (tc->ctx == NULL) {
        tls_error(err, errlen, "SSL_CTX_new");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(tc->ctx, TLS1_2_VERSION);
    /* The system store is read lazily by hash (c_rehash links), so a delivery
     * does not parse every CA certificate; a configured file is read whole. */
    if (ca_file != NULL && ca_file[0] != '\0') {
        if (SSL_CTX_load_verify_file(tc->ctx, ca_file) != 1) {
            char what[300];
            snprintf(what, sizeof(what), "filtermail_tls_ca_file %.250s", ca_file);
            tls_error(err, errlen, what);
            goto fail;
        }
    } else if (SSL_CTX_load_verify_dir(tc->ctx, X509_get_default_cert_dir()) != 1) {
        tls_error(err, errlen, "cannot use the system CA directory");
        goto fail;
    }
    if (SSL_CTX_dane_enable(tc->ctx) <= 0) {
        tls_error(err, errlen, "SSL_CTX_dane_enable");
        goto fail;
    }
    /* Sessions are handed in and out explicitly. */
    SSL_CTX_set_session_cache_mode(tc->ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
    return tc;
fail:
    tls_client_free(&tc);
    return NULL;
}

void tls_client_free(struct tls_client **tcp)
{
    struct tls_client *tc = *tcp;
    if (tc == NULL)
        return;
    SSL_CTX_free(tc->ctx);
    free(tc);
    *tcp = NULL;
}

static int tls_setup(SSL *ssl, const struct tls_params *p, char *err, size_t errlen)
{
    if (p->host != NULL && SSL_set_tlsext_host_name(ssl, p->host) != 1) {
        tls_error(err, errlen, "cannot set the server name");
        return -1;
    }
    switch (p->mode) {
    case TLS_VERIFY_NONE:
        SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
        return 0;
    case TLS_VERIFY_NAME:
        if (p->host == NULL || SSL_set1_host(ssl, p->host) != 1) {
            tls_error(err, errlen, "cannot set the name to verify");
            return -1;
        }
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        return 0;
    case TLS_VERIFY_DANE: {
        if (p->host == NULL || p->tlsa == NULL || SSL_dane_enable(ssl, p->host) <= 0) {
            tls_error(err, errlen, "cannot enable DANE");
            return -1;
        }
        SSL_dane_set_flags(ssl, DANE_FLAG_NO_DANE_EE_NAMECHECKS);
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        int usable = 0;
        for (size_t i = 0; i < p->tlsa->n; i++) {
            const struct mx_tlsa_rr *t = &p->tlsa->rr[i];
            int r = SSL_dane_tlsa_add(ssl, t->usage, t->selector, t->mtype, t->data, t->len);
            if (r > 0)
                usable++;
            else
                ERR_clear_error();
        }
        if (usable == 0) {
            snprintf(err, errlen, "no usable TLSA record");
            return -1;
        }
        SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
        return 0;
    }
    }
    return -1;
}

/* The OpenSSL error queue's first entry, for messages. */
static void tls_io_error(char *err, size_t errlen, const char *what, int sslerr)
{
    unsigned long e = ERR_get_error();
    char buf[160];
    if (e != 0) {
        ERR_error_string_n(e, buf, sizeof(buf));
        snprintf(err, errlen, "%s: %s", what, buf);
    } else if (sslerr == SSL_ERROR_SYSCALL && errno != 0) {
        snprintf(err, errlen, "%s: %s", what, strerror(errno));
    } else {
        snprintf(err, errlen, "%s: connection closed", what);
    }
    ERR_clear_error();
}

/* What SSL_read or SSL_write's result n means to netio. */
static long tls_io_result(SSL *ssl, int n, const char *what, char *err, size_t errlen)
{
    if (n > 0)
        return n;
    int e = SSL_get_error(ssl, n);
    if (e == SSL_ERROR_WANT_READ)
        return NETIO_WANT_READ;
    if (e == SSL_ERROR_WANT_WRITE)
        return NETIO_WANT_WRITE;
    if (e == SSL_ERROR_ZERO_RETURN)
        return 0;
    tls_io_error(err, errlen, what, e);
    return -1;
}

static long tls_read(void *tls, void *buf, size_t len, char *err, size_t errlen)
{
    int chunk = len > (1 << 30) ? (1 << 30) : (int)len;
    ERR_clear_error();
    errno = 0;
    return tls_io_result(tls, SSL_read(tls, buf, chunk), "TLS read", err, errlen);
}

static long tls_write(void *tls, const void *buf, size_t len, char *err, size_t errlen)
{
    int chunk = len > (1 << 30) ? (1 << 30) : (int)len;
    ERR_clear_error();
    errno = 0;
    long n = tls_io_result(tls, SSL_write(tls, buf, chunk), "TLS write", err, errlen);
    if (n == 0) { /* the peer's close_notify while we write */
        tls_io_error(err, errlen, "TLS write", SSL_ERROR_ZERO_RETURN);
        return -1;
    }
    return n;
}

/* close_notify, without waiting for the server's. */
static void tls_close(void *tls)
{
    ERR_clear_error();
    SSL_shutdown(tls);
    SSL_free(tls);
    ERR_clear_error();
}

static const struct conn_tls_ops tls_ops = {
    .read = tls_read,
    .write = tls_write,
    .close = tls_close,
};

int tls_connect(struct tls_client *tc, struct conn *c, const struct tls_params *p, char *err,
                size_t errlen)
{
    err[0] = '\0';
    SSL *ssl = SSL_new(tc->ctx);
    if (ssl == NULL) {
        tls_error(err, errlen, "SSL_new");
        return -1;
    }
    if (SSL_set_fd(ssl, c->fd) != 1 || tls_setup(ssl, p, err, errlen) < 0) {
        if (err[0] == '\0')
            tls_error(err, errlen, "SSL_set_fd");
        SSL_free(ssl);
        return -1;
    }
    if (p->session != NULL) {
        const unsigned char *q = p->session;
        SSL_SESSION *s = d2i_SSL_SESSION(NULL, &q, (long)p->session_len);
        if (s != NULL) {
            if (SSL_SESSION_is_resumable(s))
                SSL_set_session(ssl, s);
            SSL_SESSION_free(s);
        }
        ERR_clear_error();
    }
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_connect(ssl);
        if (r == 1)
            break;
        int e = SSL_get_error(ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            if (conn_wait(c, e == SSL_ERROR_WANT_WRITE) < 0) {
                snprintf(err, errlen, "TLS handshake: %s", c->err);
                SSL_free(ssl);
                return -1;
            }
            continue;
        }
        long v = SSL_get_verify_result(ssl);
        if (v != X509_V_OK) {
            snprintf(err, errlen, "certificate verification failed: %s%s",
                     X509_verify_cert_error_string(v),
                     p->mode == TLS_VERIFY_DANE ? " (DANE)" : "");
            ERR_clear_error();
        } else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
            snprintf(err, errlen, "TLS handshake: %s",
                     errno != 0 ? strerror(errno) : "connection closed");
        } else {
            tls_error(err, errlen, "TLS handshake");
        }
        SSL_free(ssl);
        return -1;
    }
    /* SSL_VERIFY_PEER already failed the handshake otherwise; be explicit. */
    if (p->mode != TLS_VERIFY_NONE && SSL_get_verify_result(ssl) != X509_V_OK) {
        snprintf(err, errlen, "certificate verification failed: %s",
                 X509_verify_cert_error_string(SSL_get_verify_result(ssl)));
        SSL_free(ssl);
        return -1;
    }
    conn_set_tls(c, &tls_ops, ssl);
    return 0;
}

void tls_describe(const struct conn *c, enum tls_verify mode, char *out, size_t outlen)
{
    const char *how = mode == TLS_VERIFY_NONE ? "not verified"
                      : mode == TLS_VERIFY_DANE ? "verified by DANE"
                                                : "verified";
    const SSL *ssl = tls_conn_ssl(c);
    if (ssl == NULL) {
        snprintf(out, outlen, "no TLS");
        return;
    }
    snprintf(out, outlen, "%s %s, %s%s", SSL_get_version(ssl),
             SSL_CIPHER_get_name(SSL_get_current_cipher(ssl)), how,
             SSL_session_reused(ssl) ? ", resumed" : "");
}

SSL *tls_conn_ssl(const struct conn *c)
{
    return c->tls_ops == &tls_ops ? c->tls : NULL;
}

int tls_session_export(const struct conn *c, unsigned char **der_r, size_t *len_r)
{
    SSL *ssl = tls_conn_ssl(c);
    *der_r = NULL;
    if (ssl == NULL)
        return -1;
    SSL_SESSION *s = SSL_get1_session(ssl);
    if (s == NULL)
        return -1;
    if (!SSL_SESSION_is_resumable(s)) {
        SSL_SESSION_free(s);
        return -1;
    }
    int n = i2d_SSL_SESSION(s, NULL);
    if (n <= 0) {
        SSL_SESSION_free(s);
        return -1;
    }
    unsigned char *der = malloc((size_t)n), *q = der;
    if (der == NULL || i2d_SSL_SESSION(s, &q) != n) {
        free(der);
        SSL_SESSION_free(s);
        return -1;
    }
    SSL_SESSION_free(s);
    *der_r = der;
    *len_r = (size_t)n;
    return 0;
}

void tls_policy_tag(const struct tls_params *p, char *out, size_t outlen)
{
    const char *mode = p->mode == TLS_VERIFY_NONE ? "none"
                       : p->mode == TLS_VERIFY_DANE ? "dane"
                                                    : "verify";
    if (p->mode != TLS_VERIFY_DANE || p->tlsa == NULL) {
        snprintf(out, outlen, "%s", mode);
        return;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        snprintf(out, outlen, "dane-?");
        return;
    }
    for (size_t i = 0; i < p->tlsa->n; i++) {
        const struct mx_tlsa_rr *t = &p->tlsa->rr[i];
        unsigned char head[3] = {t->usage, t->selector, t->mtype};
        EVP_DigestUpdate(ctx, head, 3);
        EVP_DigestUpdate(ctx, t->data, t->len);
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    EVP_MD_CTX_free(ctx);
    snprintf(out, outlen, "dane-%02x%02x%02x%02x%02x%02x%02x%02x", md[0], md[1], md[2], md[3],
             md[4], md[5], md[6], md[7]);
}
