/* Tests for pipe-transport/smtpclient.c against a scripted server on a
 * socketpair. */
#include "clock.h"
#include "netio.h"
#include "smtpclient.h"
#include "spool.h"
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct fake {
    int fd;
    const char *greeting;
    const char *ehlo;          /* the whole EHLO reply */
    bool close_in_data;        /* drop the connection after the first data line */
    bool close_after_dot;      /* drop it instead of the final reply */
    const char *final;         /* reply to the end of data */
    char log[8192];            /* commands received, one a line */
    size_t loglen;
    int reads_with_rcpt;       /* reads that carried MAIL and RCPT together */
};

static void say(struct fake *f, const char *s)
{
    size_t n = strlen(s);
    if (write(f->fd, s, n) != (ssize_t)n) {
        /* the client went away */
    }
}

static void *fake_run(void *arg)
{
    struct fake *f = arg;
    char buf[65536];
    size_t len = 0;
    bool in_data = false;
    say(f, f->greeting ? f->greeting : "220 fake ESMTP\r\n");
    for (;;) {
        ssize_t n = read(f->fd, buf + len, sizeof(buf) - 1 - len);
        if (n <= 0)
            break;
        buf[len + (size_t)n] = '\0';
        if (!in_data && strstr(buf + len, "MAIL FROM") && strstr(buf + len, "RCPT TO"))
            f->reads_with_rcpt++;
        len += (size_t)n;
        char *line;
        while ((line = memchr(buf, '\n', len)) != NULL) {
            size_t ll = (size_t)(line - buf) + 1;
            char cmd[1024];
            snprintf(cmd, sizeof(cmd), "%.*s", (int)(ll > 2 ? ll - 2 : 0), buf);
            memmove(buf, buf + ll, len - ll);
            len -= ll;
            if (in_data) {
                if (f->close_in_data)
                    goto out;
                if (strcmp(cmd, ".") == 0) {
                    in_data = false;
                    if (f->close_after_dot)
                        goto out;
                    say(f, f->final ? f->final : "250 2.0.0 queued\r\n");
                }
                continue;
            }
            if (f->loglen + strlen(cmd) + 2 < sizeof(f->log))
                f->loglen += (size_t)snprintf(f->log + f->loglen, sizeof(f->log) - f->loglen,
                                              "%s\n", cmd);
            if (strncmp(cmd, "EHLO", 4) == 0)
                say(f, f->ehlo);
            else if (strncmp(cmd, "MAIL", 4) == 0)
                say(f, "250 2.1.0 ok\r\n");
            else if (strncmp(cmd, "RCPT", 4) == 0)
                say(f, strstr(cmd, "bad") ? "550 5.1.1 unknown user\r\n"
                       : strstr(cmd, "temp") ? "450 4.2.0 try later\r\n"
                                             : "250 2.1.5 ok\r\n");
            else if (strcmp(cmd, "DATA") == 0) {
                say(f, "354 go ahead\r\n");
                in_data = true;
            } else if (strcmp(cmd, "RSET") == 0)
                say(f, "250 ok\r\n");
            else if (strcmp(cmd, "QUIT") == 0) {
                say(f, "221 bye\r\n");
                goto out;
            } else
                say(f, "502 5.5.2 unknown\r\n");
        }
    }
out:
    close(f->fd);
    return NULL;
}

static struct spool msg;
static bool job_utf8; /* the next run's job needs SMTPUTF8 */

static void run(struct fake *f, const char *const *rcpts, size_t n, bool starttls,
                struct smtp_result *res)
{
    int sv[2];
    pthread_t th;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    f->fd = sv[1];
    f->loglen = 0;
    f->log[0] = '\0';
    CHECK(pthread_create(&th, NULL, fake_run, f) == 0);
    struct conn c;
    conn_init(&c, sv[0], 5000, (int64_t)clock_mono_ms() + 10000);
    struct smtp_job job = {.helo = "relay.example", .sender = "a@example.org", .rcpts = rcpts,
                           .nrcpts = n, .msg = &msg, .starttls = starttls,
                           .smtputf8 = job_utf8};
    smtp_deliver(&c, &job, res);
    conn_close(&c);
    pthread_join(th, NULL);
}

