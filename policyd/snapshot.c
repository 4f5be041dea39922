/* snapshot: the rate-limit state file; see snapshot.h. */
#include "snapshot.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "clock.h"
#include "fileio.h"
#include "log.h"

#define TARGET "filtermail::policyd"

struct snapshot {
    char *path;
    pid_t saver;       /* a child writing the state, or -1 */
    unsigned failures; /* failed saves in a row */
    bool dirty;        /* the table changed since the last save started */
    uint64_t next;     /* the next periodic save (monotonic ns), 0: not yet set */
};

struct snapshot *snapshot_new(const char *path)
{
    struct snapshot *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->path = strdup(path);
    if (s->path == NULL) {
        free(s);
        return NULL;
    }
    s->saver = -1;
    return s;
}

/* Waits for (block) or looks at (!block) the background writer. */
static void snapshot_reap(struct snapshot *s, bool block)
{
    int st;

    if (s->saver < 0 || waitpid(s->saver, &st, block ? 0 : WNOHANG) != s->saver)
        return;
    s->saver = -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        s->dirty = true; /* it logged why; try again next time */
        s->failures++;
    } else {
        s->failures = 0;
    }
}

void snapshot_free(struct snapshot **sp)
{
    struct snapshot *s = *sp;
    if (s == NULL)
        return;
    snapshot_reap(s, true);
    free(s->path);
    free(s);
    *sp = NULL;
}

void snapshot_touch(struct snapshot *s)
{
    s->dirty = true;
}

bool snapshot_dirty(const struct snapshot *s)
{
    return s->dirty;
}

/* Writes the state file. Returns 0 or -1 (logged). */
static int snapshot_write(const struct snapshot *s, const struct ratelimit *rl, const char *why)
{
    struct fileio_atomic w;
    char err[256];
    FILE *f = NULL;
    int fd;
    long n;

    if (fileio_atomic_begin(&w, AT_FDCWD, s->path, 0600, err, sizeof(err)) < 0) {
        if (s->failures % 10 == 0)
            log_err(TARGET, "cannot save the rate-limit state to %s: %s", s->path, err);
        return -1;
    }
    fd = dup(w.fd);
    if (fd < 0 || (f = fdopen(fd, "w")) == NULL) {
        snprintf(err, sizeof(err), "%s", strerror(errno));
        if (fd >= 0)
            close(fd);
        goto fail;
    }
    n = ratelimit_save(rl, f, clock_mono_ns(), clock_wall_ns());
    if (n < 0 || fflush(f) != 0) {
        snprintf(err, sizeof(err), "%s", strerror(errno));
        fclose(f);
        goto fail;
    }
    if (fclose(f) != 0) {
        snprintf(err, sizeof(err), "%s", strerror(errno));
        goto fail;
    }
    if (fileio_atomic_commit(&w, err, sizeof(err)) < 0) {
        log_err(TARGET, "cannot save the rate-limit state to %s: %s", s->path, err);
        return -1;
    }
    log_debug(TARGET, "saved %ld senders to %s (%s)", n, s->path, why);
    return 0;
fail:
    fileio_atomic_abort(&w);
    log_err(TARGET, "cannot save the rate-limit state to %s: %s", s->path, err);
    return -1;
}

void snapshot_save_background(struct snapshot *s, const struct ratelimit *rl, const char *why)
{
    pid_t pid;

    if (s->path[0] == '\0' || s->saver >= 0)
        return;
    pid = fork();
    if (pid == 0)
        _exit(snapshot_write(s, rl, why) == 0 ? 0 : 1);
    if (pid < 0) {
        if (snapshot_write(s, rl, why) == 0)
            s->dirty = false;
        return;
    }
    s->saver = pid;
    s->dirty = false;
}

void snapshot_tick(struct snapshot *s, const struct ratelimit *rl, uint64_t now_mono)
{
    snapshot_reap(s, false);
    if (s->next == 0)
        s->next = now_mono + SNAPSHOT_EVERY * CLOCK_NS_PER_SEC;
    if (now_mono < s->next)
        return;
    if (s->dirty)
        snapshot_save_background(s, rl, "periodic");
    s->next = now_mono + SNAPSHOT_EVERY * CLOCK_NS_PER_SEC;
}

int snapshot_save(struct snapshot *s, const struct ratelimit *rl, const char *why)
{
    if (s->path[0] == '\0')
        return 0;
    snapshot_reap(s, true);
    if (snapshot_write(s, rl, why) < 0)
        return -1;
    s->dirty = false;
    return 0;
}

long snapshot_load(struct snapshot *s, struct ratelimit *rl, uint64_t now_mono, uint64_t now_wall)
{
    char err[256];
    FILE *f;
    long n;

    if (s->path[0] == '\0')
        return 0;
    f = fopen(s->path, "re");
    if (f == NULL) {
        if (errno != ENOENT)
            log_warn(TARGET, "cannot read the rate-limit state %s: %s; starting empty", s->path,
                     strerror(errno));
        return 0;
    }
    n = ratelimit_load(rl, f, now_mono, now_wall, err, sizeof(err));
    fclose(f);
    if (n < 0) {
        log_warn(TARGET, "ignoring the rate-limit state %s: %s", s->path, err);
        return 0;
    }
    log_info(TARGET, "restored %ld senders from %s", n, s->path);
    return n;
}
