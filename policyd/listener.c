/* listener: parse filtermail_policy_socket and open it. */
#include "listener.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static int ls_error(char *err, size_t errlen, const char *what)
{
    snprintf(err, errlen, "%s", what);
    return -1;
}

int listener_parse(const char *spec, struct listener_spec *ls, char *err, size_t errlen)
{
    const char *p = spec, *colon, *hs, *he;
    size_t n;

    memset(ls, 0, sizeof(*ls));
    if (strncmp(p, "unix:", 5) == 0 || p[0] == '/') {
        if (p[0] != '/')
            p += 5;
        if (p[0] != '/')
            return ls_error(err, errlen, "a unix socket needs an absolute path");
        n = strlen(p);
        if (n >= sizeof(ls->path))
            return ls_error(err, errlen, "unix socket path too long");
        ls->is_unix = true;
        memcpy(ls->path, p, n + 1);
        return 0;
    }
    if (strncmp(p, "inet:", 5) == 0)
        p += 5;
    if (p[0] == '[') {
        he = strchr(p, ']');
        if (he == NULL || he[1] != ':')
            return ls_error(err, errlen, "expected [address]:port");
        hs = p + 1;
        colon = he + 1;
    } else {
        colon = strrchr(p, ':');
        if (colon == NULL)
            return ls_error(err, errlen, "expected unix:/path or inet:host:port");
        hs = p;
        he = colon;
        if (memchr(hs, ':', (size_t)(he - hs)) != NULL)
            return ls_error(err, errlen, "write an IPv6 address as [address]:port");
    }
    n = (size_t)(he - hs);
    if (n == 0 || n >= sizeof(ls->host))
        return ls_error(err, errlen, "bad host");
    memcpy(ls->host, hs, n);
    ls->host[n] = '\0';
    n = strlen(colon + 1);
    if (n == 0 || n >= sizeof(ls->port) || strspn(colon + 1, "0123456789") != n)
        return ls_error(err, errlen, "bad port");
    memcpy(ls->port, colon + 1, n + 1);
    long port = strtol(ls->port, NULL, 10);
    if (port < 1 || port > 65535)
        return ls_error(err, errlen, "bad port");
    return 0;
}

void listener_privs_spec(const struct listener_spec *ls, const char *spec, char *out, size_t outlen)
{
    if (ls->is_unix)
        snprintf(out, outlen, "unix:%s", ls->path);
    else
        snprintf(out, outlen, "%s", spec);
}

/* Removes a socket file nobody answers on. */
static int ls_clear_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    struct sockaddr_un sun;
    int fd, rc;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : ls_error(err, errlen, strerror(errno));
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket", path);
        return -1;
    }
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ls_error(err, errlen, strerror(errno));
    rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    close(fd);
    if (rc == 0) {
        snprintf(err, errlen, "another process is listening on %s", path);
        return -1;
    }
    if (unlink(path) < 0 && errno != ENOENT) {
        snprintf(err, errlen, "cannot remove the old socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int listener_open(const struct listener_spec *ls, int backlog, char *err, size_t errlen)
{
    int fd = -1;

    if (ls->is_unix) {
        struct sockaddr_un sun;
        if (ls_clear_stale(ls->path, err, errlen) < 0)
            return -1;
        memset(&sun, 0, sizeof(sun));
        sun.sun_family = AF_UNIX;
        memcpy(sun.sun_path, ls->path, strlen(ls->path) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
            listen(fd, backlog) < 0) {
            snprintf(err, errlen, "cannot listen on %s: %s", ls->path, strerror(errno));
            if (fd >= 0)
                close(fd);
            return -1;
        }
        return fd;
    }

    struct addrinfo hints, *res = NULL, *ai;
    int rc, one = 1, saved = 0;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    rc = getaddrinfo(ls->host, ls->port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", ls->host, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, backlog) == 0)
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(err, errlen, "cannot listen on %s:%s: %s", ls->host, ls->port, strerror(saved));
    return fd;
}