#define PIPE_EHLO "250-fake\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 8BITMIME\r\n"

static void test_delivery(void)
{
    struct fake f = {.ehlo = PIPE_EHLO};
    struct smtp_result res;
    const char *rcpts[] = {"b@x.example", "c@x.example"};
    run(&f, rcpts, 2, false, &res);
    CHECK(res.status == SMTP_SENT);
    CHECK_INT(res.accepted, 2);
    CHECK_INT(res.reply.code, 250);
    CHECK_INT(f.reads_with_rcpt, 1); /* MAIL and RCPTs in one write */
    CHECKF(strstr(f.log, "EHLO relay.example\nMAIL FROM:<a@example.org> SIZE=") != NULL, "%s",
           f.log);
    CHECK(strstr(f.log, "RCPT TO:<b@x.example>\nRCPT TO:<c@x.example>\nDATA\nQUIT\n") != NULL);
    /* Without PIPELINING: one command at a time, still all of them. */
    struct fake g = {.ehlo = "250-fake\r\n250 8BITMIME\r\n"};
    run(&g, rcpts, 2, false, &res);
    CHECK(res.status == SMTP_SENT);
    CHECK_INT(g.reads_with_rcpt, 0);
    CHECK(strstr(g.log, " SIZE=") == NULL);
}

static void test_all_or_nothing(void)
{
    struct fake f = {.ehlo = PIPE_EHLO};
    struct smtp_result res;
    const char *mixed[] = {"ok@x.example", "bad@x.example"};
    run(&f, mixed, 2, false, &res);
    CHECK(res.status == SMTP_RCPT_MIXED);
    CHECK_INT(res.accepted, 1);
    CHECK_INT(res.reply.code, 550);
    CHECK(strstr(f.log, "DATA") == NULL);
    CHECK(strstr(f.log, "RSET") != NULL);
    const char *allbad[] = {"bad1@x.example", "bad2@x.example"};
    run(&f, allbad, 2, false, &res);
    CHECK(res.status == SMTP_REJECTED && res.reply.code == 550);
    CHECK_STR(res.stage, "RCPT TO");
    /* A temporary refusal among permanent ones: never bounce. */
    const char *temp[] = {"bad@x.example", "temp@x.example"};
    run(&f, temp, 2, false, &res);
    CHECK(res.status == SMTP_REJECTED && res.reply.code == 450);
    CHECK(strstr(f.log, "DATA") == NULL);
}

static void test_refusals(void)
{
    struct smtp_result res;
    const char *one[] = {"b@x.example"};
    struct fake f = {.ehlo = PIPE_EHLO, .greeting = "554 5.3.2 go away\r\n"};
    run(&f, one, 1, false, &res);
    CHECK(res.status == SMTP_REJECTED && res.reply.code == 554);
    CHECK_STR(res.stage, "initial greeting");
    struct fake g = {.ehlo = PIPE_EHLO};
    run(&g, one, 1, true, &res);
    CHECK(res.status == SMTP_NO_STARTTLS);
    CHECK(strstr(g.log, "MAIL") == NULL);
    /* Offered, then refused with a 5xx: still temporary, never a bounce. */
    struct fake g2 = {.ehlo = "250-fake\r\n250 STARTTLS\r\n"};
    run(&g2, one, 1, true, &res);
    CHECK(res.status == SMTP_NO_STARTTLS && res.reply.code == 502);
    CHECK_STR(res.stage, "STARTTLS");
    CHECK(strstr(g2.log, "STARTTLS") != NULL && strstr(g2.log, "MAIL") == NULL);
    struct fake h = {.ehlo = PIPE_EHLO, .final = "552 5.3.4 too big\r\n"};
    run(&h, one, 1, false, &res);
    CHECK(res.status == SMTP_REJECTED && res.reply.code == 552);
    CHECK_STR(res.stage, "end of DATA");
    struct fake i = {.ehlo = "250-fake\r\n250 SIZE 10\r\n"};
    run(&i, one, 1, false, &res);
    CHECK(res.status == SMTP_TOO_BIG);
    /* SMTPUTF8 needed: sent with the parameter when offered, else refused. */
    const char *utf8[] = {"j\xc3\xb6rg@x.example"};
    job_utf8 = true;
    struct fake j = {.ehlo = "250 fake\r\n", .greeting = "220-multi\r\n220 line greeting\r\n"};
    run(&j, utf8, 1, false, &res);
    CHECK(res.status == SMTP_NEED_UTF8);
    CHECK(strstr(j.log, "MAIL") == NULL);
    struct fake k = {.ehlo = "250-fake\r\n250 SMTPUTF8\r\n"};
    run(&k, utf8, 1, false, &res);
    CHECK(res.status == SMTP_SENT);
    CHECK(strstr(k.log, "MAIL FROM:<a@example.org> SMTPUTF8\n") != NULL);
    job_utf8 = false;
}

