/* Tests for mxdeliv/reinject.c: the client session against a scripted SMTP
 * server on a socketpair or a loopback TCP socket: pipelined and sequential
 * dialogues, refusals at every step, a server that closes, stays silent,
 * sends an endless line or answers slowly past the session's deadline, large
 * data, many recipients, and an address nobody listens on. (The reply parser
 * it uses, with its limits, is tested in test_smtpreply.c.) */
#include "reinject.h"
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void test_helo_name(void)
{
    char h[64];
    reinject_helo_name("127.0.0.1", h, sizeof(h));
    CHECK_STR(h, "[127.0.0.1]");
    reinject_helo_name("::1", h, sizeof(h));
    CHECK_STR(h, "[IPv6:::1]");
}

/* ------------------------------------------------------------------------ */
/* A scripted SMTP server. */

struct script {
    const char *greeting; /* NULL: say nothing (a silent server) */
    const char *ehlo;     /* the whole EHLO reply */
    const char *mail, *rcpt, *data, *end;
    const char *rcpt_refuse; /* a recipient containing this gets rcpt_refused */
    const char *rcpt_refused;
    bool close_after_greeting;
    int rcpt_delay_ms; /* a pause before each RCPT reply */
    /* Filled by the server: everything it received. */
    char *got;
    size_t got_len, got_cap;
    int fd;
};

static void record(struct script *s, const char *p, size_t n)
{
    if (s->got_len + n + 1 > s->got_cap) {
        s->got_cap = (s->got_len + n + 1) * 2;
        s->got = realloc(s->got, s->got_cap);
    }
    memcpy(s->got + s->got_len, p, n);
    s->got_len += n;
    s->got[s->got_len] = '\0';
}

