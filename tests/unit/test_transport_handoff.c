/* Tests for pipe-transport/handoff.c and handoffio.c: the request and reply
 * between filtermail-transport-client and filtermail-deliverd, formatted,
 * parsed (whole and a byte at a time), and sent over a real socket pair with
 * a real pipe descriptor attached. */
#include "handoff.h"
#include "handoffio.h"
#include "unit.h"

#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"

static enum handoff_parse parse_text(const char *text, struct handoff_request *req, char *copy,
                                     size_t copylen)
{
    char err[200];
    size_t n = strlen(text);
    if (n >= copylen)
        return HANDOFF_BAD;
    memcpy(copy, text, n + 1);
    return handoff_request_parse(copy, n, req, err, sizeof(err));
}

static void test_request_table(void)
{
    static const struct {
        const char *name, *text;
        enum handoff_parse want;
        const char *queue_id, *sender;
        size_t nrcpts;
    } cases[] = {
        {"one", "filtermail-handoff 1\nqueue 4AB\nsender a@b\nrcpt x@y\n.\n", HANDOFF_OK, "4AB",
         "a@b", 1},
        {"null sender, two", "filtermail-handoff 1\nqueue Q\nsender \nrcpt x@y\nrcpt \"a b\"@y\n.\n",
         HANDOFF_OK, "Q", "", 2},
        {"queue id with a space", "filtermail-handoff 1\nqueue a b\nsender s\nrcpt r\n.\n",
         HANDOFF_OK, "-", "s", 1},
        {"empty queue id", "filtermail-handoff 1\nqueue \nsender s\nrcpt r\n.\n", HANDOFF_OK, "-",
         "s", 1},
        {"not yet ended", "filtermail-handoff 1\nqueue Q\nsender s\nrcpt r\n", HANDOFF_INCOMPLETE,
         NULL, NULL, 0},
        {"only the start", "filterm", HANDOFF_INCOMPLETE, NULL, NULL, 0},
        {"wrong magic", "filtermail-handoff 2\nqueue Q\nsender s\nrcpt r\n.\n", HANDOFF_BAD, NULL,
         NULL, 0},
        {"no recipient", "filtermail-handoff 1\nqueue Q\nsender s\n.\n", HANDOFF_BAD, NULL, NULL,
         0},
        {"order", "filtermail-handoff 1\nsender s\nqueue Q\nrcpt r\n.\n", HANDOFF_BAD, NULL, NULL,
         0},
        {"unknown line", "filtermail-handoff 1\nqueue Q\nsender s\nrcpt r\nx y\n.\n", HANDOFF_BAD,
         NULL, NULL, 0},
        {"CR in a value", "filtermail-handoff 1\nqueue Q\nsender s\r\nrcpt r\n.\n", HANDOFF_BAD,
         NULL, NULL, 0},
        {"after the end", "filtermail-handoff 1\nqueue Q\nsender s\nrcpt r\n.\nrcpt z\n",
         HANDOFF_BAD, NULL, NULL, 0},
        {"key without a space", "filtermail-handoff 1\nqueue Q\nsender s\nrcptr\n.\n", HANDOFF_BAD,
         NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct handoff_request *req = malloc(sizeof(*req));
        char copy[512];
        enum handoff_parse got = parse_text(cases[i].text, req, copy, sizeof(copy));
        CHECKF(got == cases[i].want, "%s: got %d", cases[i].name, (int)got);
        if (got == HANDOFF_OK && cases[i].want == HANDOFF_OK) {
            CHECK_STR(req->queue_id, cases[i].queue_id);
            CHECK_STR(req->sender, cases[i].sender);
            CHECK_INT(req->nrcpts, cases[i].nrcpts);
        }
        /* Fed a byte at a time: incomplete until the whole text is there. */
        size_t n = strlen(cases[i].text);
        for (size_t k = 1; k < n && cases[i].want == HANDOFF_OK; k++) {
            char err[200];
            memcpy(copy, cases[i].text, k);
            enum handoff_parse part = handoff_request_parse(copy, k, req, err, sizeof(err));
            CHECKF(part == HANDOFF_INCOMPLETE, "%s: %zu bytes give %d", cases[i].name, k,
                   (int)part);
        }
        free(req);
    }
}

static void test_request_round_trip_and_limits(void)
{
    const char *rcpts[] = {"bob@example.org", "\"x y\"@example.org"};
    struct handoff_request *req = malloc(sizeof(*req));
    struct buf b;
    char err[200];
    buf_init(&b, HANDOFF_REQUEST_MAX);
    CHECK_INT(handoff_request_format("4XYZ1", "", rcpts, 2, &b), 0);
    CHECK_INT(handoff_request_parse(b.data, b.len, req, err, sizeof(err)), HANDOFF_OK);
    CHECK_STR(req->queue_id, "4XYZ1");
    CHECK_STR(req->sender, "");
    CHECK_INT(req->nrcpts, 2);
    CHECK_STR(req->rcpts[1], "\"x y\"@example.org");
    buf_free(&b);

    const char *bad[] = {"a@b\nrcpt evil@x"};
    CHECK_INT(handoff_request_format("Q", "s", bad, 1, &b), -1);
    CHECK_INT(handoff_request_format("Q", "s\r", rcpts, 1, &b), -1);
    CHECK_INT(handoff_request_format("Q", "s", rcpts, 0, &b), -1);

    /* HANDOFF_MAX_RCPTS of the longest addresses fit; one more is refused. */
    char *longest = malloc(ENVELOPE_ADDRESS_MAX + 1);
    memset(longest, 'a', ENVELOPE_ADDRESS_MAX);
    longest[ENVELOPE_ADDRESS_MAX] = '\0';
    const char **many = malloc((HANDOFF_MAX_RCPTS + 1) * sizeof(*many));
    for (size_t i = 0; i <= HANDOFF_MAX_RCPTS; i++)
        many[i] = longest;
    CHECK_INT(handoff_request_format("Q", longest, many, HANDOFF_MAX_RCPTS, &b), 0);
    CHECK_INT(handoff_request_parse(b.data, b.len, req, err, sizeof(err)), HANDOFF_OK);
    CHECK_INT(req->nrcpts, HANDOFF_MAX_RCPTS);
    buf_free(&b);
    CHECK_INT(handoff_request_format("Q", "s", many, HANDOFF_MAX_RCPTS + 1, &b), -1);
    buf_free(&b);

    /* A value one byte longer than format() writes is refused by parse()
     * too, so what parses always formats back (found by the fuzz target). */
    char over[ENVELOPE_ADDRESS_MAX + 2];
    memset(over, 'a', ENVELOPE_ADDRESS_MAX + 1);
    over[ENVELOPE_ADDRESS_MAX + 1] = '\0';
    for (size_t i = 0; i < 2; i++) {
        char text[ENVELOPE_ADDRESS_MAX + 100];
        int n = snprintf(text, sizeof(text),
                         "filtermail-handoff 1\nqueue Q\nsender %s\nrcpt %s\n.\n",
                         i == 0 ? over : "s", i == 0 ? "r" : over);
        err[0] = '\0';
        CHECK_INT(handoff_request_parse(text, (size_t)n, req, err, sizeof(err)), HANDOFF_BAD);
        CHECK(strstr(err, "longer than") != NULL);
    }
    free(many);
    free(longest);
    free(req);
}

static void test_reply(void)
{
    static const struct {
        const char *line;
        int rc;
        enum outcome_class cls;
        const char *dsn, *text;
    } cases[] = {
        {"2.0.0 delivered via HTTPS to mx[192.0.2.1]:443 (200)\n", 0, OUTCOME_DELIVERED, "2.0.0",
         "delivered via HTTPS to mx[192.0.2.1]:443 (200)"},
        {"4.4.1 connect to mx: refused", 0, OUTCOME_TEMPFAIL, "4.4.1", "connect to mx: refused"},
        {"5.1.1 host said: 550 unknown\n", 0, OUTCOME_BOUNCE, "5.1.1", "host said: 550 unknown"},
        {"5.1.1 bad \x01 byte\n", 0, OUTCOME_BOUNCE, "5.1.1", "bad ? byte"},
        {"3.0.0 odd\n", -1, 0, NULL, NULL},
        {"4.4.1\n", -1, 0, NULL, NULL},
        {"delivered\n", -1, 0, NULL, NULL},
        {"4.4.1 two\nlines\n", -1, 0, NULL, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct outcome o;
        int rc = handoff_reply_parse(cases[i].line, strlen(cases[i].line), &o);
        CHECKF(rc == cases[i].rc, "%s: rc %d", cases[i].line, rc);
        if (rc == 0 && cases[i].rc == 0) {
            CHECK_INT(o.cls, cases[i].cls);
            CHECK_STR(o.dsn, cases[i].dsn);
            CHECK_STR(o.text, cases[i].text);
            char line[HANDOFF_REPLY_MAX];
            struct outcome back;
            size_t n = handoff_reply_format(&o, line, sizeof(line));
            CHECK_INT(handoff_reply_parse(line, n, &back), 0);
            CHECK_STR(back.text, o.text);
        }
    }
}

/* The whole exchange over a socket pair: the request arrives with the pipe
 * descriptor, the message is read from it, the reply comes back. */
static void test_over_a_socket(void)
{
    int sp[2], p[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
    CHECK(pipe(p) == 0);
    CHECK(write(p[1], "Subject: x\r\n\r\nhi\r\n", 18) == 18);
    close(p[1]);
    const char *rcpts[] = {"bob@example.org"};
    struct buf b, rb;
    char err[200];
    int64_t until = (int64_t)clock_mono_ms() + 5000;
    buf_init(&b, HANDOFF_REQUEST_MAX);
    buf_init(&rb, HANDOFF_REQUEST_MAX);
    CHECK_INT(handoff_request_format("Q1", "a@example.org", rcpts, 1, &b), 0);
    CHECK_INT(handoff_send(sp[0], &b, p[0], until, err, sizeof(err)), 0);
    close(p[0]);

    struct handoff_request *req = malloc(sizeof(*req));
    int fd = -1;
    CHECK_INT(handoff_recv_request(sp[1], &rb, &fd, until, req, err, sizeof(err)), 0);
    CHECK_STR(req->rcpts[0], "bob@example.org");
    CHECK(fd >= 0);
    char msg[64] = "";
    CHECK_INT(read(fd, msg, sizeof(msg)), 18);
    close(fd);

    struct outcome o, got;
    outcome_set(&o, OUTCOME_BOUNCE, "5.1.1", "host said: 550 no");
    CHECK_INT(handoff_send_reply(sp[1], &o, until), 0);
    CHECK_INT(handoff_recv_reply(sp[0], until, &got, err, sizeof(err)), 0);
    CHECK_INT(got.cls, OUTCOME_BOUNCE);
    CHECK_STR(got.text, "host said: 550 no");

    /* The daemon gone without a reply: an error, never an outcome. */
    close(sp[1]);
    CHECK_INT(handoff_recv_reply(sp[0], until, &got, err, sizeof(err)), -1);
    CHECK(strstr(err, "without a result") != NULL);
    close(sp[0]);

    /* A request that never ends runs into the wait's bound. */
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
    CHECK(write(sp[0], "filtermail-handoff 1\n", 21) == 21);
    buf_reset(&rb);
    CHECK_INT(handoff_recv_request(sp[1], &rb, &fd, (int64_t)clock_mono_ms() + 100, req, err,
                                   sizeof(err)),
              -1);
    CHECK(strstr(err, "in time") != NULL);
    CHECK_INT(fd, -1);
    close(sp[0]);
    close(sp[1]);
    free(req);
    buf_free(&b);
    buf_free(&rb);
}

int main(void)
{
    UNIT_RUN(test_request_table);
    UNIT_RUN(test_request_round_trip_and_limits);
    UNIT_RUN(test_reply);
    UNIT_RUN(test_over_a_socket);
    return unit_summary();
}
