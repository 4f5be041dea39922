/* reinject: the client session towards Postfix, on the shared SMTP client. */
#include "reinject.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "netio.h"
#include "smtpreply.h"

#define OUT_SIZE (64 * 1024)
/* RCPTs written before their replies are read, so that neither side can
 * block writing while the other does too (RFC 2920 section 3.1). */
#define PIPELINE_BATCH 100

static const struct smtp_reply_limits reply_limits = {
    .line_max = REINJECT_LINE_MAX,
    .lines_max = REINJECT_LINES_MAX,
};

struct reinject {
    struct conn c;
    char host[256];  /* where it is connected: cfg's host and port */
    uint16_t port;
    int session_ms;  /* each use's deadline, from its start */
    bool pipelining;
    bool broken;  /* a failure happened: only close is allowed */
    bool idle;    /* between transactions: QUIT may be said, the session kept */
    unsigned messages;  /* accepted on this session */
    int64_t opened_ms, idle_since_ms;
    char last[2]; /* the last two data bytes written */
    size_t data_len;
    struct smtp_reply_parser parser;
    struct smtp_reply sr;
    size_t out_len;
    char out[OUT_SIZE];
};

static void set_reply(struct reinject_reply *reply, int code, const char *text, const char *detail)
{
    reply->code = code;
    snprintf(reply->text, sizeof(reply->text), "%s", text);
    reply->pipelining = false;
    snprintf(reply->detail, sizeof(reply->detail), "%s", detail);
}

/* An I/O failure: the connection's reason goes to the log, 451 upstream. */
static int io_error(struct reinject *r, struct reinject_reply *reply, const char *what)
{
    char detail[sizeof(reply->detail)];
    snprintf(detail, sizeof(detail), "%s: %.120s", what, r->c.err);
    set_reply(reply, 451, "451 I/O error", detail);
    r->broken = true;
    return -1;
}

static int flush(struct reinject *r, struct reinject_reply *reply, const char *what)
{
    if (r->out_len > 0 && conn_write(&r->c, r->out, r->out_len) < 0)
        return io_error(r, reply, what);
    r->out_len = 0;
    return 0;
}

static int put(struct reinject *r, const char *p, size_t n, struct reinject_reply *reply,
               const char *what)
{
    while (n > 0) {
        size_t room = sizeof(r->out) - r->out_len;
        size_t k = n < room ? n : room;
        memcpy(r->out + r->out_len, p, k);
        r->out_len += k;
        p += k;
        n -= k;
        if (r->out_len == sizeof(r->out) && flush(r, reply, what) < 0)
            return -1;
    }
    return 0;
}

/* Reads one reply; 0, or -1 (I/O error, closed, timed out, malformed). */
static int read_reply(struct reinject *r, struct reinject_reply *reply, const char *what)
{
    int rc = conn_read_reply(&r->c, &r->parser, &r->sr);
    if (rc == -2) {
        char detail[sizeof(reply->detail)];
        snprintf(detail, sizeof(detail), "%s: malformed reply (%.100s)", what, r->c.err);
        set_reply(reply, 451, "451 I/O error", detail);
        r->broken = true;
        return -1;
    }
    if (rc < 0)
        return io_error(r, reply, what);
    struct smtp_caps caps;
    smtp_caps_parse(&r->sr, &caps);
    reply->code = r->sr.code;
    smtp_reply_last_line(&r->sr, reply->text, sizeof(reply->text));
    reply->pipelining = caps.pipelining;
    reply->detail[0] = '\0';
    return 0;
}

/* Reads a reply that must have a code in [lo, hi]. A 4xx or 5xx is the
 * server's refusal, passed on as it is. Any other code out of place (a 250
 * to DATA, a 354 to RCPT) is not a refusal and certainly not a delivery: it
 * becomes a temporary error, so the sender keeps the message. */
static int expect(struct reinject *r, struct reinject_reply *reply, const char *what, int lo,
                  int hi)
{
    if (read_reply(r, reply, what) < 0)
        return -1;
    if (reply->code >= lo && reply->code <= hi)
        return 0;
    r->broken = true;
    if (reply->code < 400) {
        char detail[sizeof(reply->detail)];
        snprintf(detail, sizeof(detail), "%s: unexpected reply %.100s", what, reply->text);
        set_reply(reply, 451, "451 I/O error", detail);
        return -1;
    }
    snprintf(reply->detail, sizeof(reply->detail), "%s refused", what);
    return -1;
}

