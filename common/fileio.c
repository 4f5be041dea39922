/* fileio: bounded whole-file reads and atomic replacement; see fileio.h. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fdio.h"

/* Sets errno to e, writes the message (when wanted), returns -1. */
static int fileio_fail(int e, char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg != NULL ? msg : strerror(e));
    errno = e;
    return -1;
}

int fileio_read(int dirfd, const char *path, int extra_flags, size_t max, char **text_r,
                size_t *len_r, char *err, size_t errlen)
{
    struct stat st;
    char *text = NULL, msg[64];
    size_t len = 0, cap;
    int fd, e;

    *text_r = NULL;
    *len_r = 0;
    if (max > SIZE_MAX / 2)
        max = SIZE_MAX / 2;
    fd = openat(dirfd, path, O_RDONLY | O_CLOEXEC | extra_flags);
    if (fd < 0)
        return fileio_fail(errno, err, errlen, NULL);
    if (fstat(fd, &st) < 0) {
        e = errno;
        close(fd);
        return fileio_fail(e, err, errlen, NULL);
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return fileio_fail(EINVAL, err, errlen, "not a regular file");
    }
    snprintf(msg, sizeof(msg), "larger than %zu bytes", max);
    if ((uint64_t)st.st_size > max) {
        close(fd);
        return fileio_fail(EFBIG, err, errlen, msg);
    }
    /* Read to the end, not to the size fstat saw: a file that grew since is
     * still bounded by max, one that shrank is read as it is now. One byte
     * more than the size lets the end be seen without growing. */
    cap = (size_t)st.st_size + 2;
    for (;;) {
        if (text == NULL || len == cap - 1) {
            size_t ncap = text == NULL ? cap : cap * 2;
            if (ncap > max + 2)
                ncap = max + 2; /* room for one byte too many, to see it */
            char *p = realloc(text, ncap);
            if (p == NULL) {
                free(text);
                close(fd);
                return fileio_fail(ENOMEM, err, errlen, NULL);
            }
            text = p;
            cap = ncap;
        }
        ssize_t n = read(fd, text + len, cap - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            e = errno;
            free(text);
            close(fd);
            return fileio_fail(e, err, errlen, NULL);
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len > max) {
            free(text);
            close(fd);
            return fileio_fail(EFBIG, err, errlen, msg);
        }
    }
    close(fd);
    text[len] = '\0';
    *text_r = text;
    *len_r = len;
    return 0;
}

/* The directory part of name ("." when there is none), for O_TMPFILE and the
 * directory sync. */
static void fileio_dir_of(const char *name, char *out, size_t outlen)
{
    const char *slash = strrchr(name, '/');
    if (slash == NULL)
        snprintf(out, outlen, ".");
    else if (slash == name)
        snprintf(out, outlen, "/");
    else
        snprintf(out, outlen, "%.*s", (int)(slash - name), name);
}

int fileio_atomic_begin(struct fileio_atomic *w, int dirfd, const char *name, mode_t mode,
                        char *err, size_t errlen)
{
    static atomic_uint counter;
    char dir[4096];
    size_t n = strlen(name);

    memset(w, 0, sizeof(*w));
    w->fd = -1;
    w->dirfd = dirfd;
    if (n == 0 || n >= sizeof(w->name) || name[n - 1] == '/')
        return fileio_fail(EINVAL, err, errlen, "not a file name");
    memcpy(w->name, name, n + 1);
    snprintf(w->tmp, sizeof(w->tmp), "%s.%ld.%u" FILEIO_TMP_SUFFIX, name, (long)getpid(),
             atomic_fetch_add(&counter, 1));
    fileio_dir_of(name, dir, sizeof(dir));
    /* Read-write, so that commit can copy it should linkat be refused. */
    w->fd = openat(dirfd, dir, O_TMPFILE | O_RDWR | O_CLOEXEC, mode);
    if (w->fd >= 0) {
        fchmod(w->fd, mode); /* O_TMPFILE's mode goes through the umask */
        return 0;
    }
    w->named = 1;
    w->fd = openat(dirfd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (w->fd < 0)
        return fileio_fail(errno, err, errlen, NULL);
    return 0;
}

/* Copies the unnamed file's content into a new file named w->tmp. */
static int fileio_copy_to_named(struct fileio_atomic *w)
{
    char buf[65536];
    off_t off = 0;
    struct stat st;
    int out = openat(w->dirfd, w->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);

    if (out < 0)
        return -1;
    if (fstat(w->fd, &st) < 0 || fchmod(out, st.st_mode & 07777) < 0)
        goto fail;
    for (;;) {
        ssize_t n = pread(w->fd, buf, sizeof(buf), off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        if (fd_write_all(out, buf, (size_t)n) < 0)
            goto fail;
        off += n;
    }
    if (fsync(out) < 0 || close(out) < 0) {
        out = -1;
        goto fail;
    }
    return 0;
fail : {
    int e = errno;
    if (out >= 0)
        close(out);
    unlinkat(w->dirfd, w->tmp, 0);
    errno = e;
    return -1;
}
}

int fileio_atomic_commit(struct fileio_atomic *w, char *err, size_t errlen)
{
    char proc[64], dir[4096];
    int e, dfd;

    if (!w->no_sync && fsync(w->fd) < 0) {
        e = errno;
        fileio_atomic_abort(w);
        return fileio_fail(e, err, errlen, NULL);
    }
    if (!w->named) {
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", w->fd);
        if (linkat(AT_FDCWD, proc, w->dirfd, w->tmp, AT_SYMLINK_FOLLOW) < 0 &&
            fileio_copy_to_named(w) < 0) {
            e = errno;
            fileio_atomic_abort(w);
            return fileio_fail(e, err, errlen, NULL);
        }
        w->named = 1; /* from here on there is a name to remove on failure */
    }
    if (close(w->fd) < 0) {
        e = errno;
        w->fd = -1;
        fileio_atomic_abort(w);
        return fileio_fail(e, err, errlen, NULL);
    }
    w->fd = -1;
    if (renameat(w->dirfd, w->tmp, w->dirfd, w->name) < 0) {
        e = errno;
        fileio_atomic_abort(w);
        return fileio_fail(e, err, errlen, NULL);
    }
    /* The rename itself is durable once the directory is synced; a failure
     * here (some file systems refuse fsync on directories) changes nothing
     * readers see, so it is not reported. */
    fileio_dir_of(w->name, dir, sizeof(dir));
    dfd = w->no_sync ? -1 : openat(w->dirfd, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    w->named = 0;
    return 0;
}

void fileio_atomic_abort(struct fileio_atomic *w)
{
    int e = errno;
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
    if (w->named)
        unlinkat(w->dirfd, w->tmp, 0);
    w->named = 0;
    errno = e;
}

int fileio_write_atomic(int dirfd, const char *name, mode_t mode, const void *data, size_t len,
                        char *err, size_t errlen)
{
    struct fileio_atomic w;
    int e;

    if (fileio_atomic_begin(&w, dirfd, name, mode, err, errlen) < 0)
        return -1;
    if (fd_write_all(w.fd, data, len) < 0) {
        e = errno;
        fileio_atomic_abort(&w);
        return fileio_fail(e, err, errlen, NULL);
    }
    return fileio_atomic_commit(&w, err, errlen);
}
