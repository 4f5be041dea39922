/* http: the /mxdeliv request handler; see http.h. */
#include "http.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "array.h"
#include "clock.h"
#include "log.h"
#include "reinject.h"
#include "request.h"

#define TARGET "filtermail::mxdeliv"

/* One request. */
struct req {
    const struct config *cfg;        /* a reference, for the whole request */
    struct reinject_config smtp_cfg; /* the session keeps a pointer to it */
    struct request_envelope env;
    struct request_body body;
    struct reinject *smtp;       /* open while the body streams to Postfix */
    struct reinject_reply reply; /* a failure that decided the answer */
    bool failed;                 /* reply holds it; the body is still read */
    bool answered;
    uint64_t start; /* clock_mono_ns() */
    char peer[160]; /* for the log: the client, as nginx says, and the socket peer */
};

static double elapsed(const struct req *r)
{
    return clock_elapsed_s(r->start);
}

/* "203.0.113.5 via 127.0.0.1" when nginx passed X-Real-IP (only nginx can
 * reach the loopback listener), else the socket peer. Only for the log. */
static void peer_name(struct MHD_Connection *c, char *out, size_t outlen)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;
    const char *real = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Real-IP");
    char addr[INET6_ADDRSTRLEN] = "?", esc[64];

    if (sa != NULL && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, addr, sizeof(addr));
    else if (sa != NULL && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, addr, sizeof(addr));
    if (real != NULL && real[0] != '\0') {
        log_escape(esc, sizeof(esc), real, strlen(real), 45);
        snprintf(out, outlen, "%s via %s", esc, addr);
    } else {
        snprintf(out, outlen, "%s", addr);
    }
}

/* Queues the answer: the status and the SMTP reply text as the body (no
 * Content-Type, as upstream). */
static enum MHD_Result answer(struct MHD_Connection *c, struct req *r, unsigned status,
                              const char *text)
{
    struct MHD_Response *resp;
    enum MHD_Result rc;

    r->answered = true;
    resp = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, MHD_HTTP_METHOD_POST);
    rc = MHD_queue_response(c, status, resp);
    MHD_destroy_response(resp);
    return rc;
}

/* Answers with an SMTP reply, and logs it once. */
static enum MHD_Result answer_reply(struct MHD_Connection *c, struct req *r, const char *text,
                                    const char *detail)
{
    int code = request_reply_code(text);
    unsigned status = request_http_status(code);
    char esc[200];

    log_escape(esc, sizeof(esc), r->env.sender, strlen(r->env.sender), 100);
    if (status == 503)
        log_warn(TARGET, "Failed to reinject mail: %s (%s; from %s, sender <%s>)", text,
                 detail != NULL && detail[0] ? detail : "temporary failure", r->peer, esc);
    else
        log_info(TARGET, "(HTTP) %u %s (from %s, sender <%s>, %zu recipients, %llu bytes)", status,
                 text, r->peer, esc, r->env.nrcpts, (unsigned long long)r->body.size);
    return answer(c, r, status, text);
}

/* The line for an accepted message: Postfix's reply names the queue id. */
static void log_accepted(const struct req *r)
{
    char esc[200];

    log_escape(esc, sizeof(esc), r->env.sender, strlen(r->env.sender), 100);
    log_info(TARGET,
             "(HTTP) 200 250 OK (from %s, sender <%s>, %zu recipients, %llu bytes; "
             "Postfix: %s) in %.3f s",
             r->peer, esc, r->env.nrcpts, (unsigned long long)r->body.size, r->reply.text,
             elapsed(r));
}

/* The request headers in the order of libmicrohttpd's buffer. */
struct headers {
    const char **key, **value;
    size_t *len, n, cap;
    bool failed;
};

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size)
{
    struct headers *h = cls;
    (void)kind;
    (void)key_size;
    /* Three arrays side by side: each grows from the same capacity, which is
     * stored once all three have room. */
    size_t cap = h->cap;
    const char **k = array_grow(h->key, sizeof(*h->key), h->cap, h->n + 1, SIZE_MAX, &cap);
    if (k != NULL)
        h->key = k;
    const char **v = array_grow(h->value, sizeof(*h->value), h->cap, h->n + 1, SIZE_MAX, &cap);
    if (v != NULL)
        h->value = v;
    size_t *l = array_grow(h->len, sizeof(*h->len), h->cap, h->n + 1, SIZE_MAX, &cap);
    if (l != NULL)
        h->len = l;
    if (k == NULL || v == NULL || l == NULL) {
        h->failed = true;
        return MHD_NO;
    }
    h->cap = cap;
    h->key[h->n] = key;
    h->value[h->n] = value;
    h->len[h->n] = value != NULL ? value_size : 0;
    h->n++;
    return MHD_YES;
}

/* The envelope from the request headers; a value cut at a NUL counts whole
 * (request_value_len), so that it is refused rather than shortened. */