static void test_connection_loss(void)
{
    struct smtp_result res;
    const char *one[] = {"b@x.example"};
    struct fake f = {.ehlo = PIPE_EHLO, .close_in_data = true};
    run(&f, one, 1, false, &res);
    CHECK(res.status == SMTP_CONN_ERROR || res.status == SMTP_LOST_AFTER_DATA);
    struct fake g = {.ehlo = PIPE_EHLO, .close_after_dot = true};
    run(&g, one, 1, false, &res);
    CHECK(res.status == SMTP_LOST_AFTER_DATA);
    struct fake h = {.ehlo = "250-fake\r\n25"}; /* cut reply, then EOF at QUIT */
    h.greeting = "garbage\r\n";
    run(&h, one, 1, false, &res);
    CHECK(res.status == SMTP_CONN_ERROR);
    CHECK(strstr(res.err, "malformed") != NULL);
}

/* A reply as the parser gives it. */
static struct smtp_reply reply_of(const char *text)
{
    struct smtp_reply_parser p;
    struct smtp_reply r;
    size_t used;
    const char *why;
    memset(&r, 0, sizeof(r));
    smtp_reply_parser_init(&p, NULL);
    CHECK(smtp_reply_push(&p, text, strlen(text), &used, &r, &why) == SMTP_PARSE_DONE);
    return r;
}

/* What each result means for the delivery: the outcome line pipe(8) gets,
 * or the note for the next host. */
