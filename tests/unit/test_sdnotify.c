/* Tests for common/sdnotify.c: the daemons' signal loop, with and without a
 * watchdog (a datagram socket stands in for systemd's notify socket). */
#include "sdnotify.h"
#include "unit.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static void *term_later(void *arg)
{
    struct timespec t = {.tv_sec = 0, .tv_nsec = 350 * 1000000L};
    nanosleep(&t, NULL);
    kill(getpid(), SIGTERM);
    return arg;
}

/* Without systemd: a pending signal of the set is returned, and one that
 * arrives later is waited for; SIGPIPE is ignored. */
static void test_wait_without_watchdog(void)
{
    sigset_t set;
    pthread_t t;
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    sdnotify_block_signals(&set);
    raise(SIGPIPE); /* ignored: the test goes on */
    raise(SIGHUP);
    CHECK_INT(sdnotify_wait_signal(&set), SIGHUP);
    CHECK(pthread_create(&t, NULL, term_later, NULL) == 0);
    CHECK_INT(sdnotify_wait_signal(&set), SIGTERM);
    pthread_join(t, NULL);
}

/* Under a unit with WatchdogSec=: the wait pings the watchdog at half the
 * interval until a signal comes. */
static void test_wait_pings_watchdog(void)
{
    char dir[] = "/tmp/filtermail-sdnotify-XXXXXX", path[128], buf[64], pid[32];
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    sigset_t set;
    pthread_t t;
    int fd, pings = 0;

    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof(path), "%s/notify", dir);
    memcpy(sun.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    CHECK(bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0);
    snprintf(pid, sizeof(pid), "%ld", (long)getpid());
    setenv("NOTIFY_SOCKET", path, 1);
    setenv("WATCHDOG_USEC", "100000", 1); /* pings every 50 ms */
    setenv("WATCHDOG_PID", pid, 1);
    CHECK_INT(sdnotify_watchdog_interval_ms(), 50);
    sdnotify_block_signals(&set);
    CHECK(pthread_create(&t, NULL, term_later, NULL) == 0);
    CHECK_INT(sdnotify_wait_signal(&set), SIGTERM);
    pthread_join(t, NULL);
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
        if (n < 0)
            break;
        buf[n] = '\0';
        pings += strcmp(buf, "WATCHDOG=1") == 0;
    }
    CHECKF(pings >= 3, "%d pings in 350 ms at 50 ms", pings);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
    close(fd);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    UNIT_RUN(test_wait_without_watchdog);
    UNIT_RUN(test_wait_pings_watchdog);
    return unit_summary();
}
