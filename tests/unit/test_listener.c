/* Tests for common/listener.c: every accepted socket address form, opening a
 * unix socket over a stale one but never over a live one, its mode, and
 * removing only our own socket file at close. */
#include "listener.h"
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void test_parse(void)
{
    static const struct {
        const char *spec;
        int ok;
        const char *canonical; /* listener_format() */
        int family;
    } cases[] = {
        /* The syntax. */
        {"unix:/var/spool/postfix/filtermail/policy.sock", 1,
         "unix:/var/spool/postfix/filtermail/policy.sock", AF_UNSPEC},
        {"inet:127.0.0.1:10040", 1, "inet:127.0.0.1:10040", AF_UNSPEC},
        {"inet:localhost:1", 1, "inet:localhost:1", AF_UNSPEC},
        {"inet:[::1]:65535", 1, "inet:[::1]:65535", AF_UNSPEC},
        /* Earlier documented forms. */
        {"/run/policy.sock", 1, "unix:/run/policy.sock", AF_UNSPEC},
        {"local:/run/m.sock", 1, "unix:/run/m.sock", AF_UNSPEC},
        {"inet:8890@127.0.0.1", 1, "inet:127.0.0.1:8890", AF_UNSPEC},
        {"inet:8890@localhost", 1, "inet:localhost:8890", AF_UNSPEC},
        {"inet:8890", 1, "inet:0.0.0.0:8890", AF_UNSPEC},
        {"inet6:8890@::1", 1, "inet:[::1]:8890", AF_INET6},
        {"inet6:8890", 1, "inet:[::]:8890", AF_INET6},
        {"127.0.0.1:10040", 1, "inet:127.0.0.1:10040", AF_UNSPEC},
        {"[::1]:10040", 1, "inet:[::1]:10040", AF_UNSPEC},
        /* Refused. */
        {"unix:relative.sock", 0, NULL, 0},
        {"relative.sock", 0, NULL, 0},
        {"local:", 0, NULL, 0},
        {"unix:", 0, NULL, 0},
        {"::1:10040", 0, NULL, 0},
        {"inet:::1:10040", 0, NULL, 0},
        {"127.0.0.1", 0, NULL, 0},
        {"127.0.0.1:", 0, NULL, 0},
        {"127.0.0.1:0", 0, NULL, 0},
        {"127.0.0.1:65536", 0, NULL, 0},
        {"127.0.0.1:10x", 0, NULL, 0},
        {":10040", 0, NULL, 0},
        {"[::1]10040", 0, NULL, 0},
        {"inet:8890@", 0, NULL, 0},
        {"inet:@host", 0, NULL, 0},
        {"inet:88x@host", 0, NULL, 0},
        {"inet6:::1", 0, NULL, 0},
        {"inet:host name:25", 0, NULL, 0},
        {"inet:a/b:25", 0, NULL, 0},
        {"inet:88@ll::1]:10040", 0, NULL, 0}, /* found by fuzz_listener */
        {"inet:[[::1]]:25", 0, NULL, 0},
        {"inet:", 0, NULL, 0},
        {"", 0, NULL, 0},
    };
    char longpath[200];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct listener_addr a;
        char err[128] = "", out[300];
        int rc = listener_parse(cases[i].spec, &a, err, sizeof(err));
        CHECKF((rc == 0) == (cases[i].ok == 1), "%s: rc %d (%s)", cases[i].spec, rc, err);
        if (rc != 0) {
            CHECKF(err[0] != '\0', "%s: no message", cases[i].spec);
            continue;
        }
        listener_format(&a, out, sizeof(out));
        CHECKF(strcmp(out, cases[i].canonical) == 0, "%s: %s", cases[i].spec, out);
        CHECKF(a.family == cases[i].family, "%s", cases[i].spec);
    }
    snprintf(longpath, sizeof(longpath), "unix:/%0150d", 0);
    struct listener_addr a;
    char err[128], out[300];
    CHECK_INT(listener_parse(longpath, &a, err, sizeof(err)), -1);

    /* The HTTP listener's host and port keys. */
    CHECK_INT(listener_addr_inet("::1", 10082, &a, err, sizeof(err)), 0);
    listener_format(&a, out, sizeof(out));
    CHECK_STR(out, "inet:[::1]:10082");
    CHECK_INT(listener_addr_inet("", 10082, &a, err, sizeof(err)), -1);
    CHECK_INT(listener_addr_inet("127.0.0.1", 0, &a, err, sizeof(err)), -1);
}

