/* deadline: SIGALRM's result line. */
#include "deadline.h"

#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

static char settled_line[DSN_TEXT_MAX + 32];
static size_t settled_len;
static atomic_int settled_status = -1; /* >= 0: settled_line is complete */
static int deadline_fd = STDOUT_FILENO;

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the handler's load must be lock-free");

void deadline_settle(const struct outcome *o)
{
    if (atomic_load_explicit(&settled_status, memory_order_relaxed) >= 0)
        return; /* settled once: the handler may be reading the line */
    settled_len = dsn_format(o, settled_line, sizeof(settled_line));
    atomic_store_explicit(&settled_status, dsn_exit_status(o), memory_order_release);
}

int deadline_expire(int fd)
{
    static const char msg[] = "4.4.7 filtermail-transport: internal deadline exceeded\n";
    int status = atomic_load_explicit(&settled_status, memory_order_acquire);
    if (status >= 0) {
        if (write(fd, settled_line, settled_len) < 0) {
            /* nothing left to do */
        }
        return status;
    }
    if (write(fd, msg, sizeof(msg) - 1) < 0) {
        /* nothing left to do */
    }
    return DSN_EX_TEMPFAIL;
}

static void on_alarm(int sig)
{
    (void)sig;
    _exit(deadline_expire(deadline_fd));
}

void deadline_start(int result_fd, unsigned seconds)
{
    deadline_fd = result_fd;
    signal(SIGALRM, on_alarm);
    alarm(seconds);
}
