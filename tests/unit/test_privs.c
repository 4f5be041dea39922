/* Tests for common/privs.c: the unix socket is handed to the unprivileged
 * user and group whatever form its address took (a bare path once stayed
 * root:root, so Postfix could not connect), and root cannot be regained. */
#include "listener.h"
#include "privs.h"
#include "unit.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void test_socket_handed_over(void)
{
    static const char *const forms[] = {"unix:", "local:", ""};
    struct passwd *pw = getpwnam("nobody");
    struct group *gr = getgrnam("nogroup");

    if (geteuid() != 0 || pw == NULL || gr == NULL) {
        /* Said, not silent: the hand-over needs root and these names. */
        fprintf(stderr, "  skipped: needs root, the user nobody and the group nogroup\n");
        return;
    }
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        char dir[] = "/tmp/filtermail-privs-XXXXXX", spec[128], err[256];
        struct listener_addr a;
        struct listener l;
        struct stat st;
        int wst;

        CHECK(mkdtemp(dir) != NULL);
        snprintf(spec, sizeof(spec), "%s%s/s.sock", forms[i], dir);
        CHECK_INT(listener_parse(spec, &a, err, sizeof(err)), 0);
        CHECKF(listener_open(&l, &a, 4, 0, err, sizeof(err)) == 0, "%s", err);
        pid_t pid = fork();
        if (pid == 0) {
            int rc = privs_drop("nobody", spec, "nogroup", err, sizeof(err));
            _exit(rc == 0 && geteuid() == pw->pw_uid && getegid() == pw->pw_gid ? 0 : 1);
        }
        CHECKF(waitpid(pid, &wst, 0) == pid && WIFEXITED(wst) && WEXITSTATUS(wst) == 0, "%s",
               spec);
        CHECKF(stat(a.path, &st) == 0 && st.st_uid == pw->pw_uid && st.st_gid == gr->gr_gid &&
                   (st.st_mode & 07777) == 0660,
               "%s: %u:%u %o", spec, (unsigned)st.st_uid, (unsigned)st.st_gid,
               (unsigned)(st.st_mode & 07777));
        listener_close(&l);
        rmdir(dir);
    }
}

static void test_refuses_root(void)
{
    char err[256];
    if (geteuid() != 0) {
        fprintf(stderr, "  skipped: needs root\n");
        return;
    }
    pid_t pid = fork();
    if (pid == 0)
        _exit(privs_drop("root", NULL, "nogroup", err, sizeof(err)) == -1 &&
                      strstr(err, "refusing to run as root") != NULL
                  ? 0
                  : 1);
    int wst;
    CHECK(waitpid(pid, &wst, 0) == pid && WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
}

int main(void)
{
    UNIT_RUN(test_socket_handed_over);
    UNIT_RUN(test_refuses_root);
    return unit_summary();
}