static void test_open_unix(void)
{
    char dir[] = "/tmp/filtermail-listener-XXXXXX", spec[128], err[256];
    struct listener_addr a;
    struct listener l, l2;
    struct stat st;

    CHECK(mkdtemp(dir) != NULL);
    /* A bare path is as good as unix:. */
    snprintf(spec, sizeof(spec), "%s/p.sock", dir);
    CHECK_INT(listener_parse(spec, &a, err, sizeof(err)), 0);
    umask(0); /* the socket's mode must not depend on the caller's umask */
    CHECKF(listener_open(&l, &a, 16, 0, err, sizeof(err)) == 0, "%s", err);
    umask(022);
    CHECK(stat(a.path, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK_INT(st.st_mode & 07777, 0660);
    /* A second server must not steal a live socket. */
    CHECK_INT(listener_open(&l2, &a, 16, 0, err, sizeof(err)), -1);
    CHECK_INT(l2.fd, -1);
    CHECK(strstr(err, "another process is listening") != NULL);
    CHECK(stat(a.path, &st) == 0 && S_ISSOCK(st.st_mode));
    /* A live server whose backlog is full (nobody accepts) is still found
     * live, at once: the probe must not wait in connect(2). */
    int queued[64], nq = 0;
    for (; nq < 64; nq++) {
        queued[nq] = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        memcpy(sun.sun_path, a.path, strlen(a.path) + 1);
        if (connect(queued[nq], (struct sockaddr *)&sun, sizeof(sun)) < 0) {
            CHECK_INT(errno, EAGAIN);
            close(queued[nq]);
            break;
        }
    }
    CHECK(nq < 64); /* the backlog (16) did fill */
    alarm(10); /* a blocking probe would hang here */
    CHECK_INT(listener_open(&l2, &a, 16, 0, err, sizeof(err)), -1);
    alarm(0);
    CHECK(strstr(err, "another process is listening") != NULL);
    for (int i = 0; i < nq; i++)
        close(queued[i]);
    /* A socket file nobody listens on any more is replaced. */
    close(l.fd);
    CHECKF(listener_open(&l, &a, 16, SOCK_NONBLOCK, err, sizeof(err)) == 0, "%s", err);
    /* Closing removes our own socket file... */
    listener_close(&l);
    CHECK_INT(l.fd, -1);
    CHECK(lstat(a.path, &st) < 0);
    listener_close(&l); /* twice is harmless */
    /* ...but not a newer one that took its place (here the old file moved
     * away, so the new one cannot reuse its inode). */
    char moved[160];
    snprintf(moved, sizeof(moved), "%s/old.sock", dir);
    CHECKF(listener_open(&l, &a, 16, 0, err, sizeof(err)) == 0, "%s", err);
    CHECK(rename(a.path, moved) == 0);
    CHECKF(listener_open(&l2, &a, 16, 0, err, sizeof(err)) == 0, "%s", err);
    listener_close(&l);
    CHECK(lstat(a.path, &st) == 0);
    listener_close(&l2);
    CHECK(lstat(a.path, &st) < 0);
    unlink(moved);
    /* Something else at that path is left alone. */
    FILE *f = fopen(a.path, "w");
    fclose(f);
    CHECK_INT(listener_open(&l, &a, 16, 0, err, sizeof(err)), -1);
    CHECK(strstr(err, "not a socket") != NULL);
    CHECK(lstat(a.path, &st) == 0 && S_ISREG(st.st_mode));
    unlink(a.path);
    rmdir(dir);
}

static void test_open_inet(void)
{
    struct listener_addr a;
    struct listener l, l2;
    char err[256], spec[64];

    /* A port from the kernel, then taken through each syntax. */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(0x7f000001);
    CHECK(bind(probe, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    CHECK(getsockname(probe, (struct sockaddr *)&ss, &len) == 0);
    int port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
    close(probe);
    for (size_t i = 0; i < 3; i++) {
        if (i == 0)
            snprintf(spec, sizeof(spec), "inet:127.0.0.1:%d", port);
        else if (i == 1)
            snprintf(spec, sizeof(spec), "inet:%d@127.0.0.1", port);
        else
            snprintf(spec, sizeof(spec), "127.0.0.1:%d", port);
        CHECK_INT(listener_parse(spec, &a, err, sizeof(err)), 0);
        CHECKF(listener_open(&l, &a, 16, 0, err, sizeof(err)) == 0, "%s: %s", spec, err);
        CHECK_INT(listener_open(&l2, &a, 16, 0, err, sizeof(err)), -1); /* in use */
        CHECKF(strstr(err, "cannot listen on inet:127.0.0.1:") != NULL, "%s", err);
        listener_close(&l);
    }
    /* An address that is not ours. */
    CHECK_INT(listener_parse("inet:192.0.2.1:25", &a, err, sizeof(err)), 0);
    CHECK_INT(listener_open(&l, &a, 16, 0, err, sizeof(err)), -1);
}

int main(void)
{
    UNIT_RUN(test_parse);
    UNIT_RUN(test_open_unix);
    UNIT_RUN(test_open_inet);
    return unit_summary();
}
