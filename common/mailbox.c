/* mailbox: safe lookups of enforceE2EEincoming and DISABLED flag files. */
#include "mailbox.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"

/* 1 when the flag exists, 0 when it does not, -1 on error. */
static int mailbox_flag(int dirfd, const char *flag)
{
    struct stat st;
    if (fstatat(dirfd, flag, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -1;
    if (S_ISLNK(st.st_mode)) {
        errno = ELOOP;
        return -1;
    }
    return 1;
}

int mailbox_lookup(const char *mailboxes_dir, const char *addr, struct mailbox_flags *flags_r)
{
    int rootfd, dirfd, e, r;

    /* An invalid address enforces E2EE and is not disabled (upstream's rule). */
    flags_r->enforce_e2ee = true;
    flags_r->disabled = false;
    if (!address_valid_mailbox(addr))
        return 0;
    flags_r->enforce_e2ee = false;

    rootfd = open(mailboxes_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        /* No mailboxes at all (a fresh relay): nothing can be flagged. */
        return (errno == ENOENT) ? 0 : -1;
    }
    dirfd = openat(rootfd, addr, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    e = errno;
    close(rootfd);
    if (dirfd < 0) {
        /* ENOTDIR: a plain file where a mailbox would be; ENAMETOOLONG: no such
         * mailbox can exist. Both mean "no mailbox". O_NOFOLLOW reports a
         * symlinked mailbox as ELOOP (or ENOTDIR on some kernels for O_PATH);
         * a symlink is checked explicitly below when ENOTDIR. */
        if (e == ENOENT || e == ENAMETOOLONG)
            return 0;
        if (e == ENOTDIR) {
            struct stat st;
            int fd = open(mailboxes_dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
            if (fd < 0)
                return -1;
            r = fstatat(fd, addr, &st, AT_SYMLINK_NOFOLLOW);
            close(fd);
            if (r == 0 && S_ISLNK(st.st_mode)) {
                errno = ELOOP;
                return -1;
            }
            return 0;
        }
        errno = e;
        return -1;
    }
    r = mailbox_flag(dirfd, "enforceE2EEincoming");
    if (r >= 0) {
        flags_r->enforce_e2ee = r == 1;
        r = mailbox_flag(dirfd, "DISABLED");
        if (r >= 0)
            flags_r->disabled = r == 1;
    }
    e = errno;
    close(dirfd);
    if (r < 0) {
        errno = e;
        return -1;
    }
    return 0;
}
