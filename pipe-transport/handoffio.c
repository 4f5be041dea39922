/* handoffio: sending and receiving handoff requests and replies. */
#include "handoffio.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "clock.h"
#include "fdio.h"

/* Waits for sock to be ready for events; 0 ready, -1 timed out or failed. */
static int wait_for(int sock, short events, int64_t until_ms)
{
    for (;;) {
        int64_t left = until_ms - (int64_t)clock_mono_ms();
        if (left <= 0) {
            errno = ETIMEDOUT;
            return -1;
        }
        struct pollfd p = {.fd = sock, .events = events};
        int n = poll(&p, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

int handoff_connect(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "socket path too long");
        return -1;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        snprintf(err, errlen, "connect to %s: %s", path, strerror(errno));
        close(s);
        return -1;
    }
    return s;
}

int handoff_send(int sock, const struct buf *req, int fd, int64_t until_ms, char *err,
                 size_t errlen)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {.iov_base = req->data, .iov_len = 1};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                       .msg_controllen = sizeof(ctl.buf)};
    memset(ctl.buf, 0, sizeof(ctl.buf));
    struct cmsghdr *c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    if (req->len == 0) {
        snprintf(err, errlen, "empty request");
        return -1;
    }
    ssize_t n;
    while ((n = sendmsg(sock, &m, MSG_NOSIGNAL)) < 0 && errno == EINTR)
        ;
    if (n != 1) {
        snprintf(err, errlen, "send: %s", n < 0 ? strerror(errno) : "nothing sent");
        return -1;
    }
    /* A blocking socket: fd_send_all's wait 0 leaves the waiting to send(2). */
    if (req->len > 1 && fd_send_all(sock, req->data + 1, req->len - 1, 0, until_ms) < 0) {
        snprintf(err, errlen, "send: %s", strerror(errno));
        return -1;
    }
    return 0;
}

int handoff_recv_reply(int sock, int64_t until_ms, struct outcome *o, char *err, size_t errlen)
{
    char line[HANDOFF_REPLY_MAX];
    size_t len = 0;
    for (;;) {
        if (wait_for(sock, POLLIN, until_ms) < 0) {
            snprintf(err, errlen, "no result in time: %s", strerror(errno));
            return -1;
        }
        ssize_t n = recv(sock, line + len, sizeof(line) - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errlen, "read: %s", strerror(errno));
            return -1;
        }
        if (n == 0) {
            snprintf(err, errlen, "the connection ended without a result");
            return -1;
        }
        len += (size_t)n;
        char *nl = memchr(line, '\n', len);
        if (nl != NULL) {
            if ((size_t)(nl - line) + 1 != len || handoff_reply_parse(line, len, o) < 0) {
                snprintf(err, errlen, "a malformed result");
                return -1;
            }
            return 0;
        }
        if (len == sizeof(line)) {
            snprintf(err, errlen, "a result line too long");
            return -1;
        }
    }
}

int handoff_recv_request(int sock, struct buf *b, int *fd_r, int64_t until_ms,
                         struct handoff_request *req, char *err, size_t errlen)
{
    char chunk[16384];
    *fd_r = -1;
    for (;;) {
        if (wait_for(sock, POLLIN, until_ms) < 0) {
            snprintf(err, errlen, "no complete request in time: %s", strerror(errno));
            return -1;
        }
        union {
            char buf[CMSG_SPACE(2 * sizeof(int))];
            struct cmsghdr align;
        } ctl;
        struct iovec iov = {.iov_base = chunk, .iov_len = sizeof(chunk)};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                           .msg_controllen = sizeof(ctl.buf)};
        ssize_t n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n < 0) {
            snprintf(err, errlen, "read: %s", strerror(errno));
            return -1;
        }
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c != NULL; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
                continue;
            size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t i = 0; i < nfd; i++) {
                int fd;
                memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                if (*fd_r < 0)
                    *fd_r = fd;
                else
                    close(fd);
            }
        }
        if (m.msg_flags & MSG_CTRUNC) {
            snprintf(err, errlen, "descriptors cut off");
            return -1;
        }
        if (n == 0) {
            snprintf(err, errlen, "the connection ended before the request did");
            return -1;
        }
        if (buf_append(b, chunk, (size_t)n) < 0) {
            snprintf(err, errlen, "request longer than %d bytes", HANDOFF_REQUEST_MAX);
            return -1;
        }
        enum handoff_parse p = handoff_request_parse(b->data, b->len, req, err, errlen);
        if (p == HANDOFF_BAD)
            return -1;
        if (p == HANDOFF_OK)
            return 0;
    }
}

int handoff_send_reply(int sock, const struct outcome *o, int64_t until_ms)
{
    char line[HANDOFF_REPLY_MAX];
    size_t n = handoff_reply_format(o, line, sizeof(line));
    return fd_send_all(sock, line, n, 0, until_ms);
}
