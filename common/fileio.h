/* fileio: whole small files read with a bound, and files replaced atomically.
 *
 * Every program reads small files (chatmail.ini, the transport's state and
 * TLS policy, the rate-limit snapshot) and replaces some; one reader and one
 * writer do it the same way everywhere:
 *
 *  - fileio_read() reads a regular file whole, at most `max` bytes. A read
 *    error is an error, never a shorter file returned as success.
 *  - fileio_atomic_begin() / _commit() write a new file and put it in place
 *    of the old one: readers see the old or the new file, never a part, and
 *    after commit returns the new one is on disk (fsync of the file and of
 *    the directory). The data goes into an unnamed file (O_TMPFILE) that gets
 *    a temporary name only just before the rename, so a process killed while
 *    writing leaves nothing behind. Where that does not work (a file system
 *    without O_TMPFILE, no /proc for linkat) the data goes into a named
 *    temporary file, "<name>.<pid>.<n>" FILEIO_TMP_SUFFIX, next to the target;
 *    a program that may be killed between the two can remove such names
 *    older than a few minutes.
 *
 * Library code: nothing is logged; failures return -1 with errno set and, when
 * err is not NULL, a message (without the file name) in err. Thread-safe (no
 * shared state but a counter for temporary names, which is atomic).
 */
#ifndef FILTERMAIL_FILEIO_H
#define FILTERMAIL_FILEIO_H

#include <stddef.h>
#include <sys/types.h>

#define FILEIO_TMP_SUFFIX ".tmp"

/* Reads the regular file `path` (relative to dirfd; AT_FDCWD for the current
 * directory, ignored for an absolute path), opened with O_RDONLY | O_CLOEXEC |
 * extra_flags (e.g. O_NOFOLLOW). On success returns 0, *text_r is a malloc'd
 * copy with a NUL after the *len_r bytes (the caller frees it). On failure
 * returns -1, *text_r is NULL and errno says why: what open(2) or read(2) said,
 * EFBIG when the file holds more than max bytes, EINVAL when it is not a
 * regular file; err (errlen bytes) gets a message such as "larger than 1048576
 * bytes". */
int fileio_read(int dirfd, const char *path, int extra_flags, size_t max, char **text_r,
                size_t *len_r, char *err, size_t errlen);

/* A file being written. Fields are private except fd, which the caller
 * writes the content to (blocking; fd_write_all() or fdopen(dup(fd))), and
 * no_sync, which the caller may set between begin and commit. */
struct fileio_atomic {
    int fd;
    int no_sync;        /* commit without the fsyncs: readers still see the old or
                         * the new file, but a crash may lose the new one (for
                         * advisory data written often, e.g. the transport's state) */
    int dirfd;       /* where name lives */
    char name[4096]; /* the target, relative to dirfd */
    char tmp[4200];  /* the temporary name, when one is used */
    int named;       /* the content is in tmp (the fallback) */
};

/* Starts replacing `name` (relative to dirfd, or absolute) with a new file of
 * this mode. Returns 0 with w->fd open for writing, or -1 (errno, err). On
 * success the caller ends with exactly one of commit or abort. */
int fileio_atomic_begin(struct fileio_atomic *w, int dirfd, const char *name, mode_t mode,
                        char *err, size_t errlen);

/* Syncs what was written to w->fd, closes it and renames the file over the
 * target, then syncs the directory. Returns 0, or -1 (errno, err) with the
 * target unchanged and nothing left behind. */
int fileio_atomic_commit(struct fileio_atomic *w, char *err, size_t errlen);

/* Gives up: closes w->fd and removes the temporary file; the target is
 * unchanged. */
void fileio_atomic_abort(struct fileio_atomic *w);

/* The whole of a write: data[0..len) replaces name. Returns 0 or -1 (errno,
 * err). */
int fileio_write_atomic(int dirfd, const char *name, mode_t mode, const void *data, size_t len,
                        char *err, size_t errlen);

#endif