void reinject_helo_name(const char *ip, char *out, size_t outlen)
{
    snprintf(out, outlen, strchr(ip, ':') != NULL ? "[IPv6:%s]" : "[%s]", ip);
}

static int session_ms(const struct reinject_config *cfg)
{
    return cfg->session_ms > 0 ? cfg->session_ms : REINJECT_SESSION_MS;
}

static int64_t session_deadline(const struct reinject_config *cfg)
{
    return (int64_t)clock_mono_ms() + session_ms(cfg);
}

/* The session on a connected socket, within the session's deadline. */
static int open_session(int fd, int64_t deadline, const struct reinject_config *cfg,
                        struct reinject **r_r, struct reinject_reply *reply)
{
    struct reinject *r;
    int flags, one = 1;
    char line[300];
    int n;

    *r_r = NULL;
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        close(fd);
        set_reply(reply, 451, "451 I/O error", "out of memory");
        return -1;
    }
    conn_init(&r->c, fd, cfg->timeout_ms, deadline);
    snprintf(r->host, sizeof(r->host), "%s", cfg->host != NULL ? cfg->host : "");
    r->port = cfg->port;
    r->session_ms = session_ms(cfg);
    r->opened_ms = (int64_t)clock_mono_ms();
    smtp_reply_parser_init(&r->parser, &reply_limits);
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        snprintf(r->c.err, sizeof(r->c.err), "%s", strerror(errno));
        io_error(r, reply, "socket");
        reinject_close(&r);
        return -1;
    }
    /* Fails harmlessly on a socket that is not TCP (tests). */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    n = snprintf(line, sizeof(line), "EHLO %s\r\n", cfg->helo);
    if (n < 0 || (size_t)n >= sizeof(line)) {
        set_reply(reply, 451, "451 I/O error", "EHLO name too long");
        reinject_close(&r);
        return -1;
    }
    if (expect(r, reply, "greeting", 200, 299) < 0 || put(r, line, (size_t)n, reply, "EHLO") < 0 ||
        flush(r, reply, "EHLO") < 0 || expect(r, reply, "EHLO", 250, 250) < 0) {
        reinject_close(&r);
        return -1;
    }
    r->pipelining = reply->pipelining;
    r->idle = true;
    *r_r = r;
    return 0;
}

int reinject_open_fd(int fd, const struct reinject_config *cfg, struct reinject **r_r,
                     struct reinject_reply *reply)
{
    return open_session(fd, session_deadline(cfg), cfg, r_r, reply);
}

int reinject_open(const struct reinject_config *cfg, struct reinject **r_r,
                  struct reinject_reply *reply)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    struct sockaddr_storage sa[NETIO_HE_MAX_ADDRS];
    char port[8], tried[REINJECT_TEXT_MAX - 80] = "", addr[INET6_ADDRSTRLEN + 10];
    char text[REINJECT_TEXT_MAX], detail[sizeof(reply->detail)], err[256];
    size_t off = 0, n = 0, winner;
    int64_t deadline = session_deadline(cfg);
    int rc, fd;

    *r_r = NULL;
    snprintf(port, sizeof(port), "%u", (unsigned)cfg->port);
    rc = getaddrinfo(cfg->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(detail, sizeof(detail), "resolving %.100s: %s", cfg->host, gai_strerror(rc));
        set_reply(reply, 451, "451 Resolver error", detail);
        return -1;
    }
    for (const struct addrinfo *ai = res; ai != NULL && n < NETIO_HE_MAX_ADDRS; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(sa[n]))
            continue;
        memset(&sa[n], 0, sizeof(sa[n]));
        memcpy(&sa[n], ai->ai_addr, ai->ai_addrlen);
        netio_addr_text(&sa[n], err, sizeof(err));
        snprintf(addr, sizeof(addr), ai->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", err, port);
        /* Upstream's text: the addresses in Rust's Debug list form. */
        rc = snprintf(tried + off, sizeof(tried) - off, "%s\"%s\"", off ? ", " : "", addr);
        if (rc > 0 && (size_t)rc < sizeof(tried) - off)
            off += (size_t)rc;
        n++;
    }
    freeaddrinfo(res);
    fd = netio_he_connect(sa, n, NETIO_HE_STAGGER_MS, cfg->timeout_ms, deadline, &winner, err,
                          sizeof(err));
    if (fd < 0) {
        snprintf(text, sizeof(text),
                 "450 Failed to connect to any of the following addresses: [%s]", tried);
        snprintf(detail, sizeof(detail), "connecting to %.140s", err);
        set_reply(reply, 450, text, detail);
        return -1;
    }
    return open_session(fd, deadline, cfg, r_r, reply);
}

