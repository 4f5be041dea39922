/* state: the shared host state and TLS session slots. */
#include "state.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "address.h"
#include "array.h"
#include "clock.h"
#include "fileio.h"
#include "fdio.h"

#define STATE_MAGIC "filtermail-transport-state 1"

static const char *const kind_names[] = {"https-refused", "down"};

void state_table_init(struct state_table *t)
{
    t->e = NULL;
    t->n = t->cap = 0;
}

void state_table_free(struct state_table *t)
{
    free(t->e);
    state_table_init(t);
}

static bool state_host_ok(const char *h)
{
    return strlen(h) < 256 && address_domain_name_ok(h);
}

static struct state_entry *state_find(const struct state_table *t, enum state_kind kind,
                                      const char *host, uint16_t port)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].kind == kind && t->e[i].port == port && strcmp(t->e[i].host, host) == 0)
            return &t->e[i];
    return NULL;
}

int state_set(struct state_table *t, enum state_kind kind, const char *host, uint16_t port,
              int64_t until)
{
    if (!state_host_ok(host))
        return -1;
    struct state_entry *e = state_find(t, kind, host, port);
    if (e == NULL) {
        if (t->n >= STATE_MAX_ENTRIES) {
            /* Full: the entry expiring first goes. */
            size_t victim = 0;
            for (size_t i = 1; i < t->n; i++)
                if (t->e[i].until < t->e[victim].until)
                    victim = i;
            e = &t->e[victim];
        } else {
            struct state_entry *ne =
                array_grow(t->e, sizeof(*t->e), t->cap, t->n + 1, STATE_MAX_ENTRIES, &t->cap);
            if (ne == NULL)
                return -1;
            t->e = ne;
            e = &t->e[t->n++];
        }
        e->kind = kind;
        e->port = port;
        snprintf(e->host, sizeof(e->host), "%s", host);
    }
    e->until = until;
    return 0;
}

bool state_clear(struct state_table *t, enum state_kind kind, const char *host, uint16_t port)
{
    struct state_entry *e = state_find(t, kind, host, port);
    if (e == NULL)
        return false;
    *e = t->e[--t->n];
    return true;
}

bool state_has(const struct state_table *t, enum state_kind kind, const char *host,
               uint16_t port, int64_t now)
{
    const struct state_entry *e = state_find(t, kind, host, port);
    return e != NULL && e->until > now;
}

/* Parses a decimal in [s, e) up to max. */
static bool state_number(const char *s, const char *e, uint64_t max, uint64_t *v_r)
{
    uint64_t v = 0;
    if (s == e || e - s > 20)
        return false;
    for (; s < e; s++) {
        if (*s < '0' || *s > '9')
            return false;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return false;
    }
    if (v > max)
        return false;
    *v_r = v;
    return true;
}

/* One line "kind host port until". Returns 1 (entry filled), 0 (bad). */
static int state_line(const char *s, const char *e, struct state_entry *out)
{
    const char *f[5];
    size_t fl[5], nf = 0;
    const char *p = s;
    while (p < e && nf < 5) {
        while (p < e && *p == ' ')
            p++;
        if (p == e)
            break;
        const char *start = p;
        while (p < e && *p != ' ')
            p++;
        f[nf] = start;
        fl[nf] = (size_t)(p - start);
        nf++;
    }
    if (nf != 4)
        return 0;
    int kind = -1;
    for (int k = 0; k < 2; k++)
        if (strlen(kind_names[k]) == fl[0] && memcmp(kind_names[k], f[0], fl[0]) == 0)
            kind = k;
    if (kind < 0 || fl[1] == 0 || fl[1] >= sizeof(out->host))
        return 0;
    memcpy(out->host, f[1], fl[1]);
    out->host[fl[1]] = '\0';
    if (!state_host_ok(out->host))
        return 0;
    uint64_t port, until;
    if (!state_number(f[2], f[2] + fl[2], 65535, &port) || port == 0 ||
        !state_number(f[3], f[3] + fl[3], (uint64_t)INT64_MAX, &until))
        return 0;
    out->kind = (enum state_kind)kind;
    out->port = (uint16_t)port;
    out->until = (int64_t)until;
    return 1;
}