static void say(int fd, const char *text)
{
    size_t n = strlen(text), off = 0;
    while (off < n) {
        ssize_t w = send(fd, text + off, n - off, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

/* Reads one line (LF included); 0 at EOF. */
static size_t read_line(int fd, char *line, size_t max)
{
    size_t n = 0;
    while (n + 1 < max) {
        ssize_t r = read(fd, line + n, 1);
        if (r <= 0)
            break;
        n++;
        if (line[n - 1] == '\n')
            break;
    }
    line[n] = '\0';
    return n;
}

static void *serve(void *arg)
{
    struct script *s = arg;
    char line[4096];
    bool in_data = false;
    size_t n;

    if (s->greeting == NULL) {
        /* Silent: wait for the client to give up. */
        while (read(s->fd, line, sizeof(line)) > 0)
            ;
        close(s->fd);
        return NULL;
    }
    say(s->fd, s->greeting);
    if (s->close_after_greeting) {
        close(s->fd);
        return NULL;
    }
    while ((n = read_line(s->fd, line, sizeof(line))) > 0) {
        record(s, line, n);
        if (in_data) {
            if (strcmp(line, ".\r\n") == 0) {
                in_data = false;
                say(s->fd, s->end);
            }
            continue;
        }
        if (strncmp(line, "EHLO", 4) == 0)
            say(s->fd, s->ehlo);
        else if (strncmp(line, "MAIL", 4) == 0)
            say(s->fd, s->mail);
        else if (strncmp(line, "RCPT", 4) == 0 && s->rcpt_delay_ms > 0 &&
                 usleep((useconds_t)s->rcpt_delay_ms * 1000) != 0)
            break;
        else if (strncmp(line, "RCPT", 4) == 0)
            say(s->fd, s->rcpt_refuse != NULL && strstr(line, s->rcpt_refuse) != NULL
                           ? s->rcpt_refused
                           : s->rcpt);
        else if (strncmp(line, "DATA", 4) == 0) {
            say(s->fd, s->data);
            in_data = strncmp(s->data, "354", 3) == 0;
        } else if (strncmp(line, "QUIT", 4) == 0) {
            say(s->fd, "221 2.0.0 Bye\r\n");
            break;
        } else
            say(s->fd, "502 5.5.2 Error: command not recognized\r\n");
    }
    close(s->fd);
    return NULL;
}

static struct script postfix(void)
{
    return (struct script){
        .greeting = "220 mx.example.org ESMTP Postfix\r\n",
        .ehlo = "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
                "250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250 CHUNKING\r\n",
        .mail = "250 2.1.0 Ok\r\n",
        .rcpt = "250 2.1.5 Ok\r\n",
        .data = "354 End data with <CR><LF>.<CR><LF>\r\n",
        .end = "250 2.0.0 Ok: queued as 4XYZ\r\n",
    };
}

static const struct reinject_config client_cfg = {
    .host = "127.0.0.1", .port = 25, .helo = "[127.0.0.1]", .timeout_ms = 5000};

/* Starts the server on one end of a socketpair; returns the other end. */
static int start(struct script *s, pthread_t *t)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
        return -1;
    s->fd = sv[1];
    pthread_create(t, NULL, serve, s);
    return sv[0];
}

/* Frees what the server recorded (its thread was joined). */
static void stop(struct script *s, pthread_t t)
{
    (void)t;
    free(s->got);
    s->got = NULL;
}

/* One whole transaction; returns the result of the step that ended it. */
static int transact(struct script *s, const struct reinject_config *cfg, const char *sender,
                    char *const *rcpts, size_t n, const char *data, struct reinject_reply *reply)
{
    pthread_t t;
    struct reinject *r = NULL;
    int fd = start(s, &t), rc;

    if (fd < 0)
        return -2;
    rc = reinject_open_fd(fd, cfg, &r, reply);
    if (rc == 0)
        rc = reinject_envelope(r, sender, rcpts, n, reply);
    if (rc == 0)
        rc = reinject_write(r, data, strlen(data), reply);
    if (rc == 0)
        rc = reinject_finish(r, reply);
    reinject_close(&r);
    CHECK(r == NULL);
    pthread_join(t, NULL);
    return rc;
}

/* The limits of a kept session, at their edges. */
static void test_reusable(void)
{
    const int64_t t = 1000000;
    CHECK(reinject_reusable(t, t, 1, t));
    CHECK(reinject_reusable(t, t, REINJECT_KEEP_MESSAGES - 1, t));
    CHECK(!reinject_reusable(t, t, REINJECT_KEEP_MESSAGES, t));
    CHECK(reinject_reusable(t, t, 1, t + REINJECT_KEEP_IDLE_MS - 1));
    CHECK(!reinject_reusable(t, t, 1, t + REINJECT_KEEP_IDLE_MS));
    /* Busy all the time, yet too old. */
    CHECK(reinject_reusable(t, t + REINJECT_KEEP_AGE_MS - 1, 5, t + REINJECT_KEEP_AGE_MS - 1));
    CHECK(!reinject_reusable(t, t + REINJECT_KEEP_AGE_MS, 5, t + REINJECT_KEEP_AGE_MS));
}

/* One message on r: envelope, data, final dot. */
static int one_message(struct reinject *r, char *const *rcpts, struct reinject_reply *reply)
{
    static const char data[] = "Subject: x\r\n\r\nbody\r\n";
    if (reinject_envelope(r, "a@example.org", rcpts, 1, reply) < 0 ||
        reinject_write(r, data, strlen(data), reply) < 0)
        return -1;
    return reinject_finish(r, reply);
}

/* Kept sessions: two messages on one connection through the pool (QUIT
 * only when the pool closes it); a session for another host or port, a
 * broken one and one the server closed are not used again. */
static void test_pool(void)
{
    struct script s = postfix();
    struct reinject_reply reply;
    char *rcpts[] = {"b@example.org"};
    pthread_t t;
    struct reinject *r = NULL;
    struct reinject_pool *p = reinject_pool_new();

    CHECK(reinject_pool_take(p, &client_cfg) == NULL);
    CHECK_INT(reinject_open_fd(start(&s, &t), &client_cfg, &r, &reply), 0);
    CHECK_INT(one_message(r, rcpts, &reply), 0);
    reinject_pool_put(p, &r);
    CHECK(r == NULL);
    struct reinject_config other = client_cfg;
    other.port = 26;
    CHECK(reinject_pool_take(p, &other) == NULL); /* another port: closed, not used */
    /* The pool dropped it (closed without QUIT): the server saw one message. */
    pthread_join(t, NULL);
    CHECK(strstr(s.got, "QUIT") == NULL);
    CHECK(strstr(s.got, ".\r\n") != NULL);
    stop(&s, t);

    s = postfix();
    CHECK_INT(reinject_open_fd(start(&s, &t), &client_cfg, &r, &reply), 0);
    CHECK_INT(one_message(r, rcpts, &reply), 0);
    reinject_pool_put(p, &r);
    r = reinject_pool_take(p, &client_cfg);
    CHECK(r != NULL);
    if (r != NULL)
        CHECK_INT(one_message(r, rcpts, &reply), 0);
    reinject_pool_put(p, &r);
    reinject_pool_free(&p); /* closes the kept session: QUIT */
    CHECK(p == NULL);
    pthread_join(t, NULL);
    const char *first = strstr(s.got, "MAIL FROM");
    CHECK(first != NULL && strstr(first + 1, "MAIL FROM") != NULL);
    const char *ehlo = strstr(s.got, "EHLO"); /* one connection, one EHLO */
    CHECK(ehlo != NULL && strstr(ehlo + 1, "EHLO") == NULL);
    CHECK(strstr(s.got, "QUIT\r\n") != NULL);
    stop(&s, t);

    /* A refused recipient breaks the session: it is not kept. */
    p = reinject_pool_new();
    s = postfix();
    s.rcpt_refuse = "bad";
    s.rcpt_refused = "550 5.1.1 <bad@example.org>: Recipient address rejected\r\n";
    char *bad[] = {"bad@example.org"};
    CHECK_INT(reinject_open_fd(start(&s, &t), &client_cfg, &r, &reply), 0);
    CHECK_INT(one_message(r, bad, &reply), -1);
    CHECK_INT(reply.code, 550);
    reinject_pool_put(p, &r);
    CHECK(reinject_pool_take(p, &client_cfg) == NULL);
    pthread_join(t, NULL);
    stop(&s, t);

    /* The server closed a kept session (its idle timeout): not taken. */
    s = postfix();
    int fd = start(&s, &t);
    CHECK_INT(reinject_open_fd(fd, &client_cfg, &r, &reply), 0);
    CHECK_INT(one_message(r, rcpts, &reply), 0);
    reinject_pool_put(p, &r);
    shutdown(s.fd, SHUT_RDWR); /* the server ends the connection */
    pthread_join(t, NULL);
    CHECK(reinject_pool_take(p, &client_cfg) == NULL);
    stop(&s, t);
    reinject_pool_free(&p);
}

static void test_session_pipelined(void)
{
    struct script s = postfix();
    struct reinject_reply reply;
    char *rcpts[] = {"two@example.org", "one@example.org"};

    CHECK_INT(transact(&s, &client_cfg, "alice@remote.test", rcpts, 2,
                       "Subject: x\r\n\r\n..dot\r\n", &reply),
              0);
    CHECK_INT(reply.code, 250);
    CHECK_STR(reply.text, "250 2.0.0 Ok: queued as 4XYZ");
    CHECK_STR(s.got, "EHLO [127.0.0.1]\r\nMAIL FROM:<alice@remote.test>\r\n"
                     "RCPT TO:<two@example.org>\r\nRCPT TO:<one@example.org>\r\nDATA\r\n"
                     "Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n");
    stop(&s, 0);
}

static void test_session_sequential(void)
{
    struct script s = postfix();
    struct reinject_reply reply;
    char *rcpts[] = {"two@example.org"};

    s.ehlo = "250-mx.example.org\r\n250 8BITMIME\r\n";
    CHECK_INT(transact(&s, &client_cfg, "", rcpts, 1, "\r\n", &reply), 0);
    CHECK_STR(s.got, "EHLO [127.0.0.1]\r\nMAIL FROM:<>\r\nRCPT TO:<two@example.org>\r\n"
                     "DATA\r\n\r\n.\r\nQUIT\r\n");
    stop(&s, 0);
}

static void test_session_refusals(void)
{
    struct reinject_reply reply;
    char *rcpts[] = {"two@example.org", "nobody@example.net", "one@example.org"};
    static const char *ehlos[] = {
        "250-mx\r\n250 PIPELINING\r\n", /* pipelined */
        "250 mx\r\n",                   /* sequential */
    };

    for (int e = 0; e < 2; e++) {
        struct script s = postfix();
        s.ehlo = ehlos[e];
        s.rcpt_refuse = "nobody@";
        s.rcpt_refused = "554 5.7.1 <nobody@example.net>: Relay access denied\r\n";
        CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 3, "x\r\n", &reply), -1);
        CHECK_INT(reply.code, 554);
        CHECK_STR(reply.text, "554 5.7.1 <nobody@example.net>: Relay access denied");
        CHECK(strstr(reply.detail, "RCPT") != NULL);
        /* Never a final dot after a refusal. */
        CHECK(strstr(s.got, "\r\n.\r\n") == NULL);
        stop(&s, 0);

        s = postfix();
        s.ehlo = ehlos[e];
        s.mail = "451 4.3.0 Try later\r\n";
        CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
        CHECK_STR(reply.text, "451 4.3.0 Try later");
        CHECK(strstr(s.got, "\r\n.\r\n") == NULL);
        stop(&s, 0);

        s = postfix();
        s.ehlo = ehlos[e];
        s.data = "554 5.5.1 Error: no valid recipients\r\n";
        CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
        CHECK_STR(reply.text, "554 5.5.1 Error: no valid recipients");
        stop(&s, 0);

        s = postfix();
        s.ehlo = ehlos[e];
        s.end = "523 Encryption Needed: Invalid Unencrypted Mail\r\n";
        CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
        CHECK_INT(reply.code, 523);
        CHECK_STR(reply.text, "523 Encryption Needed: Invalid Unencrypted Mail");
        stop(&s, 0);

        s = postfix();
        s.ehlo = ehlos[e];
        s.end = "451-4.7.1 Service unavailable\r\n451 4.7.1 - try again later\r\n";
        CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
        CHECK_STR(reply.text, "451 4.7.1 - try again later");
        stop(&s, 0);
    }

    struct script s = postfix();
    s.greeting = "554 5.7.1 No service\r\n";
    CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
    CHECK_STR(reply.text, "554 5.7.1 No service");
    stop(&s, 0);

    s = postfix();
    s.ehlo = "502 5.5.2 no EHLO here\r\n";
    CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
    CHECK_STR(reply.text, "502 5.5.2 no EHLO here");
    stop(&s, 0);

    /* A success code out of place is never passed on as one: a 250 to DATA
     * (no data was sent, nothing was queued) or a 220 to EHLO. */
    static const struct {
        const char *greeting, *ehlo, *data, *what;
    } odd[] = {
        {NULL, NULL, "250 2.0.0 Ok\r\n", "DATA"},
        {NULL, "220 mx\r\n", NULL, "EHLO"},
        {"354 go ahead\r\n", NULL, NULL, "greeting"},
    };
    for (size_t i = 0; i < sizeof(odd) / sizeof(odd[0]); i++) {
        s = postfix();
        if (odd[i].greeting != NULL)
            s.greeting = odd[i].greeting;
        if (odd[i].ehlo != NULL)
            s.ehlo = odd[i].ehlo;
        if (odd[i].data != NULL)
            s.data = odd[i].data;
        CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
        CHECKF(reply.code == 451 && strcmp(reply.text, "451 I/O error") == 0, "%s: %d %s",
               odd[i].what, reply.code, reply.text);
        CHECKF(strstr(reply.detail, "unexpected reply") != NULL, "%s: %s", odd[i].what,
               reply.detail);
        CHECK(s.got == NULL || strstr(s.got, "\r\n.\r\n") == NULL);
        stop(&s, 0);
    }

    /* A line longer than REINJECT_LINE_MAX is malformed, not waited for. */
    static char endless[REINJECT_LINE_MAX + 64];
    memcpy(endless, "220 ", 4);
    memset(endless + 4, 'x', REINJECT_LINE_MAX);
    s = postfix();
    s.greeting = endless;
    CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
    CHECK_STR(reply.text, "451 I/O error");
    CHECKF(strstr(reply.detail, "malformed") != NULL, "%s", reply.detail);
    stop(&s, 0);

    s = postfix();
    s.ehlo = "250-mx\r\n999 broken\r\n";
    CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
    CHECK_STR(reply.text, "451 I/O error");
    CHECK(strstr(reply.detail, "malformed") != NULL);
    stop(&s, 0);
}

