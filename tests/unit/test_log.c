/* Tests for common/log.c: every line is one safe line, whatever text a
 * peer put into it, the lines operators match keep their wording, and the
 * syslog sink sends them with the right priorities. */
#include "log.h"
#include "unit.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs one log_msg with stderr on a pipe; returns what was written. */
static const char *captured(enum log_level level, const char *target, const char *text)
{
    static char out[8192];
    int p[2], saved = dup(STDERR_FILENO);
    size_t have = 0;
    ssize_t n;

    out[0] = '\0';
    if (saved < 0 || pipe(p) < 0)
        return out;
    dup2(p[1], STDERR_FILENO);
    close(p[1]);
    log_msg(level, target, "%s", text);
    dup2(saved, STDERR_FILENO);
    close(saved);
    while (have + 1 < sizeof(out) && (n = read(p[0], out + have, sizeof(out) - 1 - have)) > 0)
        have += (size_t)n;
    close(p[0]);
    out[have] = '\0';
    return out;
}

static void test_sanitised_in_one_place(void)
{
    static const struct {
        const char *name, *text, *want;
    } cases[] = {
        /* Operators' mtail rules match these: unchanged. */
        {"metric line", "Incoming: Filtering encrypted mail.",
         "[INFO  filtermail::inbound] Incoming: Filtering encrypted mail.\n"},
        {"mailer-daemon", "Incoming: Filtering mailer-daemon message from <md@example.net>",
         "[INFO  filtermail::inbound] Incoming: Filtering mailer-daemon message from "
         "<md@example.net>\n"},
        /* An RFC 2047-decoded From with a newline cannot start a forged line. */
        {"LF", "from <mailer-daemon@example.net\n[WARN  x] injected2>",
         "[INFO  filtermail::inbound] from <mailer-daemon@example.net?[WARN  x] injected2>\n"},
        {"CR LF", "a\r\nb", "[INFO  filtermail::inbound] a??b\n"},
        {"TAB ESC DEL", "a\tb\033[31mc\177", "[INFO  filtermail::inbound] a?b?[31mc?\n"},
        {"UTF-8 kept", "J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x94\x92",
         "[INFO  filtermail::inbound] J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x94\x92\n"},
        {"invalid UTF-8", "a\xff" "b\xc3(c\xe2\x82", "[INFO  filtermail::inbound] a?b?(c??\n"},
        {"overlong", "\xc0\xaf", "[INFO  filtermail::inbound] ??\n"},
        {"surrogate", "\xed\xa0\x80", "[INFO  filtermail::inbound] ???\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = captured(LOGL_INFO, "filtermail::inbound", cases[i].text);
        CHECKF(strcmp(got, cases[i].want) == 0, "%s: got \"%s\"", cases[i].name, got);
    }
}

/* A message longer than the line is cut, still one line ending in "...". */
static void test_long_message_one_line(void)
{
    static char text[10000];
    memset(text, 'x', sizeof(text) - 1);
    for (size_t i = 100; i < sizeof(text) - 1; i += 100)
        text[i] = '\n';
    const char *got = captured(LOGL_WARN, "t", text);
    size_t len = strlen(got);
    CHECK(len > 4000 && len < 4300);
    CHECK(strchr(got, '\n') == got + len - 1);
    CHECK(len > 4 && memcmp(got + len - 4, "...\n", 4) == 0);
}

static void test_levels(void)
{
    CHECK_STR(captured(LOGL_DEBUG, "t", "hidden"), "");
    CHECK_STR(captured(LOGL_ERROR, "t", "e"), "[ERROR t] e\n");
    CHECK_STR(captured(LOGL_WARN, "t", "w"), "[WARN  t] w\n");
}

/* The syslog sink (log_to_syslog): in a child with a private /dev (a mount
 * namespace), a datagram socket at /dev/log receives what syslog(3) sends, so
 * priorities, facility and text are checked as a syslog daemon would see them.
 * The child returns 0 when every line arrived as expected, else a step number. */
static int syslog_child(void)
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
        _exit(syslog_child());
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECKF(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: status %d", WEXITSTATUS(st));
}

int main(void)
{
    unsetenv("RUST_LOG");
    log_init("test_log", "info");
    UNIT_RUN(test_sanitised_in_one_place);
    UNIT_RUN(test_long_message_one_line);
    UNIT_RUN(test_levels);
    UNIT_RUN(test_syslog_lines);
    return unit_summary();
}
