/* Tests for common/privs.c: the switch to the unprivileged user, and its
 * refusal when a thread already runs (it would have started as root).
 * Needs root, as the daemons' start does; each case runs in a child. */
#include "privs.h"
#include "unit.h"

#include <pthread.h>
#include <stdbool.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void *sleeper(void *arg)
{
    (void)arg;
    pause();
    return NULL;
}

/* Runs privs_drop in a child, with a thread started first or not. Returns
 * 0 when it dropped to nobody, 1 when it refused naming threads, 2 else. */
static int drop_in_child(bool with_thread)
{
    pid_t pid = fork();
    if (pid == 0) {
        char err[256] = "";
        pthread_t t;
        if (with_thread && pthread_create(&t, NULL, sleeper, NULL) != 0)
            _exit(3);
        int rc = privs_drop("nobody", NULL, "nogroup", err, sizeof(err));
        struct passwd *pw = getpwnam("nobody");
        if (rc == 0 && pw != NULL && geteuid() == pw->pw_uid && getuid() == pw->pw_uid)
            _exit(0);
        if (rc < 0 && strstr(err, "threads run before privileges are dropped") != NULL)
            _exit(1);
        fprintf(stderr, "privs_drop: %d %s\n", rc, err);
        _exit(2);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static void test_drop(void)
{
    CHECKF(geteuid() == 0, "these tests need root (as the daemons' start-up does)");
    CHECK_INT(drop_in_child(false), 0);
    CHECK_INT(drop_in_child(true), 1);
}

int main(void)
{
    UNIT_RUN(test_drop);
    return unit_summary();
}