static void test_session_io_errors(void)
{
    struct reinject_reply reply;
    char *rcpts[] = {"two@example.org"};
    struct reinject_config quick = client_cfg;

    struct script s = postfix();
    s.close_after_greeting = true;
    CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 1, "x\r\n", &reply), -1);
    CHECK_INT(reply.code, 451);
    CHECK_STR(reply.text, "451 I/O error");
    stop(&s, 0);

    /* A server that never answers: the read times out. */
    quick.timeout_ms = 200;
    s = postfix();
    s.greeting = NULL;
    CHECK_INT(transact(&s, &quick, "a@b", rcpts, 1, "x\r\n", &reply), -1);
    CHECK_STR(reply.text, "451 I/O error");
    CHECKF(strstr(reply.detail, "timed out") != NULL, "%s", reply.detail);
    stop(&s, 0);

    /* Addresses that could change the command are refused, nothing sent. */
    char *bad[] = {"a@b>", "x\r\nRSET"};
    for (int i = 0; i < 2; i++) {
        pthread_t t;
        struct reinject *r = NULL;
        s = postfix();
        int fd = start(&s, &t);
        CHECK_INT(reinject_open_fd(fd, &client_cfg, &r, &reply), 0);
        CHECK_INT(reinject_envelope(r, "a@b", &bad[i], 1, &reply), -1);
        CHECK_INT(reply.code, 501);
        CHECK_INT(reinject_write(r, "x\r\n", 3, &reply), -1);
        reinject_close(&r);
        pthread_join(t, NULL);
        CHECK(strstr(s.got, "RCPT") == NULL && strstr(s.got, "MAIL") == NULL);
        stop(&s, 0);
    }

    /* Data that does not end in CRLF never gets a final dot. */
    {
        pthread_t t;
        struct reinject *r = NULL;
        s = postfix();
        int fd = start(&s, &t);
        CHECK_INT(reinject_open_fd(fd, &client_cfg, &r, &reply), 0);
        CHECK_INT(reinject_envelope(r, "a@b", rcpts, 1, &reply), 0);
        CHECK_INT(reinject_write(r, "x\r\n.", 4, &reply), 0);
        CHECK_INT(reinject_finish(r, &reply), -1);
        CHECK_INT(reply.code, 451);
        CHECK_STR(reply.detail, "data does not end in CRLF");
        reinject_close(&r);
        pthread_join(t, NULL);
        CHECK(strstr(s.got, "\r\n.\r\n") == NULL);
        stop(&s, 0);
    }
}

