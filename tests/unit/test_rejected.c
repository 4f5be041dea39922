/* The store of DKIM-rejected messages: naming, mode, caps. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rejected.h"
#include "unit.h"

static char dir[] = "/tmp/filtermail-rejected-XXXXXX";

static size_t count_files(const char *sub, unsigned long long *bytes)
{
    char p[256];
    size_t n = 0;
    struct dirent *de;
    snprintf(p, sizeof(p), "%s/%s", dir, sub);
    DIR *d = opendir(p);
    *bytes = 0;
    if (d == NULL)
        return 0;
    while ((de = readdir(d)) != NULL) {
        struct stat st;
        char f[600];
        if (de->d_name[0] == '.')
            continue;
        snprintf(f, sizeof(f), "%s/%s", p, de->d_name);
        if (stat(f, &st) == 0) {
            *bytes += (unsigned long long)st.st_size;
            n++;
        }
    }
    closedir(d);
    return n;
}

static int keep(struct rejected_store *s, const char *text, const char *qid, char *out,
                size_t outlen)
{
    struct rejected_spool sp;
    rejected_spool_init(&sp);
    rejected_spool_begin(s, &sp);
    CHECK(sp.on);
    rejected_spool_write(s, &sp, text, strlen(text));
    return rejected_keep(s, &sp, "dkim-verify", qid, out, outlen);
}

static void test_keep_and_caps(void)
{
    char err[256], out[512], path[1024];
    unsigned long long bytes;
    struct stat st;
    struct rejected_store *s = rejected_open(dir, 3, 1000, getuid(), getgid(), err, sizeof(err));

    CHECK(s != NULL);
    if (s == NULL)
        return;
    /* Named uniquely even within one second; mode 0600; content intact. */
    CHECK_INT(keep(s, "Subject: one\r\n\r\nbody\r\n", "4AbC1", out, sizeof(out)), 0);
    CHECKF(strncmp(out, "dkim-verify/", 12) == 0 && strstr(out, "-4AbC1-") != NULL, "%s", out);
    snprintf(path, sizeof(path), "%s/%s", dir, out);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600);
    size_t len;
    char *got = unit_read_file(path, &len);
    CHECK(got != NULL && len == 22 && memcmp(got, "Subject: one\r\n\r\nbody\r\n", 22) == 0);
    free(got);
    /* A queue id from the wire cannot name a path. */
    CHECK_INT(keep(s, "x", "../../etc/passwd", out, sizeof(out)), 0);
    CHECKF(strchr(out + 12, '/') == NULL && strstr(out, "etcpasswd") != NULL, "%s", out);
    /* At most 3 files: the oldest go. */
    for (int i = 0; i < 5; i++)
        CHECK_INT(keep(s, "y", "Q", out, sizeof(out)), 0);
    CHECK_INT(count_files("dkim-verify", &bytes), 3);
    /* At most 1000 bytes in all. */
    char big[600];
    memset(big, 'b', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_INT(keep(s, big, "B1", out, sizeof(out)), 0);
    CHECK_INT(keep(s, big, "B2", out, sizeof(out)), 0);
    count_files("dkim-verify", &bytes);
    CHECKF(bytes <= 1000, "%llu bytes kept", bytes);
    /* A message over the cap is not kept at all. */
    char huge[1200];
    memset(huge, 'h', sizeof(huge) - 1);
    huge[sizeof(huge) - 1] = '\0';
    CHECK_INT(keep(s, huge, "H", out, sizeof(out)), -1);
    CHECK_STR(out, "too large to keep");
    CHECK_INT(count_files("", &bytes), 1); /* only the reason directory */
    rejected_close(&s);
}

/* A message that fits REJECTED_MEM_MAX is spooled in memory (no file for a
 * message that passes); a larger one moves to an unnamed file; both are kept
 * intact, and a discarded spool leaves nothing behind. */
static void test_small_in_memory_large_on_disk(void)
{
    char err[256], out[512], path[1024];
    unsigned long long bytes;
    struct rejected_store *s =
        rejected_open(dir, 10, 10 * REJECTED_MEM_MAX, getuid(), getgid(), err, sizeof(err));
    CHECK(s != NULL);
    if (s == NULL)
        return;
    size_t before = count_files("dkim-verify", &bytes);
    static char text[3 * REJECTED_MEM_MAX];
    for (size_t i = 0; i < sizeof(text); i++)
        text[i] = (char)('a' + i % 26);
    static const size_t sizes[] = {1, 1000, REJECTED_MEM_MAX, REJECTED_MEM_MAX + 1,
                                   3 * REJECTED_MEM_MAX};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t n = sizes[k];
        bool small = n <= REJECTED_MEM_MAX;
        struct rejected_spool sp;
        rejected_spool_init(&sp);
        rejected_spool_begin(s, &sp);
        for (size_t o = 0; o < n; o += 1000)
            rejected_spool_write(s, &sp, text + o, n - o < 1000 ? n - o : 1000);
        CHECKF(small ? sp.fd == -1 : sp.fd >= 0, "%zu bytes: fd %d", n, sp.fd);
        CHECK_INT(rejected_keep(s, &sp, "dkim-verify", "Q1", out, sizeof(out)), 0);
        snprintf(path, sizeof(path), "%s/%s", dir, out);
        size_t len;
        char *got = unit_read_file(path, &len);
        CHECKF(len == n && memcmp(got, text, n) == 0, "%zu bytes kept as %zu", n, len);
        free(got);
        unlink(path);
    }
    /* Discarded: from memory nothing was ever written; a file's descriptor
     * is closed (an unnamed file is never in a listing). */
    struct rejected_spool sp;
    rejected_spool_init(&sp);
    rejected_spool_begin(s, &sp);
    rejected_spool_write(s, &sp, text, sizeof(text));
    int spool_fd = sp.fd;
    CHECK(spool_fd >= 0);
    rejected_spool_discard(&sp);
    CHECK_INT(sp.fd, -1);
    CHECK(sp.mem == NULL && !sp.on);
    errno = 0;
    CHECK(fcntl(spool_fd, F_GETFD) == -1 && errno == EBADF);
    CHECK_INT(count_files("dkim-verify", &bytes), before);
    /* Off (no store): nothing is spooled, keep says so. */
    rejected_spool_begin(NULL, &sp);
    CHECK(!sp.on);
    rejected_close(&s);
}

static void test_bad_dir(void)
{
    char err[256];
    CHECK(rejected_open("/nonexistent/dir/x", 1, 1, getuid(), getgid(), err, sizeof(err)) == NULL);
    CHECKF(strstr(err, "filtermail_rejected_dir") != NULL, "%s", err);
}

int main(void)
{
    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 1;
    }
    UNIT_RUN(test_keep_and_caps);
    UNIT_RUN(test_small_in_memory_large_on_disk);
    UNIT_RUN(test_bad_dir);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return unit_summary();
}
