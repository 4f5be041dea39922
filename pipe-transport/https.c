/* https: POST /mxdeliv with libcurl. */
#include "https.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "buf.h"
#include "mx.h"
#include "netio.h"

#define HTTPS_BODY_KEEP 200
/* Idle connections filtermail-deliverd keeps (master.cf's maxproc is 100). */
#define HTTPS_KEPT_CONNECTIONS 128

struct https_xfer {
    const struct https_job *job;
    CURL *curl;
    SSL_SESSION *got;     /* the connection's session, taken while it is up */
    uint64_t off;
    char body[HTTPS_BODY_KEEP + 1];
    size_t bodylen;
    SSL_SESSION *offer;   /* resumed at the start of the handshake */
    bool connected;       /* a new connection was made (not a kept one) */
};

static size_t https_read(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct https_xfer *x = arg;
    size_t want = size * nmemb;
    if (x->off >= x->job->msg->size)
        return 0;
    long n = spool_read(x->job->msg, x->off, ptr, want);
    if (n < 0)
        return CURL_READFUNC_ABORT;
    x->off += (uint64_t)n;
    return (size_t)n;
}

/* The response body: the start is kept for the log, the rest dropped. */
static size_t https_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct https_xfer *x = arg;
    size_t n = size * nmemb;
    size_t room = HTTPS_BODY_KEEP - x->bodylen;
    size_t take = n < room ? n : room;
    memcpy(x->body + x->bodylen, ptr, take);
    x->bodylen += take;
    x->body[x->bodylen] = '\0';
    return n;
}

/* After the transfer the easy handle is detached from its connection, so the
 * TLS session is taken while headers arrive (TLS 1.3 tickets come right after
 * the handshake, before any response). */
static size_t https_header(char *ptr, size_t size, size_t nmemb, void *arg)
{
    struct https_xfer *x = arg;
    struct curl_tlssessioninfo *ti = NULL;
    (void)ptr;
    if (curl_easy_getinfo(x->curl, CURLINFO_TLS_SSL_PTR, &ti) == CURLE_OK && ti != NULL &&
        ti->backend == CURLSSLBACKEND_OPENSSL && ti->internals != NULL) {
        SSL_SESSION *s = SSL_get1_session(ti->internals);
        if (s != NULL) {
            SSL_SESSION_free(x->got);
            x->got = s;
        }
    }
    return size * nmemb;
}

static int https_ex_index = -1;
static pthread_once_t https_ex_once = PTHREAD_ONCE_INIT;

/* A session offered and not yet used goes with its SSL_CTX. */
static void https_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    SSL_SESSION_free(ptr);
}

/* Once per process: filtermail-deliverd runs deliveries in many threads. */
static void https_ex_init(void)
{
    https_ex_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, https_ex_free);
}

/* libcurl hands out the SSL_CTX, not the connection: the session is offered
 * when the handshake starts, before the ClientHello is written. The session
 * to offer belongs to the SSL_CTX (its ex_data), not to the transfer: a
 * connection kept for reuse outlives the transfer that made it, and TLS 1.3
 * calls this again for post-handshake messages. */
static void https_info(const SSL *ssl, int where, int ret)
{
    (void)ret;
    if (!(where & SSL_CB_HANDSHAKE_START))
        return;
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    SSL_SESSION *offer = SSL_CTX_get_ex_data(ctx, https_ex_index);
    if (offer != NULL && SSL_get_session(ssl) == NULL) {
        SSL_CTX_set_ex_data(ctx, https_ex_index, NULL);
        SSL_set_session((SSL *)ssl, offer);
        SSL_SESSION_free(offer);
    }
}

/* Called for a new connection only: the stored session is decoded then, not
 * for a transfer that goes over a kept connection. */
static CURLcode https_sslctx(CURL *curl, void *sslctx, void *arg)
{
    (void)curl;
    struct https_xfer *x = arg;
    SSL_CTX *ctx = sslctx;
    x->connected = true;
    if (x->offer == NULL && x->job->session != NULL) {
        const unsigned char *q = x->job->session;
        x->offer = d2i_SSL_SESSION(NULL, &q, (long)x->job->session_len);
        if (x->offer != NULL && !SSL_SESSION_is_resumable(x->offer)) {
            SSL_SESSION_free(x->offer);
            x->offer = NULL;
        }
    }
    if (x->offer != NULL && SSL_CTX_set_ex_data(ctx, https_ex_index, x->offer) == 1)
        x->offer = NULL; /* the SSL_CTX's now */
    SSL_CTX_set_info_callback(ctx, https_info);
    return CURLE_OK;
}