static void read_envelope(struct MHD_Connection *c, struct req *r)
{
    struct headers h = {0};

    MHD_get_connection_values_n(c, MHD_HEADER_KIND, collect_header, &h);
    if (h.failed)
        r->env.error = REQUEST_REPLY_NO_MEMORY;
    for (size_t i = 0; i < h.n && !h.failed; i++) {
        const char *v = h.value[i];
        size_t len = h.len[i];
        if (v != NULL && strncasecmp(h.key[i], "X-Mail-", 7) == 0)
            len = request_value_len(v, len, i + 1 < h.n ? h.key[i + 1] : NULL);
        request_envelope_header(&r->env, h.key[i], v != NULL ? v : "", len);
    }
    free(h.key);
    free(h.value);
    free(h.len);
}

/* The first call, with the headers in: method, envelope, declared size,
 * then the SMTP session up to DATA. */
/* The request's SMTP session, up to the server's 354 to DATA: a kept one
 * when there is one, a new one otherwise. A kept session that ended or broke
 * (421, or an I/O error of ours) before DATA gets one new session in its
 * place: nothing of the request was accepted yet (no final dot), so it is
 * safe, and the sending relay does not pay for an idle connection Postfix
 * closed. A refusal by the server is the answer either way. 0, or -1 with
 * r->reply. */
static int start_session(const struct http_context *ctx, struct req *r)
{
    r->smtp = reinject_pool_take(ctx->pool, &r->smtp_cfg);
    if (r->smtp != NULL) {
        if (reinject_envelope(r->smtp, r->env.sender, r->env.rcpts, r->env.nrcpts, &r->reply) ==
            0)
            return 0;
        reinject_close(&r->smtp);
        if (r->reply.code != 421 && strncmp(r->reply.text, "451 I/O error", 13) != 0)
            return -1;
        log_debug(TARGET, "(HTTP) a kept SMTP session failed (%s %s); opening a new one",
                  r->reply.text, r->reply.detail);
    }
    if (reinject_open(&r->smtp_cfg, &r->smtp, &r->reply) < 0 ||
        reinject_envelope(r->smtp, r->env.sender, r->env.rcpts, r->env.nrcpts, &r->reply) < 0) {
        reinject_close(&r->smtp);
        return -1;
    }
    return 0;
}

static enum MHD_Result on_headers(struct MHD_Connection *c, const struct http_context *ctx,
                                  struct req *r, const char *method)
{
    const char *cl;
    char esc[300];

    if (strcmp(method, MHD_HTTP_METHOD_POST) != 0) {
        log_escape(esc, sizeof(esc), method, strlen(method), 20);
        log_info(TARGET, "(HTTP) 405 %s from %s", esc, r->peer);
        return answer(c, r, MHD_HTTP_METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    read_envelope(c, r);
    if (r->env.error != NULL)
        return answer_reply(c, r, r->env.error, NULL);

    /* A declared size over the limit is refused before a byte of the body
     * is read (libmicrohttpd already checked the header's syntax). */
    cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl != NULL) {
        errno = 0;
        char *end;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno != 0 || end == cl || n > r->cfg->max_message_size) {
            r->body.size = errno == 0 && end != cl ? n : UINT64_MAX;
            return answer_reply(c, r, REQUEST_REPLY_TOO_BIG, NULL);
        }
    }

    log_escape(esc, sizeof(esc), r->env.sender, strlen(r->env.sender), 260);
    log_debug(TARGET, "(HTTP) MAIL FROM:<%s>", esc);
    for (size_t i = 0; i < r->env.nrcpts; i++) {
        log_escape(esc, sizeof(esc), r->env.rcpts[i], strlen(r->env.rcpts[i]), 260);
        log_debug(TARGET, "(HTTP) RCPT TO:<%s>", esc);
    }
    if (r->env.nrcpts == 0)
        return MHD_YES; /* read and check the body, then drop it (spec Q11) */
    r->smtp_cfg = (struct reinject_config){.host = r->cfg->postfix_host,
                                           .port = r->cfg->postfix_reinject_port_incoming,
                                           .helo = ctx->helo,
                                           .timeout_ms = HTTP_SMTP_TIMEOUT_MS};
    if (start_session(ctx, r) < 0)
        return answer_reply(c, r, r->reply.text, r->reply.detail);
    return MHD_YES;
}

/* A chunked body passed the limit: libmicrohttpd cannot answer in the middle
 * of a body, so the answer is written here, on this connection's own thread
 * (nothing else writes to the socket now), and the connection is closed
 * without reading further. */
static enum MHD_Result refuse_oversize_chunked(struct MHD_Connection *c, struct req *r)
{
    static const char resp[] = "HTTP/1.1 413 Content Too Large\r\n"
                               "Connection: close\r\n"
                               "Content-Length: 32\r\n\r\n" REQUEST_REPLY_TOO_BIG;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

    log_info(TARGET, "(HTTP) 413 %s (from %s, chunked body over %llu bytes)", REQUEST_REPLY_TOO_BIG,
             r->peer, (unsigned long long)r->cfg->max_message_size);
    r->answered = true;
    if (ci != NULL) {
        (void)send(ci->connect_fd, resp, sizeof(resp) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)shutdown(ci->connect_fd, SHUT_WR);
    }
    return MHD_NO;
}

