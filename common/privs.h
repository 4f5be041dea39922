/* privs: start as root only to bind, then run as an unprivileged user.
 *
 * Not thread-safe: call once at start-up, before any thread is started.
 */
#ifndef FILTERMAIL_PRIVS_H
#define FILTERMAIL_PRIVS_H

#include <stddef.h>

/* When running as root: gives the unix socket named by socket_spec (in any
 * form listener_parse() accepts: "unix:/path", "local:/path" or a bare path;
 * TCP sockets and NULL are left alone) to user and group with mode 0660,
 * then switches to user (setgroups, setresgid, setresuid) and checks that
 * root cannot be regained. When not root, does nothing (the service manager
 * already chose the user). Returns 0, or -1 with a message in err. */
int privs_drop(const char *user, const char *socket_spec, const char *group, char *err,
               size_t errlen);

#endif
