/* handoffio: the socket side of handoff.h, for both ends.
 *
 * The client sends the request with its stdin descriptor attached
 * (SCM_RIGHTS) and reads the one reply line; the daemon receives the request
 * and the descriptor, and sends the reply. Every wait is bounded by until_ms
 * (monotonic milliseconds, clock_mono_ms()). Descriptors received are
 * close-on-exec.
 *
 * Thread-safe (no shared state).
 */
#ifndef FILTERMAIL_HANDOFFIO_H
#define FILTERMAIL_HANDOFFIO_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "dsn.h"
#include "handoff.h"

/* Connects to the unix socket at path (blocking, close-on-exec). Returns the
 * socket, or -1 with a message in err. */
int handoff_connect(const char *path, char *err, size_t errlen);

/* Sends req (a formatted request) on sock with fd attached to its first
 * byte. Returns 0, or -1 with a message in err. */
int handoff_send(int sock, const struct buf *req, int fd, int64_t until_ms, char *err,
                 size_t errlen);

/* Reads the reply line into o. Returns 0, or -1 with a message in err when
 * the daemon closed without one, sent something else, or until_ms passed. */
int handoff_recv_reply(int sock, int64_t until_ms, struct outcome *o, char *err, size_t errlen);

/* Reads one request into b (set up by the caller, at most
 * HANDOFF_REQUEST_MAX) and parses it into req (pointing into b). The
 * descriptor that came with it is put in *fd_r (-1 when none came; a second
 * one is closed). Returns 0, or -1 with a message in err (and *fd_r still
 * to be closed by the caller when not -1). */
int handoff_recv_request(int sock, struct buf *b, int *fd_r, int64_t until_ms,
                         struct handoff_request *req, char *err, size_t errlen);

/* Sends the reply line for o. Returns 0 or -1 (the client has gone). */
int handoff_send_reply(int sock, const struct outcome *o, int64_t until_ms);

#endif