int state_parse(const char *text, size_t len, int64_t now, struct state_table *t)
{
    const char *p = text, *end = text + len;
    int bad = 0;
    bool first = true;

    t->n = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        const char *s = p;
        p = nl != NULL ? nl + 1 : end;
        if (first) {
            first = false;
            if ((size_t)(le - s) == strlen(STATE_MAGIC) && memcmp(s, STATE_MAGIC, (size_t)(le - s)) == 0)
                continue;
            /* Another format or version: start afresh. */
            t->n = 0;
            return 1;
        }
        if (le == s)
            continue;
        struct state_entry e;
        if (!state_line(s, le, &e)) {
            bad++;
            continue;
        }
        if (e.until <= now)
            continue;
        if (state_set(t, e.kind, e.host, e.port, e.until) < 0)
            return -1;
    }
    return bad;
}

int state_format(const struct state_table *t, int64_t now, struct buf *out)
{
    char line[400];
    if (buf_puts(out, STATE_MAGIC "\n") < 0)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        const struct state_entry *e = &t->e[i];
        if (e->until <= now)
            continue;
        int n = snprintf(line, sizeof(line), "%s %s %u %lld\n", kind_names[e->kind], e->host,
                         (unsigned)e->port, (long long)e->until);
        if (n < 0 || (size_t)n >= sizeof(line) || buf_append(out, line, (size_t)n) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The directory. */

struct state_store {
    int dirfd;
    char dir[4096];
};

struct state_store *state_open(const char *dir, char *err, size_t errlen)
{
    struct state_store *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(s->dir, sizeof(s->dir), "%s", dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        free(s);
        return NULL;
    }
    s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        free(s);
        return NULL;
    }
    if (mkdirat(s->dirfd, "tls", 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s/tls: %s", dir, strerror(errno));
        close(s->dirfd);
        free(s);
        return NULL;
    }
    return s;
}

void state_close(struct state_store **sp)
{
    struct state_store *s = *sp;
    if (s == NULL)
        return;
    close(s->dirfd);
    free(s);
    *sp = NULL;
}

/* Replaces name with a and b written one after the other: readers see the
 * old or the new file, never a part (fileio's atomic writer), without the
 * fsyncs, on purpose: the state is advisory and written on nearly every
 * delivery (a TLS session), the fsyncs cost about 7 ms a write on ext4 here,
 * half a delivery, and after a crash a lost entry costs one full handshake
 * or one HTTPS attempt. state_sweep() removes what a process killed between
 * link and rename leaves. Returns 0, or -1 with errno. */
static int state_write_file(struct state_store *s, const char *name, const void *a, size_t alen,
                            const void *b, size_t blen)
{
    struct fileio_atomic w;
    if (fileio_atomic_begin(&w, s->dirfd, name, 0600, NULL, 0) < 0)
        return -1;
    w.no_sync = 1;
    if (fd_write_all(w.fd, a, alen) < 0 || fd_write_all(w.fd, b, blen) < 0) {
        fileio_atomic_abort(&w);
        return -1;
    }
    return fileio_atomic_commit(&w, NULL, 0);
}

/* Removes the temporary files in one directory that are older than
 * STATE_TMP_AGE: a writer renames its file within microseconds, so an older
 * one belongs to a process that was killed. */
static int sweep_dir(struct state_store *s, const char *sub, int64_t now)
{
    int removed = 0;
    int fd = openat(s->dirfd, sub, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return 0;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return 0;
    }
    const size_t sl = strlen(STATE_TMP_SUFFIX);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        struct stat st;
        if (n <= sl || strcmp(de->d_name + n - sl, STATE_TMP_SUFFIX) != 0)
            continue;
        if (fstatat(fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
            (int64_t)st.st_mtime <= now - STATE_TMP_AGE && unlinkat(fd, de->d_name, 0) == 0)
            removed++;
    }
    closedir(d);
    return removed;
}

int state_sweep(struct state_store *s, int64_t now)
{
    return sweep_dir(s, ".", now) + sweep_dir(s, "tls", now);
}

/* The hosts file into t; see state_load. err gets the reason. */
static int hosts_read(struct state_store *s, int64_t now, struct state_table *t, char *err,
                      size_t errlen)
{
    char *text, why[128];
    size_t len;
    t->n = 0;
    if (fileio_read(s->dirfd, "hosts", O_NOFOLLOW, STATE_MAX_FILE, &text, &len, why,
                    sizeof(why)) < 0) {
        /* None, or one nobody can use (the next update replaces it). */
        if (errno == ENOENT || errno == EFBIG || errno == EINVAL || errno == ELOOP)
            return 0;
        snprintf(err, errlen, "%s/hosts: %s", s->dir, why);
        return -1;
    }
    int rc = state_parse(text, len, now, t);
    free(text);
    if (rc < 0)
        snprintf(err, errlen, "out of memory");
    return rc < 0 ? -1 : 0;
}

int state_load(struct state_store *s, int64_t now, struct state_table *t)
{
    char err[300];
    return hosts_read(s, now, t, err, sizeof(err));
}

int state_update(struct state_store *s, int64_t now, const struct state_op *ops, size_t nops,
                 char *err, size_t errlen)
{
    struct state_table t;
    struct buf out;
    int rc = -1;
    bool changed = false;

    if (nops == 0)
        return 0;
    state_table_init(&t);
    buf_init(&out, STATE_MAX_FILE);
    int lock = openat(s->dirfd, "hosts.lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock < 0) {
        snprintf(err, errlen, "%s/hosts.lock: %s", s->dir, strerror(errno));
        return -1;
    }
    /* Writers hold the lock for a read, a change and a rename; one that
     * cannot get it in STATE_LOCK_WAIT_MS gives up: the state is advisory,
     * and a delivery must not wait on another process without limit. */
    for (int waited = 0;; waited += 10) {
        if (flock(lock, LOCK_EX | LOCK_NB) == 0)
            break;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(err, errlen, "%s/hosts.lock: flock: %s", s->dir, strerror(errno));
            close(lock);
            return -1;
        }
        if (waited >= STATE_LOCK_WAIT_MS) {
            snprintf(err, errlen, "%s/hosts.lock: held by another process for %d ms; not updated",
                     s->dir, STATE_LOCK_WAIT_MS);
            close(lock);
            return -1;
        }
        const struct timespec pause = {.tv_nsec = 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    /* A file that could not be read is not replaced by what little of it
     * was read: that would drop every other host's entry. */
    if (hosts_read(s, now, &t, err, errlen) < 0)
        goto out;
    for (size_t i = 0; i < nops; i++) {
        const struct state_op *op = &ops[i];
        if (op->set) {
            struct state_entry *e = state_find(&t, op->kind, op->host, op->port);
            if (e != NULL && e->until == op->until)
                continue;
            if (state_set(&t, op->kind, op->host, op->port, op->until) == 0)
                changed = true;
        } else if (state_clear(&t, op->kind, op->host, op->port)) {
            changed = true;
        }
    }
    if (!changed) {
        rc = 0;
        goto out;
    }
    if (state_format(&t, now, &out) < 0) {
        snprintf(err, errlen, "state too large");
        goto out;
    }
    if (state_write_file(s, "hosts", out.data, out.len, NULL, 0) < 0) {
        snprintf(err, errlen, "%s/hosts: %s", s->dir, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    flock(lock, LOCK_UN);
    close(lock);
    if (rc == 0 && changed)
        state_sweep(s, now);
    state_table_free(&t);
    buf_free(&out);
    return rc;
}

/* FNV-1a: only spreads keys over the slots; a collision just loses a session. */
void state_session_slot(const char *key, char out[8])
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    snprintf(out, 8, "tls/%03x", (unsigned)(h % STATE_SESSION_SLOTS));
}

int state_session_load(struct state_store *s, const char *key, unsigned char **der_r,
                       size_t *len_r)
{
    char slot[8], *text;
    size_t kl = strlen(key), len;
    state_session_slot(key, slot);
    *der_r = NULL;
    if (fileio_read(s->dirfd, slot, O_NOFOLLOW, STATE_SESSION_MAX + 512, &text, &len, NULL, 0) < 0)
        return -1;
    if (len <= kl + 1 || memcmp(text, key, kl) != 0 || text[kl] != '\n') {
        free(text);
        return -1;
    }
    size_t n = len - kl - 1;
    memmove(text, text + kl + 1, n);
    *der_r = (unsigned char *)text;
    *len_r = n;
    return 0;
}

int state_session_save(struct state_store *s, const char *key, const unsigned char *der,
                       size_t len)
{
    char slot[8], head[600];
    if (len == 0 || len > STATE_SESSION_MAX || strchr(key, '\n') != NULL)
        return -1;
    int n = snprintf(head, sizeof(head), "%s\n", key);
    if (n < 0 || (size_t)n >= sizeof(head))
        return -1;
    state_session_slot(key, slot);
    /* Saves are frequent and host changes may be rare: one process in
     * STATE_SWEEP_EVERY also sweeps, so leftovers stay bounded either way. */
    if (getpid() % STATE_SWEEP_EVERY == 0)
        state_sweep(s, (int64_t)(clock_wall_ns() / CLOCK_NS_PER_SEC));
    return state_write_file(s, slot, head, (size_t)n, der, len);
}
