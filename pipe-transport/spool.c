/* spool: stdin into an unnamed file, in SMTP transparent form. */
#include "spool.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "clock.h"
#include "fdio.h"

#define SPOOL_CHUNK (64 * 1024)

void spool_encoder_init(struct spool_encoder *e)
{
    e->line_start = true;
    e->cr = false;
    e->eightbit = false;
}

size_t spool_encode(struct spool_encoder *e, const unsigned char *in, size_t n,
                    unsigned char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = in[i];
        if (e->cr) {
            /* CRLF, or a bare CR that ends a line as well. */
            out[o++] = '\r';
            out[o++] = '\n';
            e->cr = false;
            e->line_start = true;
            if (c == '\n')
                continue;
        }
        if (c == '\r') {
            e->cr = true;
            continue;
        }
        if (c == '\n') {
            out[o++] = '\r';
            out[o++] = '\n';
            e->line_start = true;
            continue;
        }
        if (e->line_start && c == '.')
            out[o++] = '.';
        if (c >= 0x80)
            e->eightbit = true;
        out[o++] = c;
        e->line_start = false;
    }
    return o;
}

size_t spool_encode_finish(struct spool_encoder *e, unsigned char *out)
{
    if (e->cr || !e->line_start) {
        e->cr = false;
        e->line_start = true;
        out[0] = '\r';
        out[1] = '\n';
        return 2;
    }
    return 0;
}

/* An unnamed file: nothing is left behind whatever happens to the process. */
static int spool_tmpfile(const char *dir)
{
    const char *dirs[2] = {dir, "/tmp"};
    for (size_t i = 0; i < 2; i++) {
        if (dirs[i] == NULL || dirs[i][0] == '\0')
            continue;
        int fd = open(dirs[i], O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
        if (fd >= 0)
            return fd;
        char path[4096];
        int n = snprintf(path, sizeof(path), "%s/filtermail-spool-XXXXXX", dirs[i]);
        if (n < 0 || (size_t)n >= sizeof(path))
            continue;
        fd = mkostemp(path, O_CLOEXEC);
        if (fd >= 0) {
            unlink(path);
            return fd;
        }
    }
    return -1;
}

struct spool_writer {
    struct spool_encoder enc;
    unsigned char *out;
    int fd;
    uint64_t size;
    EVP_MD_CTX *md;
};

static int spool_push(struct spool_writer *w, const unsigned char *in, size_t n)
{
    while (n > 0) {
        size_t take = n < SPOOL_CHUNK ? n : SPOOL_CHUNK;
        size_t o = spool_encode(&w->enc, in, take, w->out);
        if (fd_write_all(w->fd, w->out, o) < 0 || EVP_DigestUpdate(w->md, w->out, o) != 1)
            return -1;
        w->size += o;
        in += take;
        n -= take;
    }
    return 0;
}

static enum spool_status spool_run(int in_fd, const void *data, size_t len, const char *dir,
                                   uint64_t max_in, int64_t until_ms, struct spool *s, char *err,
                                   size_t errlen)
{
    struct spool_writer w = {.fd = -1};
    unsigned char *in = NULL;
    enum spool_status st = SPOOL_ERROR;
    uint64_t total = 0;

    s->fd = -1;
    s->size = 0;
    s->eightbit = false;
    spool_encoder_init(&w.enc);
    w.out = malloc(SPOOL_ENCODE_MAX(SPOOL_CHUNK));
    if (in_fd >= 0)
        in = malloc(SPOOL_CHUNK);
    w.md = EVP_MD_CTX_new();
    if (w.out == NULL || (in_fd >= 0 && in == NULL) || w.md == NULL ||
        EVP_DigestInit_ex(w.md, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    w.fd = spool_tmpfile(dir);
    if (w.fd < 0) {
        snprintf(err, errlen, "cannot create a temporary file in %s or /tmp: %s",
                 dir != NULL && dir[0] != '\0' ? dir : "(none)", strerror(errno));
        goto out;
    }
    if (in_fd < 0) {
        if (spool_push(&w, data, len) < 0) {
            snprintf(err, errlen, "writing the temporary file: %s", strerror(errno));
            goto out;
        }
    } else {
        for (;;) {
            /* A writer that stalls (or never ends) costs at most the
             * delivery's deadline, never a thread for ever. */
            int64_t left = until_ms - (int64_t)clock_mono_ms();
            struct pollfd pfd = {.fd = in_fd, .events = POLLIN};
            int r = left > 0 ? poll(&pfd, 1, left > 60000 ? 60000 : (int)left) : 0;
            if (r < 0 && errno == EINTR)
                continue;
            if (r == 0 && left > 60000)
                continue;
            if (r == 0) {
                snprintf(err, errlen, "the message did not arrive before the deadline");
                goto out;
            }
            ssize_t n = read(in_fd, in, SPOOL_CHUNK);
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            if (n < 0) {
                snprintf(err, errlen, "reading the message: %s", strerror(errno));
                goto out;
            }
            if (n == 0)
                break;
            total += (uint64_t)n;
            if (total > max_in) {
                snprintf(err, errlen, "message larger than %llu bytes",
                         (unsigned long long)max_in);
                st = SPOOL_TOO_BIG;
                goto out;
            }
            if (spool_push(&w, in, (size_t)n) < 0) {
                snprintf(err, errlen, "writing the temporary file: %s", strerror(errno));
                goto out;
            }
        }
    }
    size_t o = spool_encode_finish(&w.enc, w.out);
    if (fd_write_all(w.fd, w.out, o) < 0 || EVP_DigestUpdate(w.md, w.out, o) != 1 ||
        EVP_DigestFinal_ex(w.md, s->digest, NULL) != 1) {
        snprintf(err, errlen, "writing the temporary file: %s", strerror(errno));
        goto out;
    }
    w.size += o;
    s->fd = w.fd;
    s->size = w.size;
    s->eightbit = w.enc.eightbit;
    w.fd = -1;
    st = SPOOL_OK;
out:
    if (w.fd >= 0)
        close(w.fd);
    EVP_MD_CTX_free(w.md);
    free(w.out);
    free(in);
    return st;
}

enum spool_status spool_from_fd(int in_fd, const char *dir, uint64_t max_in, int64_t until_ms,
                                struct spool *s, char *err, size_t errlen)
{
    return spool_run(in_fd, NULL, 0, dir, max_in, until_ms, s, err, errlen);
}

enum spool_status spool_from_bytes(const void *data, size_t len, const char *dir,
                                   struct spool *s, char *err, size_t errlen)
{
    return spool_run(-1, data, len, dir, UINT64_MAX, INT64_MAX, s, err, errlen);
}

long spool_read(const struct spool *s, uint64_t off, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = pread(s->fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        return (long)n;
    }
}

void spool_close(struct spool *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
}
