/* Tests for policyd/listener.c: filtermail_policy_socket specs, and opening
 * a unix socket over a stale one but never over a live one. */
#include "listener.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void test_parse(void)
{
    static const struct {
        const char *spec;
        int ok;
        bool is_unix;
        const char *path_or_host, *port;
    } cases[] = {
        {"unix:/var/spool/postfix/filtermail/policy.sock", 1, true,
         "/var/spool/postfix/filtermail/policy.sock", ""},
        {"/run/policy.sock", 1, true, "/run/policy.sock", ""},
        {"inet:127.0.0.1:10040", 1, false, "127.0.0.1", "10040"},
        {"127.0.0.1:10040", 1, false, "127.0.0.1", "10040"},
        {"localhost:1", 1, false, "localhost", "1"},
        {"[::1]:10040", 1, false, "::1", "10040"},
        {"inet:[::1]:65535", 1, false, "::1", "65535"},
        {"unix:relative.sock", 0, false, "", ""},
        {"unix:", 0, false, "", ""},
        {"::1:10040", 0, false, "", ""},
        {"127.0.0.1", 0, false, "", ""},
        {"127.0.0.1:", 0, false, "", ""},
        {"127.0.0.1:0", 0, false, "", ""},
        {"127.0.0.1:65536", 0, false, "", ""},
        {"127.0.0.1:10x", 0, false, "", ""},
        {":10040", 0, false, "", ""},
        {"[::1]10040", 0, false, "", ""},
        {"", 0, false, "", ""},
    };
    char longpath[200];

    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct listener_spec ls;
        char err[128] = "";
        int rc = listener_parse(cases[i].spec, &ls, err, sizeof(err));
        CHECKF((rc == 0) == (cases[i].ok == 1), "%s: rc %d (%s)", cases[i].spec, rc, err);
        if (rc != 0) {
            CHECKF(err[0] != '\0', "%s: no message", cases[i].spec);
            continue;
        }
        CHECKF(ls.is_unix == cases[i].is_unix, "%s", cases[i].spec);
        CHECKF(strcmp(ls.is_unix ? ls.path : ls.host, cases[i].path_or_host) == 0, "%s",
               cases[i].spec);
        if (!ls.is_unix)
            CHECKF(strcmp(ls.port, cases[i].port) == 0, "%s", cases[i].spec);
    }
    snprintf(longpath, sizeof(longpath), "unix:/%0150d", 0);
    struct listener_spec ls;
    char err[128];
    CHECK_INT(listener_parse(longpath, &ls, err, sizeof(err)), -1);
    /* privs_drop wants "unix:" in front of a bare path. */
    char out[256];
    CHECK_INT(listener_parse("/run/p.sock", &ls, err, sizeof(err)), 0);
    listener_privs_spec(&ls, "/run/p.sock", out, sizeof(out));
    CHECK_STR(out, "unix:/run/p.sock");
}

static void test_open_unix(void)
{
    char dir[] = "/tmp/filtermail-listener-XXXXXX", spec[128], err[256];
    struct listener_spec ls;
    struct stat st;
    int fd, fd2;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(spec, sizeof(spec), "unix:%s/p.sock", dir);
    CHECK_INT(listener_parse(spec, &ls, err, sizeof(err)), 0);
    fd = listener_open(&ls, 16, err, sizeof(err));
    CHECKF(fd >= 0, "%s", err);
    CHECK(stat(ls.path, &st) == 0 && S_ISSOCK(st.st_mode));
    /* A second server must not steal a live socket. */
    fd2 = listener_open(&ls, 16, err, sizeof(err));
    CHECK_INT(fd2, -1);
    CHECK(strstr(err, "another process is listening") != NULL);
    /* A socket file nobody listens on any more is replaced. */
    close(fd);
    fd = listener_open(&ls, 16, err, sizeof(err));
    CHECKF(fd >= 0, "%s", err);
    close(fd);
    /* Something else at that path is left alone. */
    unlink(ls.path);
    FILE *f = fopen(ls.path, "w");
    fclose(f);
    CHECK_INT(listener_open(&ls, 16, err, sizeof(err)), -1);
    CHECK(strstr(err, "not a socket") != NULL);
    unlink(ls.path);
    rmdir(dir);
}

static void test_open_inet(void)
{
    struct listener_spec ls;
    char err[256];
    int fd;

    CHECK_INT(listener_parse("inet:127.0.0.1:0", &ls, err, sizeof(err)), -1); /* port 0 refused */
    /* A port from the kernel, then taken by the spec. */
    int probe = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(0x7f000001);
    CHECK(bind(probe, (struct sockaddr *)&sin, sizeof(sin)) == 0);
    CHECK(getsockname(probe, (struct sockaddr *)&ss, &len) == 0);
    char spec[64];
    snprintf(spec, sizeof(spec), "127.0.0.1:%d", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    close(probe);
    CHECK_INT(listener_parse(spec, &ls, err, sizeof(err)), 0);
    fd = listener_open(&ls, 16, err, sizeof(err));
    CHECKF(fd >= 0, "%s", err);
    CHECK_INT(listener_open(&ls, 16, err, sizeof(err)), -1); /* in use */
    close(fd);
}

int main(void)
{
    UNIT_RUN(test_parse);
    UNIT_RUN(test_open_unix);
    UNIT_RUN(test_open_inet);
    return unit_summary();
}
