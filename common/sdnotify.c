/* sdnotify: a thin layer over libsystemd's sd_notify. */
#include "sdnotify.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>

#include <systemd/sd-daemon.h>

void sdnotify_ready(const char *status)
{
    char msg[256];

    if (status == NULL) {
        (void)sd_notify(0, "READY=1");
        return;
    }
    snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%.200s", status);
    (void)sd_notify(0, msg);
}

void sdnotify_stopping(void)
{
    (void)sd_notify(0, "STOPPING=1");
}

void sdnotify_status(const char *text)
{
    char msg[256];

    snprintf(msg, sizeof(msg), "STATUS=%.200s", text);
    (void)sd_notify(0, msg);
}

unsigned sdnotify_watchdog_interval_ms(void)
{
    uint64_t usec = 0;

    /* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID (if any) is us. */
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    usec /= 2;
    if (usec / 1000 > UINT32_MAX)
        return UINT32_MAX;
    return usec < 1000 ? 1 : (unsigned)(usec / 1000);
}

void sdnotify_watchdog(void)
{
    (void)sd_notify(0, "WATCHDOG=1");
}

void sdnotify_block_signals(sigset_t *set_r)
{
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(set_r);
    sigaddset(set_r, SIGTERM);
    sigaddset(set_r, SIGINT);
    sigaddset(set_r, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set_r, NULL);
}

int sdnotify_wait_signal(const sigset_t *set)
{
    unsigned wd_ms = sdnotify_watchdog_interval_ms();
    struct timespec wd = {.tv_sec = wd_ms / 1000, .tv_nsec = (long)(wd_ms % 1000) * 1000000};
    for (;;) {
        int sig = wd_ms > 0 ? sigtimedwait(set, NULL, &wd) : sigwaitinfo(set, NULL);
        if (sig >= 0)
            return sig;
        if (errno == EAGAIN)
            sdnotify_watchdog();
    }
}
