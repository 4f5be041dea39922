/* rejected: the bounded store of DKIM-rejected messages. */
#include "rejected.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "array.h"
#include "fdio.h"
#include "fileio.h"

struct rejected_store {
    int dirfd;
    uint32_t max_files;
    uint64_t max_bytes;
    pthread_mutex_t lock; /* naming and rotation */
    unsigned long serial;
};

struct entry {
    char name[128];
    struct timespec mtime;
    uint64_t size;
};

struct rejected_store *rejected_open(const char *dir, uint32_t max_files, uint64_t max_bytes,
                                     uid_t uid, gid_t gid, char *err, size_t errlen)
{
    struct rejected_store *s;

    if (mkdir(dir, 0700) == 0) {
        if (chown(dir, uid, gid) < 0) {
            snprintf(err, errlen, "filtermail_rejected_dir %s: chown: %s", dir, strerror(errno));
            return NULL;
        }
    } else if (errno != EEXIST) {
        snprintf(err, errlen, "filtermail_rejected_dir %s: %s", dir, strerror(errno));
        return NULL;
    }
    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (s->dirfd < 0) {
        snprintf(err, errlen, "filtermail_rejected_dir %s: %s", dir, strerror(errno));
        free(s);
        return NULL;
    }
    s->max_files = max_files;
    s->max_bytes = max_bytes;
    pthread_mutex_init(&s->lock, NULL);
    return s;
}

void rejected_close(struct rejected_store **sp)
{
    struct rejected_store *s = *sp;
    if (s == NULL)
        return;
    close(s->dirfd);
    pthread_mutex_destroy(&s->lock);
    free(s);
    *sp = NULL;
}

void rejected_spool_init(struct rejected_spool *sp)
{
    memset(sp, 0, sizeof(*sp));
    sp->fd = -1;
}

void rejected_spool_discard(struct rejected_spool *sp)
{
    if (sp->fd >= 0)
        close(sp->fd);
    free(sp->mem);
    rejected_spool_init(sp);
}

void rejected_spool_begin(struct rejected_store *s, struct rejected_spool *sp)
{
    rejected_spool_discard(sp);
    sp->on = s != NULL;
}

/* Stops spooling this message, remembering why. */
static void spool_drop(struct rejected_spool *sp, bool too_large, int err)
{
    rejected_spool_discard(sp);
    sp->too_large = too_large;
    sp->err = err;
}

/* An unnamed file in the store's directory: O_TMPFILE, or where the file
 * system lacks it a file created and unlinked at once. */
static int spool_open(struct rejected_store *s)
{
    static atomic_ulong n;
    char name[64];
    int fd = openat(s->dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0 || (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL))
        return fd;
    snprintf(name, sizeof(name), ".spool.%ld.%lu", (long)getpid(), atomic_fetch_add(&n, 1));
    fd = openat(s->dirfd, name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0)
        unlinkat(s->dirfd, name, 0);
    return fd;
}

/* Moves the message from memory into an unnamed file. Returns 0 or -1. */
static int spool_to_file(struct rejected_store *s, struct rejected_spool *sp)
{
    sp->fd = spool_open(s);
    if (sp->fd < 0 || fd_write_all(sp->fd, sp->mem, (size_t)sp->bytes) < 0) {
        spool_drop(sp, false, errno);
        return -1;
    }
    free(sp->mem);
    sp->mem = NULL;
    sp->memcap = 0;
    return 0;
}

void rejected_spool_write(struct rejected_store *s, struct rejected_spool *sp, const void *data,
                          size_t len)
{
    if (!sp->on || len == 0)
        return;
    if (len > s->max_bytes || sp->bytes > s->max_bytes - len) {
        spool_drop(sp, true, 0);
        return;
    }
    if (sp->fd < 0 && sp->bytes + len <= REJECTED_MEM_MAX) {
        unsigned char *m = array_grow(sp->mem, 1, sp->memcap, (size_t)sp->bytes + len,
                                      REJECTED_MEM_MAX, &sp->memcap);
        if (m == NULL) {
            spool_drop(sp, false, ENOMEM);
            return;
        }
        sp->mem = m;
        memcpy(sp->mem + sp->bytes, data, len);
        sp->bytes += len;
        return;
    }
    if (sp->fd < 0 && spool_to_file(s, sp) < 0)
        return;
    if (fd_write_all(sp->fd, data, len) < 0) {
        spool_drop(sp, false, errno);
        return;
    }
    sp->bytes += len;
}

