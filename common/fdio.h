/* fdio: whole writes to a file descriptor.
 *
 * write(2) and send(2) may write less than asked (pipes, sockets, signals);
 * every caller that needs all of it loops the same way, here:
 *
 *  - fd_write_all() for blocking descriptors (files, pipes);
 *  - fd_send_all() for non-blocking sockets, with bounded waits for room
 *    and no SIGPIPE when the peer has gone.
 *
 * Thread-safe.
 */
#ifndef FILTERMAIL_FDIO_H
#define FILTERMAIL_FDIO_H

#include <stddef.h>
#include <stdint.h>

/* Writes all n bytes of data to fd, retrying after EINTR and short writes.
 * Returns 0, or -1 with errno set (a write that wrote nothing counts as an
 * error, errno EIO). */
int fd_write_all(int fd, const void *data, size_t n);

/* Writes all n bytes of data to the non-blocking socket fd with send(2) and
 * MSG_NOSIGNAL (a peer that closed gives EPIPE, not SIGPIPE). When the
 * socket's buffer is full it waits for room with poll(2), each wait at most
 * wait_ms and none past until_ms (monotonic milliseconds, clock_mono_ms()). Returns 0, or -1 with errno set: ETIMEDOUT when a wait ran
 * out, EIO when send(2) wrote nothing. On a blocking socket send(2) itself
 * waits (bounded by SO_SNDTIMEO, if set): pass wait_ms 0 to fail with
 * ETIMEDOUT when that timeout ran out. */
int fd_send_all(int fd, const void *data, size_t n, int wait_ms, int64_t until_ms);

#endif
