/* fdio: whole writes; see fdio.h. */
#include "fdio.h"

#include "clock.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

int fd_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Waits until fd has room, at most wait_ms and not past until_ms. */
static int wait_room(int fd, int wait_ms, int64_t until_ms)
{
    for (;;) {
        int64_t left = until_ms - (int64_t)clock_mono_ms();
        if (left > wait_ms)
            left = wait_ms;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        int r = poll(&pfd, 1, left > 0 ? (int)left : 0);
        if (r > 0)
            return 0;
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            errno = ETIMEDOUT;
        return -1;
    }
}

int fd_send_all(int fd, const void *data, size_t n, int wait_ms, int64_t until_ms)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_room(fd, wait_ms, until_ms) < 0)
                return -1;
            continue;
        }
        if (w == 0)
            errno = EIO;
        return -1;
    }
    return 0;
}