static bool path_ok(const char *a)
{
    return strpbrk(a, "<>\r\n") == NULL;
}

int reinject_envelope(struct reinject *r, const char *sender, char *const *rcpts, size_t n,
                      struct reinject_reply *reply)
{
    char line[REINJECT_TEXT_MAX];
    size_t done = 0; /* recipients whose replies were read */
    int len;

    if (r->broken || !r->idle || n == 0) {
        set_reply(reply, 451, "451 I/O error",
                  "envelope on a broken or busy session, or without recipients");
        return -1;
    }
    r->idle = false;
    r->data_len = 0;
    r->last[0] = r->last[1] = '\0';
    if (!path_ok(sender)) {
        set_reply(reply, 501, "501 Invalid address", "sender");
        r->broken = true;
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!path_ok(rcpts[i])) {
            set_reply(reply, 501, "501 Invalid address", "recipient");
            r->broken = true;
            return -1;
        }
    }
    len = snprintf(line, sizeof(line), "MAIL FROM:<%s>\r\n", sender);
    if (len < 0 || (size_t)len >= sizeof(line)) {
        set_reply(reply, 501, "501 Invalid address", "sender too long");
        r->broken = true;
        return -1;
    }
    if (put(r, line, (size_t)len, reply, "MAIL") < 0)
        return -1;
    if (!r->pipelining && (flush(r, reply, "MAIL") < 0 || expect(r, reply, "MAIL", 200, 299) < 0))
        return -1;
    while (done < n) {
        size_t batch = r->pipelining ? PIPELINE_BATCH : 1;
        size_t end = n - done < batch ? n : done + batch;
        for (size_t i = done; i < end; i++) {
            len = snprintf(line, sizeof(line), "RCPT TO:<%s>\r\n", rcpts[i]);
            if (len < 0 || (size_t)len >= sizeof(line)) {
                set_reply(reply, 501, "501 Invalid address", "recipient too long");
                r->broken = true;
                return -1;
            }
            if (put(r, line, (size_t)len, reply, "RCPT") < 0)
                return -1;
        }
        if (end == n && r->pipelining && put(r, "DATA\r\n", 6, reply, "DATA") < 0)
            return -1;
        if (flush(r, reply, "RCPT") < 0)
            return -1;
        /* With pipelining, MAIL's reply comes before the first RCPT's. */
        if (r->pipelining && done == 0 && expect(r, reply, "MAIL", 200, 299) < 0)
            return -1;
        for (; done < end; done++) {
            if (expect(r, reply, "RCPT", 200, 299) < 0)
                return -1;
        }
    }
    if (!r->pipelining && (put(r, "DATA\r\n", 6, reply, "DATA") < 0 || flush(r, reply, "DATA") < 0))
        return -1;
    /* After a refused MAIL or RCPT the server may still have said 354 to a
     * pipelined DATA; the session is then closed without a final dot, so
     * nothing is delivered to the recipients it accepted. */
    return expect(r, reply, "DATA", 354, 354);
}

int reinject_write(struct reinject *r, const char *p, size_t n, struct reinject_reply *reply)
{
    if (r->broken) {
        set_reply(reply, 451, "451 I/O error", "data on a broken session");
        return -1;
    }
    if (n == 0)
        return 0;
    if (n >= 2) {
        r->last[0] = p[n - 2];
        r->last[1] = p[n - 1];
    } else {
        r->last[0] = r->last[1];
        r->last[1] = p[0];
    }
    r->data_len += n;
    return put(r, p, n, reply, "data");
}

int reinject_finish(struct reinject *r, struct reinject_reply *reply)
{
    if (r->broken || r->idle) {
        set_reply(reply, 451, "451 I/O error", "end of data on a broken or idle session");
        return -1;
    }
    /* The body check guarantees data ending in CRLF; a final dot after
     * anything else would not end the data. */
    if (r->data_len < 2 || r->last[0] != '\r' || r->last[1] != '\n') {
        set_reply(reply, 451, "451 I/O error", "data does not end in CRLF");
        r->broken = true;
        return -1;
    }
    if (put(r, ".\r\n", 3, reply, "end of data") < 0 || flush(r, reply, "end of data") < 0 ||
        expect(r, reply, "end of data", 200, 299) < 0)
        return -1;
    /* The message is queued; the session may take another. */
    r->idle = true;
    r->messages++;
    r->idle_since_ms = (int64_t)clock_mono_ms();
    return 0;
}

