/* fdio: whole writes to a file descriptor.
 *
 * write(2) may write less than asked (pipes, sockets, signals); every caller
 * that needs all of it loops the same way. Blocking descriptors only.
 *
 * Thread-safe.
 */
#ifndef FILTERMAIL_FDIO_H
#define FILTERMAIL_FDIO_H

#include <stddef.h>

/* Writes all n bytes of data to fd, retrying after EINTR and short writes.
 * Returns 0, or -1 with errno set (a write that wrote nothing counts as an
 * error, errno EIO). */
int fd_write_all(int fd, const void *data, size_t n);

/* The same on a socket with send(2) and MSG_NOSIGNAL: a peer that went away
 * gives -1 with EPIPE, never SIGPIPE, whatever the process's disposition. */
int fd_send_all(int fd, const void *data, size_t n);

#endif