static int older(const void *a, const void *b)
{
    const struct entry *x = a, *y = b;
    if (x->mtime.tv_sec != y->mtime.tv_sec)
        return x->mtime.tv_sec < y->mtime.tv_sec ? -1 : 1;
    if (x->mtime.tv_nsec != y->mtime.tv_nsec)
        return x->mtime.tv_nsec < y->mtime.tv_nsec ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Deletes the oldest .eml files in the reason directory until the caps hold. */
static void rotate(struct rejected_store *s, int rfd)
{
    int fd = dup(rfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    struct entry *e = NULL;
    size_t n = 0, cap = 0;
    uint64_t total = 0;
    struct dirent *de;

    if (d == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        size_t l = strlen(de->d_name);
        if (l < 5 || l >= sizeof(e->name) || strcmp(de->d_name + l - 4, ".eml") != 0)
            continue;
        if (fstatat(rfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            continue;
        struct entry *ne = array_grow(e, sizeof(*e), cap, n + 1, SIZE_MAX, &cap);
        if (ne == NULL)
            break;
        e = ne;
        snprintf(e[n].name, sizeof(e[n].name), "%s", de->d_name);
        e[n].mtime = st.st_mtim;
        e[n].size = (uint64_t)st.st_size;
        total += e[n].size;
        n++;
    }
    closedir(d);
    qsort(e, n, sizeof(*e), older);
    for (size_t i = 0; i < n && (n - i > s->max_files || total > s->max_bytes); i++) {
        if (unlinkat(rfd, e[i].name, 0) == 0)
            total -= e[i].size;
    }
    free(e);
}

/* Copies the spooled message to fd. Returns 0 or -1 (errno). */
static int spool_copy(const struct rejected_spool *sp, int fd)
{
    char chunk[65536];
    if (sp->fd < 0)
        return fd_write_all(fd, sp->mem, (size_t)sp->bytes);
    for (uint64_t off = 0; off < sp->bytes;) {
        size_t want = sp->bytes - off < sizeof(chunk) ? (size_t)(sp->bytes - off) : sizeof(chunk);
        ssize_t n = pread(sp->fd, chunk, want, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            if (n == 0)
                errno = EIO; /* the spool is shorter than what was written */
            return -1;
        }
        if (fd_write_all(fd, chunk, (size_t)n) < 0)
            return -1;
        off += (uint64_t)n;
    }
    return 0;
}

int rejected_keep(struct rejected_store *s, struct rejected_spool *sp, const char *reason,
                  const char *qid, char *out, size_t outlen)
{
    char id[32], name[128], ferr[128];
    size_t o = 0;
    int rfd, rc = -1;

    if (!sp->on) {
        if (sp->too_large)
            snprintf(out, outlen, "too large to keep");
        else
            snprintf(out, outlen, "not spooled: %s", sp->err != 0 ? strerror(sp->err) : "off");
        rejected_spool_discard(sp);
        return -1;
    }
    for (const char *p = qid; *p != '\0' && o + 1 < sizeof(id); p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9'))
            id[o++] = *p;
    }
    id[o] = '\0';

    pthread_mutex_lock(&s->lock);
    if (mkdirat(s->dirfd, reason, 0700) < 0 && errno != EEXIST) {
        snprintf(out, outlen, "%s: %s", reason, strerror(errno));
        goto done;
    }
    rfd = openat(s->dirfd, reason, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (rfd < 0) {
        snprintf(out, outlen, "%s: %s", reason, strerror(errno));
        goto done;
    }
    snprintf(name, sizeof(name), "%lld-%s-%lu.eml", (long long)time(NULL),
             id[0] != '\0' ? id : "NOQUEUE", ++s->serial);
    /* Written as every file is (fileio.h): whole, synced, then named. */
    struct fileio_atomic w;
    if (fileio_atomic_begin(&w, rfd, name, 0600, ferr, sizeof(ferr)) < 0) {
        snprintf(out, outlen, "%s/%s: %s", reason, name, ferr);
    } else if (spool_copy(sp, w.fd) < 0) {
        snprintf(out, outlen, "%s/%s: %s", reason, name, strerror(errno));
        fileio_atomic_abort(&w);
    } else if (fileio_atomic_commit(&w, ferr, sizeof(ferr)) < 0) {
        snprintf(out, outlen, "%s/%s: %s", reason, name, ferr);
    } else {
        snprintf(out, outlen, "%s/%s", reason, name);
        rotate(s, rfd);
        rc = 0;
    }
    close(rfd);
done:
    pthread_mutex_unlock(&s->lock);
    rejected_spool_discard(sp);
    return rc;
}
