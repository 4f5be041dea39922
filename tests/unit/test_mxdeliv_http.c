/* Tests for mxdeliv/http.c: whole /mxdeliv requests through libmicrohttpd on
 * loopback, handed to a scripted SMTP server standing in for Postfix's
 * reinjection smtpd. A 200 comes only when the server queued the message for
 * every recipient named; refused and malformed requests never open an SMTP
 * session; a reload changes the next requests. */
#include "http.h"
#include "request.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- The SMTP server: one session per accepted connection, in turn. */

struct smtp {
    int lfd, port;
    pthread_t t;
    atomic_int sessions;
    char got[65536]; /* the last session's commands and data */
    size_t got_len;
    const char *refuse; /* RCPT containing this is refused */
};

static void say(int fd, const char *text)
{
    (void)!write(fd, text, strlen(text));
}

static size_t read_line(int fd, char *line, size_t max)
{
    size_t n = 0;
    while (n + 1 < max && read(fd, line + n, 1) == 1)
        if (line[n++] == '\n')
            break;
    line[n] = '\0';
    return n;
}

static void *smtp_serve(void *arg)
{
    struct smtp *s = arg;
    char line[4096];
    int fd;

    while ((fd = accept(s->lfd, NULL, NULL)) >= 0) {
        bool data = false;
        size_t n;
        atomic_fetch_add(&s->sessions, 1);
        s->got_len = 0;
        say(fd, "220 mx ESMTP\r\n");
        while ((n = read_line(fd, line, sizeof(line))) > 0) {
            if (s->got_len + n < sizeof(s->got)) {
                memcpy(s->got + s->got_len, line, n + 1);
                s->got_len += n;
            }
            if (data) {
                if (strcmp(line, ".\r\n") == 0) {
                    data = false;
                    say(fd, "250 2.0.0 Ok: queued as ABC\r\n");
                }
            } else if (strncmp(line, "RCPT", 4) == 0) {
                say(fd, s->refuse != NULL && strstr(line, s->refuse) != NULL
                            ? "550 5.1.1 <x>: Recipient address rejected\r\n"
                            : "250 2.1.5 Ok\r\n");
            } else if (strncmp(line, "DATA", 4) == 0) {
                say(fd, "354 go\r\n");
                data = true;
            } else if (strncmp(line, "QUIT", 4) == 0) {
                say(fd, "221 Bye\r\n");
                break;
            } else {
                say(fd, "250 Ok\r\n");
            }
        }
        close(fd);
    }
    return NULL;
}

static int listen_loopback(int *port_r)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    socklen_t len = sizeof(sin);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&sin, &len) < 0)
        return -1;
    *port_r = ntohs(sin.sin_port);
    return fd;
}

/* ---- The HTTP side. */

static struct smtp smtp;
static struct http_context ctx;
static struct MHD_Daemon *daemon_;
static int http_port;

static struct config *make_config(unsigned long long max_size)
{
    char text[512], err[256];
    struct config *c;
    snprintf(text, sizeof(text),
             "[params]\nmail_domain = example.org\npostfix_host = 127.0.0.1\n"
             "postfix_reinject_port_incoming = %d\nmax_message_size = %llu\n",
             smtp.port, max_size);
    if (config_parse(text, strlen(text), "test", &c, err, sizeof(err)) < 0)
        abort();
    return c;
}

/* Sends raw bytes, returns the status and puts the body in body_r. */
static int post(const char *raw, size_t len, char *body, size_t bodylen)
{
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
    char resp[4096];
    size_t have = 0;
    ssize_t n;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), status = -1;

    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) < 0) {
        close(fd);
        return -1;
    }
    (void)!write(fd, raw, len);
    while (have + 1 < sizeof(resp) && (n = read(fd, resp + have, sizeof(resp) - 1 - have)) > 0)
        have += (size_t)n;
    resp[have] = '\0';
    close(fd);
    if (sscanf(resp, "HTTP/1.1 %d", &status) != 1)
        return -1;
    const char *b = strstr(resp, "\r\n\r\n");
    snprintf(body, bodylen, "%s", b != NULL ? b + 4 : "");
    return status;
}

static const char DATA[] = "From: <a@remote.test>\r\nTo: <b@example.org>\r\n\r\nhello\r\n..dot\r\n";