static void test_result_outcome(void)
{
    static const struct {
        enum smtp_status status;
        const char *reply, *stage, *err;
        size_t accepted;
        bool tls_failed;
        bool next;
        const char *want; /* dsn_format() of the outcome, or "dsn text" of the note */
    } cases[] = {
        {SMTP_SENT, "250 2.0.0 Ok: queued as ABC\r\n", "end of DATA", "", 3, false, false,
         "delivered via SMTP to mx.example.org[192.0.2.1]:25 (250 2.0.0 Ok: queued as ABC)\n"},
        {SMTP_CONN_ERROR, NULL, "EHLO", "timed out (while sending EHLO)", 0, false, true,
         "4.4.2 mx.example.org[192.0.2.1]: timed out (while sending EHLO)"},
        {SMTP_CONN_ERROR, NULL, "STARTTLS", "certificate verification failed: x", 0, true, true,
         "4.7.5 TLS failure with mx.example.org[192.0.2.1]: certificate verification failed: x"},
        {SMTP_LOST_AFTER_DATA, NULL, "end of DATA", "connection closed by the server", 3, false,
         false,
         "4.4.2 lost connection with mx.example.org[192.0.2.1] after the end of the data: "
         "connection closed by the server (the message may have been accepted; no other host "
         "is tried)\n"},
        {SMTP_REJECTED, "550 5.1.1 <bob@example.org>: unknown\r\n", "RCPT TO", "", 0, false,
         false,
         "5.1.1 host mx.example.org[192.0.2.1] said: 550 5.1.1 <bob@example.org>: unknown (in "
         "reply to RCPT TO)\n"},
        {SMTP_REJECTED, "421 4.3.2 shutting down\r\n", "MAIL FROM", "", 0, false, false,
         "4.3.2 host mx.example.org[192.0.2.1] said: 421 4.3.2 shutting down (in reply to MAIL "
         "FROM)\n"},
        {SMTP_NO_STARTTLS, "454 4.7.0 TLS not available\r\n", "STARTTLS", "", 0, false, false,
         "4.7.5 STARTTLS refused by mx.example.org[192.0.2.1] (454 4.7.0 TLS not available): "
         "mail for example.org is only sent encrypted\n"},
        {SMTP_NO_STARTTLS, NULL, "EHLO", "", 0, false, false,
         "4.7.5 STARTTLS not offered by mx.example.org[192.0.2.1]: mail for example.org is only "
         "sent encrypted\n"},
        {SMTP_RCPT_MIXED, "550 5.1.1 no such user\r\n", "RCPT TO", "", 2, false, false,
         "4.1.1 1 of 3 recipients refused by mx.example.org[192.0.2.1] (550 5.1.1 no such "
         "user); nothing was sent, all are retried (a recipient limit of 1 gives each its own "
         "status)\n"},
        {SMTP_RCPT_MIXED, "550 no such user\r\n", "RCPT TO", "", 1, false, false,
         "4.0.0 2 of 3 recipients refused by mx.example.org[192.0.2.1] (550 no such user); "
         "nothing was sent, all are retried (a recipient limit of 1 gives each its own "
         "status)\n"},
        {SMTP_TOO_BIG, NULL, "", "message size 20 exceeds the server's limit 10", 0, false, false,
         "5.3.4 message too big for mx.example.org[192.0.2.1]: message size 20 exceeds the "
         "server's limit 10\n"},
        {SMTP_NEED_UTF8, NULL, "", "", 0, false, false,
         "5.6.7 SMTPUTF8 is required, but was not offered by host mx.example.org[192.0.2.1]\n"},
    };
    const struct smtp_peer base = {.host = "mx.example.org", .addr = "192.0.2.1", .port = 25,
                                   .domain = "example.org", .nrcpts = 3};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        static struct smtp_result res;
        struct smtp_peer peer = base;
        struct outcome out;
        struct attempts at = {0};
        char line[1200];
        memset(&res, 0, sizeof(res));
        res.status = cases[i].status;
        if (cases[i].reply != NULL)
            res.reply = reply_of(cases[i].reply);
        snprintf(res.stage, sizeof(res.stage), "%s", cases[i].stage);
        snprintf(res.err, sizeof(res.err), "%s", cases[i].err);
        res.accepted = cases[i].accepted;
        peer.tls_failed = cases[i].tls_failed;
        bool next = smtp_result_outcome(&res, &peer, &out, &at);
        CHECKF(next == cases[i].next, "case %zu: next %d", i, next);
        if (next)
            snprintf(line, sizeof(line), "%s %s", at.dsn, at.text);
        else
            dsn_format(&out, line, sizeof(line));
        CHECKF(strcmp(line, cases[i].want) == 0, "case %zu: %s", i, line);
    }
}

int main(void)
{
    char err[256];
    static const char text[] = "Subject: test\n\n.dot\nbody\n";
    signal(SIGPIPE, SIG_IGN); /* as main.c: a peer that went away is an error, not a signal */
    if (spool_from_bytes(text, sizeof(text) - 1, NULL, &msg, err, sizeof(err)) != SPOOL_OK) {
        fprintf(stderr, "spool: %s\n", err);
        return 1;
    }
    UNIT_RUN(test_delivery);
    UNIT_RUN(test_all_or_nothing);
    UNIT_RUN(test_refusals);
    UNIT_RUN(test_connection_loss);
    UNIT_RUN(test_result_outcome);
    spool_close(&msg);
    return unit_summary();
}