/* Each reply in time, the session too long: the session's deadline ends it
 * with 451, never a final dot. */
static void test_session_deadline(void)
{
    struct reinject_reply reply;
    char *rcpts[10];
    struct reinject_config slow = client_cfg;
    struct timespec t0, t1;

    for (int i = 0; i < 10; i++)
        rcpts[i] = "two@example.org";
    slow.session_ms = 400;
    struct script s = postfix();
    s.ehlo = "250-mx.example.org\r\n250 8BITMIME\r\n"; /* one RCPT at a time */
    s.rcpt_delay_ms = 100;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    CHECK_INT(transact(&s, &slow, "a@b", rcpts, 10, "x\r\n", &reply), -1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    CHECK_STR(reply.text, "451 I/O error");
    CHECKF(strstr(reply.detail, "RCPT: timed out") != NULL, "%s", reply.detail);
    CHECKF(ms >= 380 && ms < 1000, "took %ld ms", ms);
    CHECK(s.got != NULL && strstr(s.got, "DATA") == NULL);
    stop(&s, 0);

    /* The default: no deadline a normal session meets. */
    s = postfix();
    s.rcpt_delay_ms = 100;
    CHECK_INT(transact(&s, &client_cfg, "a@b", rcpts, 3, "x\r\n", &reply), 0);
    CHECK_STR(reply.text, "250 2.0.0 Ok: queued as 4XYZ");
    stop(&s, 0);
}

static void test_session_large(void)
{
    struct script s = postfix();
    struct reinject_reply reply;
    enum { NRCPT = 250, LINES = 20000 };
    char **rcpts = calloc(NRCPT, sizeof(*rcpts));
    char *data = malloc(LINES * 40 + 1), *want;
    size_t n = 0;
    pthread_t t;
    struct reinject *r = NULL;

    for (int i = 0; i < NRCPT; i++) {
        rcpts[i] = malloc(32);
        snprintf(rcpts[i], 32, "user%d@example.org", i);
    }
    for (int i = 0; i < LINES; i++)
        n += (size_t)sprintf(data + n, "%s line %06d of the body\r\n", i % 7 ? "" : ".", i);

    /* Data written in odd pieces crosses the 64 KiB buffer many times. */
    int fd = start(&s, &t);
    CHECK_INT(reinject_open_fd(fd, &client_cfg, &r, &reply), 0);
    CHECK_INT(reinject_envelope(r, "a@b", rcpts, NRCPT, &reply), 0);
    for (size_t off = 0; off < n;) {
        size_t k = n - off < 1237 ? n - off : 1237;
        CHECK_INT(reinject_write(r, data + off, k, &reply), 0);
        off += k;
    }
    CHECK_INT(reinject_finish(r, &reply), 0);
    reinject_close(&r);
    pthread_join(t, NULL);

    want = strstr(s.got, "DATA\r\n");
    CHECK(want != NULL);
    if (want != NULL) {
        want += 6;
        CHECK(strncmp(want, data, n) == 0);
        CHECK_STR(want + n, ".\r\nQUIT\r\n");
    }
    size_t count = 0;
    for (const char *p = s.got; (p = strstr(p, "RCPT TO:<")) != NULL; p++)
        count++;
    CHECK_INT(count, NRCPT);
    stop(&s, 0);
    for (int i = 0; i < NRCPT; i++)
        free(rcpts[i]);
    free(rcpts);
    free(data);
}

/* Over TCP: reinject_open with a listening server, and with a port nobody
 * listens on. */
struct acceptor {
    int lfd;
    struct script *s;
};

static void *accept_and_serve(void *arg)
{
    struct acceptor *a = arg;
    a->s->fd = accept(a->lfd, NULL, NULL);
    if (a->s->fd >= 0)
        serve(a->s);
    return NULL;
}

static void test_open_tcp(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct reinject_config cfg = client_cfg;
    struct reinject_reply reply;
    struct reinject *r = NULL;
    struct script s = postfix();
    struct acceptor a = {lfd, &s};
    pthread_t t;
    char *rcpts[] = {"two@example.org"};
    char want[200];

    CHECK(lfd >= 0);
    CHECK_INT(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    CHECK_INT(listen(lfd, 1), 0);
    CHECK_INT(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
    cfg.port = ntohs(sa.sin_port);

    pthread_create(&t, NULL, accept_and_serve, &a);
    CHECK_INT(reinject_open(&cfg, &r, &reply), 0);
    if (r != NULL) {
        CHECK_INT(reinject_envelope(r, "a@b", rcpts, 1, &reply), 0);
        CHECK_INT(reinject_write(r, "x\r\n", 3, &reply), 0);
        CHECK_INT(reinject_finish(r, &reply), 0);
        CHECK_STR(reply.text, "250 2.0.0 Ok: queued as 4XYZ");
    }
    reinject_close(&r);
    pthread_join(t, NULL);
    CHECK(s.got != NULL && strstr(s.got, "MAIL FROM:<a@b>\r\n") != NULL);
    stop(&s, 0);
    close(lfd);

    /* Nobody listens there now. */
    CHECK_INT(reinject_open(&cfg, &r, &reply), -1);
    CHECK(r == NULL);
    CHECK_INT(reply.code, 450);
    snprintf(want, sizeof(want),
             "450 Failed to connect to any of the following addresses: [\"127.0.0.1:%u\"]",
             (unsigned)cfg.port);
    CHECK_STR(reply.text, want);

    /* A name that does not resolve (no DNS query: .invalid is reserved,
     * and without network the lookup fails all the same). */
    cfg.host = "no-such-host.invalid";
    CHECK_INT(reinject_open(&cfg, &r, &reply), -1);
    CHECK_INT(reply.code, 451);
    CHECK_STR(reply.text, "451 Resolver error");
}

int main(void)
{
    UNIT_RUN(test_helo_name);
    UNIT_RUN(test_session_pipelined);
    UNIT_RUN(test_session_sequential);
    UNIT_RUN(test_session_refusals);
    UNIT_RUN(test_session_io_errors);
    UNIT_RUN(test_session_deadline);
    UNIT_RUN(test_session_large);
    UNIT_RUN(test_open_tcp);
    UNIT_RUN(test_reusable);
    UNIT_RUN(test_pool);
    return unit_summary();
}
