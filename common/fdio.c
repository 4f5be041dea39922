/* fdio: whole writes; see fdio.h. */
#include "fdio.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

/* send_flags < 0: write(2); otherwise send(2) with those flags. */
static int whole(int fd, const void *data, size_t n, int send_flags)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = send_flags < 0 ? write(fd, p, n) : send(fd, p, n, send_flags);
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

int fd_write_all(int fd, const void *data, size_t n)
{
    return whole(fd, data, n, -1);
}

int fd_send_all(int fd, const void *data, size_t n)
{
    return whole(fd, data, n, MSG_NOSIGNAL);
}
