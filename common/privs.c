/* privs: drop root after binding. */
#include "privs.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "listener.h"

/* The path of a unix socket in any form the listener accepts, or NULL. */
static const char *privs_socket_path(const char *spec, struct listener_addr *a)
{
    char err[128];
    if (listener_parse(spec, a, err, sizeof(err)) < 0 || !a->is_unix)
        return NULL;
    return a->path;
}

int privs_drop(const char *user, const char *socket_spec, const char *group, char *err,
               size_t errlen)
{
    struct passwd *pw;
    struct group *gr;
    struct listener_addr addr;
    const char *path;
    gid_t sock_gid;

    if (geteuid() != 0)
        return 0;
    pw = getpwnam(user);
    if (pw == NULL) {
        snprintf(err, errlen, "unknown user %s (filtermail_user)", user);
        return -1;
    }
    if (pw->pw_uid == 0) {
        snprintf(err, errlen, "filtermail_user %s is root; refusing to run as root", user);
        return -1;
    }
    gr = getgrnam(group);
    if (gr == NULL) {
        snprintf(err, errlen, "unknown group %s (filtermail_socket_group)", group);
        return -1;
    }
    sock_gid = gr->gr_gid;
    path = socket_spec != NULL ? privs_socket_path(socket_spec, &addr) : NULL;
    if (path != NULL) {
        if (chown(path, pw->pw_uid, sock_gid) < 0 || chmod(path, 0660) < 0) {
            snprintf(err, errlen, "cannot give socket %s to %s:%s: %s", path, user, group,
                     strerror(errno));
            return -1;
        }
    }
    if (setgroups(1, &pw->pw_gid) < 0 || setresgid(pw->pw_gid, pw->pw_gid, pw->pw_gid) < 0 ||
        setresuid(pw->pw_uid, pw->pw_uid, pw->pw_uid) < 0) {
        snprintf(err, errlen, "cannot switch to user %s: %s", user, strerror(errno));
        return -1;
    }
    if (setuid(0) == 0 || geteuid() == 0) {
        snprintf(err, errlen, "could regain root after switching to %s", user);
        return -1;
    }
    return 0;
}