/* Connections kept between deliveries (https_share_connections). */
static CURLSH *https_share;
static pthread_mutex_t https_share_lock[CURL_LOCK_DATA_LAST];

static void https_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
    (void)h, (void)access, (void)arg;
    pthread_mutex_lock(&https_share_lock[data]);
}

static void https_unlock(CURL *h, curl_lock_data data, void *arg)
{
    (void)h, (void)arg;
    pthread_mutex_unlock(&https_share_lock[data]);
}

int https_share_connections(void)
{
    for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
        pthread_mutex_init(&https_share_lock[i], NULL);
    https_share = curl_share_init();
    if (https_share == NULL ||
        curl_share_setopt(https_share, CURLSHOPT_LOCKFUNC, https_lock) != CURLSHE_OK ||
        curl_share_setopt(https_share, CURLSHOPT_UNLOCKFUNC, https_unlock) != CURLSHE_OK ||
        curl_share_setopt(https_share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT) != CURLSHE_OK) {
        if (https_share != NULL)
            curl_share_cleanup(https_share);
        https_share = NULL;
        return -1;
    }
    return 0;
}

/* A kept connection that turns out closed is retried on a new one: the body
 * starts again. */
static int https_seek(void *arg, curl_off_t offset, int origin)
{
    struct https_xfer *x = arg;
    if (origin != SEEK_SET || offset < 0 || (uint64_t)offset > x->job->msg->size)
        return CURL_SEEKFUNC_CANTSEEK;
    x->off = (uint64_t)offset;
    return CURL_SEEKFUNC_OK;
}

static bool https_is_ip6(const char *host)
{
    unsigned char b[16];
    return inet_pton(AF_INET6, host, b) == 1;
}

static bool https_is_ip(const char *host)
{
    unsigned char b[16];
    return inet_pton(AF_INET, host, b) == 1 || https_is_ip6(host);
}

