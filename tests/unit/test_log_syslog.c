/* Tests for common/log.c's syslog sink (log_to_syslog): in a child with a
 * private /dev (a mount namespace), a datagram socket at /dev/log receives
 * what syslog(3) sends, so priorities, facility and text are checked as a
 * syslog daemon would see them. */
#include "log.h"
#include "unit.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* In the child: 0 when every line arrived as expected, else a step number. */
static int child(void)
{
    if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", "/dev", "tmpfs", 0, "size=64k") < 0) {
        fprintf(stderr, "cannot make a private /dev: %s\n", strerror(errno));
        return 2;
    }
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX, .sun_path = "/dev/log"};
    struct timeval tv = {.tv_sec = 5};
    if (s < 0 || bind(s, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0)
        return 3;
    log_init("test", "debug");
    log_to_syslog("filtermail-transport");
    log_warn("filtermail::transport", "Q1: %s", "connection refused");
    log_info("filtermail::transport", "Q1: to=<a@b>, status=sent");
    log_debug("filtermail::transport", "Q1: detail");
    log_err("filtermail::transport", "Q1: out of memory");

    static const struct {
        const char *prio, *text;
    } want[] = {
        {"<20>", "[WARN  filtermail::transport] Q1: connection refused"},
        {"<22>", "[INFO  filtermail::transport] Q1: to=<a@b>, status=sent"},
        {"<23>", "[DEBUG filtermail::transport] Q1: detail"},
        {"<19>", "[ERROR filtermail::transport] Q1: out of memory"},
    };
    char tag[64];
    snprintf(tag, sizeof(tag), "filtermail-transport[%d]: ", (int)getpid());
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        char buf[1024];
        ssize_t n = recv(s, buf, sizeof(buf) - 1, 0);
        if (n <= 0)
            return 10 + (int)i;
        buf[n] = '\0';
        /* "<20>Dec  2 00:00:00 filtermail-transport[123]: [WARN  ...] ..." */
        const char *t = strstr(buf, tag);
        if (strncmp(buf, want[i].prio, 4) != 0 || t == NULL ||
            strcmp(t + strlen(tag), want[i].text) != 0) {
            fprintf(stderr, "line %zu: %s\n", i, buf);
            return 20 + (int)i;
        }
    }
    return 0;
}

static void test_syslog_lines(void)
{
    pid_t pid = fork();
    if (pid == 0)
        _exit(child());
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %d", WEXITSTATUS(st));
}

int main(void)
{
    UNIT_RUN(test_syslog_lines);
    return unit_summary();
}
