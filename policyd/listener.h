/* listener: the socket filtermail-policyd serves Postfix on.
 *
 * filtermail_policy_socket is "unix:/path" (or just "/path"), as Postfix's
 * check_policy_service writes it, or "inet:host:port" (or "host:port";
 * "[::1]:port" for IPv6). Not thread-safe (start-up only).
 */
#ifndef FILTERMAIL_LISTENER_H
#define FILTERMAIL_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

struct listener_spec {
    bool is_unix;
    char path[108]; /* sun_path */
    char host[256];
    char port[8];
};

/* Parses a socket spec. Returns 0, or -1 with a message in err. Pure. */
int listener_parse(const char *spec, struct listener_spec *ls, char *err, size_t errlen);

/* The spec in the form privs_drop() understands ("unix:/path" or as given). */
void listener_privs_spec(const struct listener_spec *ls, const char *spec, char *out,
                         size_t outlen);

/* Binds and listens (non-blocking, close-on-exec). A unix socket file left
 * behind by a dead process is replaced; one that still answers is not. The
 * caller sets the umask for the socket's mode. Returns the fd, or -1 with a
 * message in err. */
int listener_open(const struct listener_spec *ls, int backlog, char *err, size_t errlen);

#endif