/* A piece of the body: checked, and what is proven harmless goes to Postfix. */
static enum MHD_Result on_body(struct MHD_Connection *c, struct req *r, const char *p, size_t n)
{
    struct request_body_out out;
    enum request_body_status st;

    if (elapsed(r) > HTTP_REQUEST_DEADLINE) {
        log_warn(TARGET, "request from %s took longer than %d s; closing", r->peer,
                 HTTP_REQUEST_DEADLINE);
        return MHD_NO;
    }
    st = request_body_push(&r->body, p, n, &out);
    if (st == REQUEST_BODY_TOO_BIG) {
        reinject_close(&r->smtp);
        return refuse_oversize_chunked(c, r);
    }
    if (r->smtp == NULL)
        return MHD_YES;
    if (st != REQUEST_BODY_OK) {
        /* Closed without a final dot: Postfix discards what it got. */
        reinject_close(&r->smtp);
        return MHD_YES;
    }
    if ((out.held_len > 0 && reinject_write(r->smtp, out.held, out.held_len, &r->reply) < 0) ||
        (out.len > 0 && reinject_write(r->smtp, p, out.len, &r->reply) < 0)) {
        reinject_close(&r->smtp);
        r->failed = true;
    }
    return MHD_YES;
}

/* The body is complete: the verdict. */
static enum MHD_Result on_end(struct MHD_Connection *c, const struct http_context *ctx,
                              struct req *r)
{
    switch (request_body_finish(&r->body)) {
    case REQUEST_BODY_TOO_BIG:
        reinject_close(&r->smtp);
        return answer_reply(c, r, REQUEST_REPLY_TOO_BIG, NULL);
    case REQUEST_BODY_INVALID:
        reinject_close(&r->smtp);
        return answer_reply(c, r, REQUEST_REPLY_INVALID_DATA, NULL);
    case REQUEST_BODY_OK:
        break;
    }
    if (r->failed)
        return answer_reply(c, r, r->reply.text, r->reply.detail);
    if (r->env.nrcpts == 0) {
        log_warn(TARGET, "Dropping mail; All recipients disabled.");
        return answer_reply(c, r, REQUEST_REPLY_OK, NULL);
    }
    if (r->smtp == NULL) /* cannot happen: every way of closing it decided the answer */
        return answer_reply(c, r, "451 I/O error", "no SMTP session at the end of the body");
    if (reinject_finish(r->smtp, &r->reply) < 0) {
        reinject_close(&r->smtp);
        return answer_reply(c, r, r->reply.text, r->reply.detail);
    }
    reinject_pool_put(ctx->pool, &r->smtp);
    log_accepted(r);
    return answer(c, r, MHD_HTTP_OK, REQUEST_REPLY_OK);
}

enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **req_cls)
{
    struct http_context *ctx = cls;
    struct req *r = *req_cls;
    (void)url; /* any path: nginx forwards /mxdeliv only (spec 6.8) */
    (void)version;

    if (r == NULL) {
        r = calloc(1, sizeof(*r));
        if (r == NULL)
            return MHD_NO;
        *req_cls = r;
        request_envelope_init(&r->env);
        r->cfg = config_live_get(ctx->live);
        request_body_init(&r->body, r->cfg->max_message_size);
        r->start = clock_mono_ns();
        peer_name(c, r->peer, sizeof(r->peer));
        return on_headers(c, ctx, r, method);
    }
    if (r->answered) {
        /* Answered at the headers: libmicrohttpd discards the body. */
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        return on_body(c, r, upload, n);
    }
    return on_end(c, ctx, r);
}

static const char *termination(enum MHD_RequestTerminationCode why)
{
    switch (why) {
    case MHD_REQUEST_TERMINATED_TIMEOUT_REACHED:
        return "timeout";
    case MHD_REQUEST_TERMINATED_CLIENT_ABORT:
        return "client gone";
    case MHD_REQUEST_TERMINATED_WITH_ERROR:
        return "closed";
    case MHD_REQUEST_TERMINATED_DAEMON_SHUTDOWN:
        return "shutdown";
    default:
        return "error";
    }
}

/* The end of every request, answered or not: a session still open means the
 * body never ended, and closing it makes Postfix discard the message. */
void http_on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                       enum MHD_RequestTerminationCode why)
{
    struct req *r = *req_cls;
    (void)cls;
    (void)c;

    if (r == NULL)
        return;
    if (!r->answered)
        log_warn(TARGET, "request from %s ended before its answer was sent (%s)%s", r->peer,
                 termination(why), r->smtp != NULL ? "; message discarded" : "");
    reinject_close(&r->smtp);
    request_envelope_free(&r->env);
    config_release(&r->cfg);
    free(r);
    *req_cls = NULL;
}

void http_mhd_log(void *cls, const char *fmt, va_list ap)
{
    char msg[512];
    size_t n;
    (void)cls;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    n = strlen(msg);
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
        msg[--n] = '\0';
    /* Reaching the connection limit matters to the operator; the rest
     * (clients closing early, our own refusals) is detail. */
    if (strstr(msg, "limit") != NULL)
        log_warn(TARGET, "libmicrohttpd: %s", msg);
    else
        log_debug(TARGET, "libmicrohttpd: %s", msg);
}
