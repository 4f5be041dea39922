/* listener: the listening socket of every daemon, with one address syntax.
 *
 * The syntax (filtermail_milter_socket, filtermail_policy_socket):
 *
 *   unix:/path          a unix socket (an absolute path)
 *   inet:HOST:PORT      TCP on HOST (an IP address or a name)
 *   inet:[IPV6]:PORT    TCP on an IPv6 address
 *
 * and, because chatmail.ini files written for earlier versions use them, the
 * forms those documented: a bare "/path" and "local:/path" (unix), libmilter's
 * "inet:PORT@HOST", "inet6:PORT@HOST" and "inet:PORT" (every address), and the
 * policy server's "HOST:PORT" and "[IPV6]:PORT". config_load() checks the
 * socket keys with listener_parse(), so a bad address is a start-up error
 * naming the key.
 *
 * A unix socket is created with mode 0660, and a socket file is replaced only
 * when nobody listens on it any more: a second daemon started by mistake
 * fails instead of stealing the first one's socket. privs_drop() gives it to
 * the unprivileged user and the socket group, whatever form named it.
 *
 * Not thread-safe (start-up and shutdown only: opening a unix socket sets the
 * process umask for a moment).
 */
#ifndef FILTERMAIL_LISTENER_H
#define FILTERMAIL_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct listener_addr {
    bool is_unix;
    char path[108]; /* sun_path, when is_unix */
    char host[256]; /* "" for every address */
    char port[8];
    int family; /* AF_UNSPEC, or AF_INET6 for inet6: */
};

/* Parses a socket address in any accepted form. Returns 0, or -1 with a
 * message in err (errlen bytes) saying what is wrong. Pure. */
int listener_parse(const char *spec, struct listener_addr *a, char *err, size_t errlen);

/* The address of host (an IP address or a name) and port, as the HTTP
 * listener's filtermail_host and port keys give it. Returns 0 or -1 (err). */
int listener_addr_inet(const char *host, uint16_t port, struct listener_addr *a, char *err,
                       size_t errlen);

/* The address in the canonical syntax ("unix:/path", "inet:HOST:PORT",
 * "inet:[IPV6]:PORT"), cut to outlen bytes; for messages. */
void listener_format(const struct listener_addr *a, char *out, size_t outlen);

/* An open listening socket. */
struct listener {
    struct listener_addr addr;
    int fd;
    dev_t dev; /* the socket file created, for listener_close() */
    ino_t ino;
};

/* Binds and listens on a (backlog connections waiting), close-on-exec, with
 * sock_flags (0 or SOCK_NONBLOCK). A unix socket file left behind by a dead
 * process is replaced; one a process still accepts on, or anything that is
 * not a socket, is not. Returns 0 with l->fd open, or -1 with a message in
 * err and l->fd -1. */
int listener_open(struct listener *l, const struct listener_addr *a, int backlog, int sock_flags,
                  char *err, size_t errlen);

/* Closes the socket and removes the socket file, if it is still the one
 * listener_open() created (a newer daemon's is left alone; removal may fail
 * after the privilege drop, which the next start copes with). Safe on a
 * listener that is not open (fd -1). */
void listener_close(struct listener *l);

#endif
