/* listener: parse a socket address and open it; see listener.h. */
#include "listener.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int listener_error(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s", what);
    return -1;
}

/* Copies a port of 1-65535 written in decimal. */
static int listener_port(const char *s, size_t n, struct listener_addr *a, char *err, size_t errlen)
{
    long port;
    if (n == 0 || n >= sizeof(a->port) || strspn(s, "0123456789") < n)
        return listener_error(err, errlen, "bad port");
    memcpy(a->port, s, n);
    a->port[n] = '\0';
    port = strtol(a->port, NULL, 10);
    if (port < 1 || port > 65535)
        return listener_error(err, errlen, "bad port (1-65535)");
    return 0;
}

static int listener_host(const char *s, size_t n, struct listener_addr *a, char *err, size_t errlen)
{
    if (n >= sizeof(a->host))
        return listener_error(err, errlen, "host name too long");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= ' ' || s[i] == '/' || s[i] == '@' || s[i] == '[' ||
            s[i] == ']' || s[i] == 0x7f)
            return listener_error(err, errlen, "bad host");
    memcpy(a->host, s, n);
    a->host[n] = '\0';
    return 0;
}

static int listener_parse_unix(const char *p, struct listener_addr *a, char *err, size_t errlen)
{
    size_t n = strlen(p);
    if (p[0] != '/')
        return listener_error(err, errlen, "a unix socket needs an absolute path");
    if (n >= sizeof(a->path))
        return listener_error(err, errlen, "unix socket path too long");
    a->is_unix = true;
    memcpy(a->path, p, n + 1);
    return 0;
}

/* libmilter's PORT@HOST, or PORT alone for every address. */
static int listener_parse_milter(const char *p, struct listener_addr *a, char *err, size_t errlen)
{
    const char *at = strchr(p, '@');
    size_t plen = at != NULL ? (size_t)(at - p) : strlen(p);
    if (listener_port(p, plen, a, err, errlen) < 0)
        return -1;
    if (at == NULL)
        return 0;
    if (at[1] == '\0')
        return listener_error(err, errlen, "no host after '@'");
    return listener_host(at + 1, strlen(at + 1), a, err, errlen);
}

/* HOST:PORT or [IPV6]:PORT. */
static int listener_parse_hostport(const char *p, struct listener_addr *a, char *err, size_t errlen)
{
    const char *hs, *he, *colon;
    if (p[0] == '[') {
        he = strchr(p, ']');
        if (he == NULL || he[1] != ':')
            return listener_error(err, errlen, "expected [address]:port");
        hs = p + 1;
        colon = he + 1;
    } else {
        colon = strrchr(p, ':');
        if (colon == NULL)
            return listener_error(err, errlen, "expected unix:/path or inet:host:port");
        hs = p;
        he = colon;
        if (memchr(hs, ':', (size_t)(he - hs)) != NULL)
            return listener_error(err, errlen, "write an IPv6 address as [address]:port");
    }
    if (he == hs)
        return listener_error(err, errlen, "bad host");
    if (listener_host(hs, (size_t)(he - hs), a, err, errlen) < 0)
        return -1;
    return listener_port(colon + 1, strlen(colon + 1), a, err, errlen);
}

int listener_parse(const char *spec, struct listener_addr *a, char *err, size_t errlen)
{
    memset(a, 0, sizeof(*a));
    if (strncmp(spec, "unix:", 5) == 0)
        return listener_parse_unix(spec + 5, a, err, errlen);
    if (strncmp(spec, "local:", 6) == 0)
        return listener_parse_unix(spec + 6, a, err, errlen);
    if (spec[0] == '/')
        return listener_parse_unix(spec, a, err, errlen);
    if (strncmp(spec, "inet6:", 6) == 0) {
        a->family = AF_INET6;
        if (strchr(spec + 6, '@') == NULL && strspn(spec + 6, "0123456789") != strlen(spec + 6))
            return listener_error(err, errlen, "expected inet6:port@host");
        return listener_parse_milter(spec + 6, a, err, errlen);
    }
    if (strncmp(spec, "inet:", 5) == 0) {
        const char *p = spec + 5;
        if (strchr(p, '@') != NULL || (p[0] != '\0' && strspn(p, "0123456789") == strlen(p)))
            return listener_parse_milter(p, a, err, errlen);
        return listener_parse_hostport(p, a, err, errlen);
    }
    if (spec[0] == '\0')
        return listener_error(err, errlen, "empty");
    return listener_parse_hostport(spec, a, err, errlen);
}