void reinject_close(struct reinject **rp)
{
    struct reinject *r = *rp;
    if (r == NULL)
        return;
    /* Between transactions QUIT is a courtesy whose failure changes
     * nothing; in the middle of one, the server must see the connection end
     * without a final dot (and discard the message), so nothing is said. */
    if (r->idle && !r->broken) {
        struct reinject_reply quit;
        if (put(r, "QUIT\r\n", 6, &quit, "QUIT") == 0 && flush(r, &quit, "QUIT") == 0)
            (void)read_reply(r, &quit, "QUIT");
    }
    conn_close(&r->c);
    free(r);
    *rp = NULL;
}

/* -- sessions kept between requests ------------------------------------- */

struct reinject_pool {
    pthread_mutex_t mu;
    size_t n;
    struct reinject *kept[REINJECT_POOL_MAX]; /* the most recently used last */
};

struct reinject_pool *reinject_pool_new(void)
{
    struct reinject_pool *p = calloc(1, sizeof(*p));
    if (p != NULL)
        pthread_mutex_init(&p->mu, NULL);
    return p;
}

void reinject_pool_free(struct reinject_pool **pp)
{
    struct reinject_pool *p = *pp;
    if (p == NULL)
        return;
    for (size_t i = 0; i < p->n; i++)
        reinject_close(&p->kept[i]);
    pthread_mutex_destroy(&p->mu);
    free(p);
    *pp = NULL;
}

bool reinject_reusable(int64_t opened_ms, int64_t idle_since_ms, unsigned messages,
                       int64_t now_ms)
{
    return messages < REINJECT_KEEP_MESSAGES && now_ms - opened_ms < REINJECT_KEEP_AGE_MS &&
           now_ms - idle_since_ms < REINJECT_KEEP_IDLE_MS;
}

/* Whether a kept session may take another message now: within the limits,
 * and the server has said nothing since (a 421 before closing, or the end
 * of the connection, would be waiting to be read). */
static bool fit(struct reinject *r, int64_t now)
{
    if (!reinject_reusable(r->opened_ms, r->idle_since_ms, r->messages, now) ||
        r->c.roff != r->c.rlen)
        return false;
    struct pollfd pfd = {.fd = r->c.fd, .events = POLLIN};
    return poll(&pfd, 1, 0) == 0;
}

struct reinject *reinject_pool_take(struct reinject_pool *p, const struct reinject_config *cfg)
{
    struct reinject *got = NULL, *stale[REINJECT_POOL_MAX];
    size_t nstale = 0;
    int64_t now = (int64_t)clock_mono_ms();

    if (p == NULL)
        return NULL;
    pthread_mutex_lock(&p->mu);
    while (p->n > 0 && got == NULL) {
        struct reinject *r = p->kept[--p->n];
        if (r->port == cfg->port && strcmp(r->host, cfg->host) == 0 && fit(r, now))
            got = r;
        else
            stale[nstale++] = r;
    }
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < nstale; i++) {
        stale[i]->broken = true; /* no QUIT: it may be gone already */
        reinject_close(&stale[i]);
    }
    if (got != NULL) {
        /* This use's deadline, and the limits of the request taking it. */
        got->c.deadline = now + got->session_ms;
        got->c.io_timeout_ms = cfg->timeout_ms;
    }
    return got;
}

void reinject_pool_put(struct reinject_pool *p, struct reinject **rp)
{
    struct reinject *r = *rp;
    if (r == NULL)
        return;
    *rp = NULL;
    if (p != NULL && r->idle && !r->broken &&
        reinject_reusable(r->opened_ms, r->idle_since_ms, r->messages, (int64_t)clock_mono_ms())) {
        pthread_mutex_lock(&p->mu);
        if (p->n < REINJECT_POOL_MAX) {
            p->kept[p->n++] = r;
            r = NULL;
        }
        pthread_mutex_unlock(&p->mu);
    }
    reinject_close(&r);
}