static int request(const char *headers, char *body, size_t bodylen)
{
    char raw[8192];
    int n = snprintf(raw, sizeof(raw),
                     "POST /mxdeliv HTTP/1.1\r\nHost: mx\r\n%sContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     headers, sizeof(DATA) - 1, DATA);
    return post(raw, (size_t)n, body, bodylen);
}

static void test_delivered_to_every_recipient(void)
{
    char body[512];
    int before = atomic_load(&smtp.sessions);
    CHECK_INT(request("X-Mail-From: a@remote.test\r\nX-Mail-To: b@example.org\r\n"
                      "X-Mail-To: c@example.org\r\n",
                      body, sizeof(body)),
              200);
    CHECK_STR(body, REQUEST_REPLY_OK);
    CHECK_INT(atomic_load(&smtp.sessions), before + 1);
    CHECK(strstr(smtp.got, "MAIL FROM:<a@remote.test>") != NULL);
    CHECK(strstr(smtp.got, "RCPT TO:<b@example.org>") != NULL);
    CHECK(strstr(smtp.got, "RCPT TO:<c@example.org>") != NULL);
    CHECK(strstr(smtp.got, "\r\n..dot\r\n.\r\n") != NULL);
}

static void test_refused_recipient(void)
{
    char body[512];
    smtp.refuse = "c@example.org";
    CHECK_INT(request("X-Mail-From: a@remote.test\r\nX-Mail-To: b@example.org\r\n"
                      "X-Mail-To: c@example.org\r\n",
                      body, sizeof(body)),
              400);
    CHECK(strncmp(body, "550 ", 4) == 0);
    CHECK(strstr(smtp.got, "DATA") == NULL);
    smtp.refuse = NULL;
}

/* Issue 12 item 6, at the handler: no SMTP session for a request whose
 * recipients cannot all be named to Postfix as sent. */
static void test_folded_and_nul_refused_without_smtp(void)
{
    char body[512];
    int before = atomic_load(&smtp.sessions);
    CHECK_INT(request("X-Mail-To: b@example.org\r\n evil@example.org\r\n", body, sizeof(body)),
              400);
    CHECK_STR(body, REQUEST_REPLY_BAD_RCPT);
    static const char nul[] = "POST /mxdeliv HTTP/1.1\r\nHost: mx\r\n"
                              "X-Mail-To: b@example.org\0evil@example.org\r\n"
                              "Content-Length: 7\r\nConnection: close\r\n\r\nx\r\ny\r\n\r\n";
    CHECK_INT(post(nul, sizeof(nul) - 1, body, sizeof(body)), 400);
    CHECK_STR(body, REQUEST_REPLY_BAD_RCPT);
    CHECK_INT(atomic_load(&smtp.sessions), before);
}

static void test_method_and_size(void)
{
    char body[512];
    static const char get[] = "GET /mxdeliv HTTP/1.1\r\nHost: mx\r\nConnection: close\r\n\r\n";
    CHECK_INT(post(get, sizeof(get) - 1, body, sizeof(body)), 405);
    /* A reload to a smaller limit: the next request is refused before its
     * body is read, without an SMTP session. */
    int before = atomic_load(&smtp.sessions);
    config_live_set(ctx.live, make_config(10));
    CHECK_INT(request("X-Mail-To: b@example.org\r\n", body, sizeof(body)), 413);
    CHECK_STR(body, REQUEST_REPLY_TOO_BIG);
    CHECK_INT(atomic_load(&smtp.sessions), before);
    config_live_set(ctx.live, make_config(1000000));
    CHECK_INT(request("X-Mail-To: b@example.org\r\n", body, sizeof(body)), 200);
}

int main(void)
{
    int lfd;

    smtp.lfd = listen_loopback(&smtp.port);
    lfd = listen_loopback(&http_port);
    if (smtp.lfd < 0 || lfd < 0)
        return 1;
    pthread_create(&smtp.t, NULL, smtp_serve, &smtp);
    ctx.live = config_live_new(make_config(1000000));
    snprintf(ctx.helo, sizeof(ctx.helo), "[127.0.0.1]");
    daemon_ = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL_INTERNAL_THREAD, 0,
                               NULL, NULL, http_on_request, &ctx, MHD_OPTION_LISTEN_SOCKET,
                               (MHD_socket)lfd, MHD_OPTION_NOTIFY_COMPLETED, http_on_completed,
                               &ctx, MHD_OPTION_CONNECTION_TIMEOUT, 5u, MHD_OPTION_END);
    if (daemon_ == NULL)
        return 1;
    UNIT_RUN(test_delivered_to_every_recipient);
    UNIT_RUN(test_refused_recipient);
    UNIT_RUN(test_folded_and_nul_refused_without_smtp);
    UNIT_RUN(test_method_and_size);
    MHD_stop_daemon(daemon_);
    shutdown(smtp.lfd, SHUT_RDWR);
    close(smtp.lfd);
    pthread_join(smtp.t, NULL);
    config_live_free(&ctx.live);
    return unit_summary();
}