int listener_addr_inet(const char *host, uint16_t port, struct listener_addr *a, char *err,
                       size_t errlen)
{
    char p[8];
    memset(a, 0, sizeof(*a));
    if (host[0] == '\0')
        return listener_error(err, errlen, "bad host");
    if (listener_host(host, strlen(host), a, err, errlen) < 0)
        return -1;
    snprintf(p, sizeof(p), "%u", (unsigned)port);
    return listener_port(p, strlen(p), a, err, errlen);
}

void listener_format(const struct listener_addr *a, char *out, size_t outlen)
{
    if (a->is_unix)
        snprintf(out, outlen, "unix:%s", a->path);
    else if (strchr(a->host, ':') != NULL || (a->host[0] == '\0' && a->family == AF_INET6))
        snprintf(out, outlen, "inet:[%s]:%s", a->host[0] != '\0' ? a->host : "::", a->port);
    else
        snprintf(out, outlen, "inet:%s:%s", a->host[0] != '\0' ? a->host : "0.0.0.0", a->port);
}

/* Removes a socket file nobody answers on; refuses anything else. */
static int listener_clear_stale(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;
    int fd, rc;

    if (lstat(path, &st) < 0) {
        if (errno == ENOENT)
            return 0;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    /* Non-blocking: a live server whose backlog is full answers EAGAIN at
     * once instead of holding the start-up in connect(2). */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    close(fd);
    if (rc == 0 || errno == EAGAIN) {
        /* EAGAIN: alive, its backlog full. */
        snprintf(err, errlen, "another process is listening on %s", path);
        return -1;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot remove the old socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int listener_open_unix(struct listener *l, int backlog, int sock_flags, char *err,
                              size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    struct stat st;
    mode_t old;
    int fd, rc, e;

    if (listener_clear_stale(l->addr.path, err, errlen) < 0)
        return -1;
    memcpy(sun.sun_path, l->addr.path, strlen(l->addr.path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | sock_flags, 0);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", l->addr.path, strerror(errno));
        return -1;
    }
    /* Owner and group (Postfix) only, from the moment it exists. */
    old = umask(0117);
    rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    e = errno;
    umask(old);
    if (rc < 0 || listen(fd, backlog) < 0 || stat(l->addr.path, &st) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", l->addr.path,
                 strerror(rc < 0 ? e : errno));
        close(fd);
        return -1;
    }
    l->dev = st.st_dev;
    l->ino = st.st_ino;
    l->fd = fd;
    return 0;
}

static int listener_open_inet(struct listener *l, int backlog, int sock_flags, char *err,
                              size_t errlen)
{
    struct addrinfo hints = {.ai_family = l->addr.family,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL, *ai;
    char name[300];
    int rc, one = 1, saved = 0, fd = -1;

    listener_format(&l->addr, name, sizeof(name));
    rc = getaddrinfo(l->addr.host[0] != '\0' ? l->addr.host : NULL, l->addr.port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", name, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | sock_flags, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(saved));
        return -1;
    }
    l->fd = fd;
    return 0;
}

int listener_open(struct listener *l, const struct listener_addr *a, int backlog, int sock_flags,
                  char *err, size_t errlen)
{
    memset(l, 0, sizeof(*l));
    l->addr = *a;
    l->fd = -1;
    return a->is_unix ? listener_open_unix(l, backlog, sock_flags, err, errlen)
                      : listener_open_inet(l, backlog, sock_flags, err, errlen);
}

void listener_close(struct listener *l)
{
    struct stat st;
    if (l->fd < 0)
        return;
    close(l->fd);
    l->fd = -1;
    if (l->addr.is_unix && lstat(l->addr.path, &st) == 0 && st.st_dev == l->dev &&
        st.st_ino == l->ino)
        unlink(l->addr.path);
}