void https_deliver(const struct https_job *job, struct https_result *res)
{
    struct https_xfer x = {.job = job};
    struct curl_slist *headers = NULL, *resolve = NULL;
    struct buf line;
    char url[400], errbuf[CURL_ERROR_SIZE] = "";
    CURL *curl = NULL;

    memset(res, 0, sizeof(*res));
    res->status = HTTPS_FAILED;
    buf_init(&line, 8192);
    pthread_once(&https_ex_once, https_ex_init);

    bool ip = https_is_ip(job->host);
    /* An IPv6 literal needs brackets in the URL (upstream's Q12). */
    snprintf(url, sizeof(url), "https://%s%s%s:%u/mxdeliv", https_is_ip6(job->host) ? "[" : "",
             job->host, https_is_ip6(job->host) ? "]" : "", (unsigned)job->port);
    if (!ip) {
        /* "host:port:addr1,[v6addr],..." */
        char addr[64];
        int n = 0;
        if (buf_puts(&line, job->host) < 0)
            goto oom;
        snprintf(addr, sizeof(addr), ":%u:", (unsigned)job->port);
        if (buf_puts(&line, addr) < 0)
            goto oom;
        for (size_t i = 0; i < job->naddrs; i++) {
            char text[48];
            netio_addr_text(&job->addrs[i], text, sizeof(text));
            bool v6 = job->addrs[i].ss_family == AF_INET6;
            snprintf(addr, sizeof(addr), "%s%s%s%s", n++ ? "," : "", v6 ? "[" : "", text,
                     v6 ? "]" : "");
            if (buf_puts(&line, addr) < 0)
                goto oom;
        }
        resolve = curl_slist_append(NULL, buf_cstr(&line));
        if (resolve == NULL)
            goto oom;
    }
    /* Headers: no Content-Type (upstream sends none) and no
     * "Expect: 100-continue" round trip for small messages is curl's own
     * choice (it asks only above 1 MiB). */
    headers = curl_slist_append(headers, "Content-Type:");
    if (headers == NULL)
        goto oom;
    if (job->sender[0] != '\0') {
        buf_reset(&line);
        if (buf_puts(&line, "X-Mail-From: ") < 0 || buf_puts(&line, job->sender) < 0)
            goto oom;
        struct curl_slist *h = curl_slist_append(headers, buf_cstr(&line));
        if (h == NULL)
            goto oom;
        headers = h;
    }
    for (size_t i = 0; i < job->nrcpts; i++) {
        buf_reset(&line);
        if (buf_puts(&line, "X-Mail-To: ") < 0 || buf_puts(&line, job->rcpts[i]) < 0)
            goto oom;
        struct curl_slist *h = curl_slist_append(headers, buf_cstr(&line));
        if (h == NULL)
            goto oom;
        headers = h;
    }
    curl = curl_easy_init();
    if (curl == NULL)
        goto oom;
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)job->msg->size);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, https_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, &x);
    curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, https_seek);
    curl_easy_setopt(curl, CURLOPT_SEEKDATA, &x);
    if (https_share != NULL) {
        curl_easy_setopt(curl, CURLOPT_SHARE, https_share);
        /* The shared cache keeps this many idle connections (libcurl's
         * default for one transfer at a time would be 4). */
        curl_easy_setopt(curl, CURLOPT_MAXCONNECTS, (long)HTTPS_KEPT_CONNECTIONS);
    }
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, https_write);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &x);
    x.curl = curl;
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, https_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &x);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "filtermail-transport/" FILTERMAIL_VERSION);
    if (resolve != NULL)
        curl_easy_setopt(curl, CURLOPT_RESOLVE, resolve);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)job->connect_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)job->timeout_ms);
    curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, job->verify ? 1L : 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, job->verify ? 2L : 0L);
    if (job->ca_file != NULL && job->ca_file[0] != '\0') {
        curl_easy_setopt(curl, CURLOPT_CAINFO, job->ca_file);
        curl_easy_setopt(curl, CURLOPT_CAPATH, NULL);
    } else {
        /* The hashed directory is read lazily, unlike the whole bundle. */
        curl_easy_setopt(curl, CURLOPT_CAINFO, NULL);
        curl_easy_setopt(curl, CURLOPT_CAPATH, X509_get_default_cert_dir());
    }
    curl_easy_setopt(curl, CURLOPT_SSL_CTX_FUNCTION, https_sslctx);
    curl_easy_setopt(curl, CURLOPT_SSL_CTX_DATA, &x);

    CURLcode rc = curl_easy_perform(curl);
    char *ipp = NULL;
    if (curl_easy_getinfo(curl, CURLINFO_PRIMARY_IP, &ipp) == CURLE_OK && ipp != NULL)
        snprintf(res->ip, sizeof(res->ip), "%s", ipp);
    if (rc != CURLE_OK) {
        res->status = HTTPS_FAILED;
        snprintf(res->err, sizeof(res->err), "%s", errbuf[0] ? errbuf : curl_easy_strerror(rc));
        goto out;
    }
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &res->http_code);
    if (res->http_code >= 200 && res->http_code < 300) {
        res->status = HTTPS_DELIVERED;
    } else {
        res->status = HTTPS_REFUSED;
        for (size_t i = 0; i < x.bodylen; i++)
            if ((unsigned char)x.body[i] < 0x20 || (unsigned char)x.body[i] > 0x7e)
                x.body[i] = ' ';
        snprintf(res->err, sizeof(res->err), "HTTP status %ld: %s", res->http_code, x.body);
    }
    /* Keep the session of a new connection for the next delivery to this
     * host (a kept connection's is the one stored when it was new). */
    if (x.connected && x.got != NULL && SSL_SESSION_is_resumable(x.got)) {
        int n = i2d_SSL_SESSION(x.got, NULL);
        if (n > 0) {
            unsigned char *der = malloc((size_t)n), *q = der;
            if (der != NULL && i2d_SSL_SESSION(x.got, &q) == n) {
                res->session = der;
                res->session_len = (size_t)n;
            } else {
                free(der);
            }
        }
    }
    goto out;
oom:
    snprintf(res->err, sizeof(res->err), "out of memory");
out:
    if (curl != NULL)
        curl_easy_cleanup(curl);
    if (x.offer != NULL)
        SSL_SESSION_free(x.offer);
    if (x.got != NULL)
        SSL_SESSION_free(x.got);
    curl_slist_free_all(headers);
    curl_slist_free_all(resolve);
    buf_free(&line);
}
