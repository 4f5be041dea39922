/* Tests for pipe-transport/deadline.c: what the internal deadline reports,
 * before and after the outcome is settled, directly and through a real
 * SIGALRM in a child process. */
#include "deadline.h"
#include "unit.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static size_t drain(int fd, char *buf, size_t len)
{
    ssize_t n = read(fd, buf, len - 1);
    buf[n > 0 ? n : 0] = '\0';
    return n > 0 ? (size_t)n : 0;
}

/* In a child: the alarm strikes after the outcome was settled. */
static void test_alarm_reports_settled(void)
{
    int p[2];
    char buf[1200];
    CHECK(pipe(p) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        struct outcome o;
        close(p[0]);
        deadline_start(p[1], 1);
        outcome_set(&o, OUTCOME_DELIVERED, "2.0.0", "delivered via HTTPS to mx.example.org");
        deadline_settle(&o);
        for (;;)
            pause();
    }
    close(p[1]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    drain(p[0], buf, sizeof(buf));
    CHECK_STR(buf, "delivered via HTTPS to mx.example.org\n");
    close(p[0]);

    /* Not settled: a deferral. */
    CHECK(pipe(p) == 0);
    pid = fork();
    if (pid == 0) {
        close(p[0]);
        deadline_start(p[1], 1);
        for (;;)
            pause();
    }
    close(p[1]);
    CHECK(waitpid(pid, &st, 0) == pid);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == DSN_EX_TEMPFAIL);
    drain(p[0], buf, sizeof(buf));
    CHECK_STR(buf, "4.4.7 filtermail-transport: internal deadline exceeded\n");
    close(p[0]);
}

/* In this process (last: settling is once per process). */
static void test_expire(void)
{
    int p[2];
    char buf[1200];
    struct outcome o;
    CHECK(pipe(p) == 0);
    CHECK_INT(deadline_expire(p[1]), DSN_EX_TEMPFAIL);
    drain(p[0], buf, sizeof(buf));
    CHECK_STR(buf, "4.4.7 filtermail-transport: internal deadline exceeded\n");

    outcome_set(&o, OUTCOME_BOUNCE, "5.1.1", "host mx said: 550 no such user");
    deadline_settle(&o);
    CHECK_INT(deadline_expire(p[1]), DSN_EX_UNAVAILABLE);
    drain(p[0], buf, sizeof(buf));
    CHECK_STR(buf, "5.1.1 host mx said: 550 no such user\n");

    /* Settled once: a later outcome does not replace it. */
    outcome_set(&o, OUTCOME_TEMPFAIL, "4.4.2", "later");
    deadline_settle(&o);
    CHECK_INT(deadline_expire(p[1]), DSN_EX_UNAVAILABLE);
    drain(p[0], buf, sizeof(buf));
    CHECK_STR(buf, "5.1.1 host mx said: 550 no such user\n");
    close(p[0]);
    close(p[1]);
}

int main(void)
{
    UNIT_RUN(test_alarm_reports_settled);
    UNIT_RUN(test_expire);
    return unit_summary();
}
