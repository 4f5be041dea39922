/* reinject: SMTP replies, and the client session towards Postfix. */
#include "reinject.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Replies. */

void reinject_parser_init(struct reinject_parser *p)
{
    memset(p, 0, sizeof(*p));
}

static int line_byte(struct reinject_parser *p, char c)
{
    if (p->line_len >= REINJECT_LINE_MAX)
        return -1;
    if (p->line_len < sizeof(p->line) - 1)
        p->line[p->line_len] = c;
    p->line_len++;
    return 0;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Checks the line just ended; returns its code, or -1. */
static int line_code(const struct reinject_parser *p)
{
    const char *l = p->line;
    if (p->line_len < 3 || l[0] < '2' || l[0] > '5' || !is_digit(l[1]) || !is_digit(l[2]))
        return -1;
    if (p->line_len > 3 && l[3] != ' ' && l[3] != '-')
        return -1;
    return (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
}

static bool line_is_pipelining(const struct reinject_parser *p)
{
    const size_t k = sizeof("PIPELINING") - 1;
    if (p->line_len < 4 + k)
        return false;
    if (strncasecmp(p->line + 4, "PIPELINING", k) != 0)
        return false;
    return p->line_len == 4 + k || p->line[4 + k] == ' ';
}

int reinject_parser_push(struct reinject_parser *p, const char *data, size_t n, size_t *used_r,
                         struct reinject_reply *reply)
{
    for (size_t i = 0; i < n; i++) {
        char c = data[i];
        int code;

        if (c != '\n') {
            /* A CR counts as text unless an LF follows it. */
            if (p->cr && line_byte(p, '\r') < 0)
                return -1;
            p->cr = c == '\r';
            if (!p->cr && line_byte(p, c) < 0)
                return -1;
            continue;
        }
        p->cr = false;
        code = line_code(p);
        if (code < 0 || (p->lines > 0 && code != p->code))
            return -1;
        p->code = code;
        if (line_is_pipelining(p))
            p->pipelining = true;
        if (++p->lines > REINJECT_LINES_MAX)
            return -1;
        if (p->line_len > 3 && p->line[3] == '-') {
            p->line_len = 0;
            continue;
        }
        /* The final line. */
        size_t len = p->line_len < sizeof(p->line) - 1 ? p->line_len : sizeof(p->line) - 1;
        for (size_t j = 0; j < len; j++) {
            unsigned char b = (unsigned char)p->line[j];
            reply->text[j] = b >= 0x20 && b <= 0x7e ? (char)b : '?';
        }
        reply->text[len] = '\0';
        reply->code = code;
        reply->pipelining = p->pipelining;
        reply->detail[0] = '\0';
        *used_r = i + 1;
        reinject_parser_init(p);
        return 1;
    }
    *used_r = n;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The session. */

#define IN_SIZE 4096
#define OUT_SIZE (64 * 1024)
/* RCPTs written before their replies are read, so that neither side can
 * block writing while the other does too (RFC 2920 section 3.1). */
#define PIPELINE_BATCH 100

struct reinject {
    int fd;
    const struct reinject_config *cfg;
    bool pipelining;
    bool broken;  /* a failure happened: only close is allowed */
    char last[2]; /* the last two data bytes written */
    size_t data_len;
    struct reinject_parser parser;
    size_t in_off, in_len;
    size_t out_len;
    char in[IN_SIZE];
    char out[OUT_SIZE];
};

static void set_reply(struct reinject_reply *reply, int code, const char *text, const char *detail)
{
    reply->code = code;
    snprintf(reply->text, sizeof(reply->text), "%s", text);
    reply->pipelining = false;
    snprintf(reply->detail, sizeof(reply->detail), "%s", detail);
}

static int io_error(struct reinject *r, struct reinject_reply *reply, const char *what, int err)
{
    char detail[sizeof(reply->detail)];
    snprintf(detail, sizeof(detail), "%s: %s", what,
             err == ETIMEDOUT ? "timed out"
             : err == 0       ? "connection closed"
                              : strerror(err));
    set_reply(reply, 451, "451 I/O error", detail);
    r->broken = true;
    return -1;
}

/* Waits until fd is ready for events; 0, or -1 with errno (ETIMEDOUT). */
static int wait_fd(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = {.fd = fd, .events = events};
    for (;;) {
        int n = poll(&pfd, 1, timeout_ms);
        if (n > 0)
            return 0;
        if (n == 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

static int flush(struct reinject *r, struct reinject_reply *reply, const char *what)
{
    size_t off = 0;
    while (off < r->out_len) {
        ssize_t w = send(r->fd, r->out + off, r->out_len - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_fd(r->fd, POLLOUT, r->cfg->timeout_ms) == 0)
                continue;
        }
        return io_error(r, reply, what, errno);
    }
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

/* Reads one reply; 0, or -1 (I/O error, closed, malformed). */
static int read_reply(struct reinject *r, struct reinject_reply *reply, const char *what)
{
    char detail[sizeof(reply->detail)];
    for (;;) {
        if (r->in_off < r->in_len) {
            size_t used;
            int st = reinject_parser_push(&r->parser, r->in + r->in_off, r->in_len - r->in_off,
                                          &used, reply);
            if (st < 0) {
                snprintf(detail, sizeof(detail), "%s: malformed reply", what);
                set_reply(reply, 451, "451 I/O error", detail);
                r->broken = true;
                return -1;
            }
            r->in_off += used;
            if (st == 1)
                return 0;
        }
        r->in_off = r->in_len = 0;
        ssize_t got = recv(r->fd, r->in, sizeof(r->in), 0);
        if (got > 0) {
            r->in_len = (size_t)got;
            continue;
        }
        if (got == 0)
            return io_error(r, reply, what, 0);
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if (wait_fd(r->fd, POLLIN, r->cfg->timeout_ms) == 0)
                continue;
        }
        return io_error(r, reply, what, errno);
    }
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

int reinject_open_fd(int fd, const struct reinject_config *cfg, struct reinject **r_r,
                     struct reinject_reply *reply)
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
    r->fd = fd;
    r->cfg = cfg;
    reinject_parser_init(&r->parser);
    flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        io_error(r, reply, "socket", errno);
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
    *r_r = r;
    return 0;
}

/* "ip:port" or "[ip6]:port". */
static void format_addr(const struct sockaddr *sa, char *out, size_t outlen)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        port = ntohs(in->sin_port);
        snprintf(out, outlen, "%s:%u", ip, port);
    } else {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        port = ntohs(in6->sin6_port);
        snprintf(out, outlen, "[%s]:%u", ip, port);
    }
}

/* A non-blocking connect with a timeout; the socket, or -1 with errno. */
static int connect_to(const struct addrinfo *ai, int timeout_ms)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    int err = 0;
    socklen_t len = sizeof(err);

    if (fd < 0)
        return -1;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return fd;
    if (errno != EINPROGRESS)
        goto fail;
    if (wait_fd(fd, POLLOUT, timeout_ms) < 0)
        goto fail;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        goto fail;
    if (err == 0)
        return fd;
    errno = err;
fail:
    err = errno;
    close(fd);
    errno = err;
    return -1;
}

int reinject_open(const struct reinject_config *cfg, struct reinject **r_r,
                  struct reinject_reply *reply)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8], tried[REINJECT_TEXT_MAX - 80] = "", addr[INET6_ADDRSTRLEN + 10];
    char text[REINJECT_TEXT_MAX], detail[sizeof(reply->detail)] = "";
    size_t off = 0;
    int rc, fd = -1;

    *r_r = NULL;
    snprintf(port, sizeof(port), "%u", (unsigned)cfg->port);
    rc = getaddrinfo(cfg->host, port, &hints, &res);
    if (rc != 0) {
        snprintf(detail, sizeof(detail), "resolving %.100s: %s", cfg->host, gai_strerror(rc));
        set_reply(reply, 451, "451 Resolver error", detail);
        return -1;
    }
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        fd = connect_to(ai, cfg->timeout_ms);
        if (fd >= 0)
            break;
        format_addr(ai->ai_addr, addr, sizeof(addr));
        snprintf(detail, sizeof(detail), "connecting to %s: %s", addr,
                 errno == ETIMEDOUT ? "timed out" : strerror(errno));
        /* Upstream's text: the addresses in Rust's Debug list form. */
        rc = snprintf(tried + off, sizeof(tried) - off, "%s\"%s\"", off ? ", " : "", addr);
        if (rc > 0 && (size_t)rc < sizeof(tried) - off)
            off += (size_t)rc;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(text, sizeof(text),
                 "450 Failed to connect to any of the following addresses: [%s]", tried);
        set_reply(reply, 450, text, detail[0] ? detail : "no address to connect to");
        return -1;
    }
    return reinject_open_fd(fd, cfg, r_r, reply);
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

    if (r->broken || n == 0) {
        set_reply(reply, 451, "451 I/O error",
                  "envelope on a broken session or without recipients");
        return -1;
    }
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
    struct reinject_reply quit;

    if (r->broken) {
        set_reply(reply, 451, "451 I/O error", "end of data on a broken session");
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
    /* The message is queued; QUIT is a courtesy whose failure changes nothing. */
    if (put(r, "QUIT\r\n", 6, &quit, "QUIT") == 0 && flush(r, &quit, "QUIT") == 0)
        (void)read_reply(r, &quit, "QUIT");
    r->broken = true;
    return 0;
}

void reinject_close(struct reinject **r)
{
    if (*r == NULL)
        return;
    if ((*r)->fd >= 0)
        close((*r)->fd);
    free(*r);
    *r = NULL;
}
