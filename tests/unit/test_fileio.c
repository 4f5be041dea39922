/* Tests for common/fileio.c: bounded reads and atomic replacement. */
#include "fileio.h"
#include "syscall_fault.h"
#include "unit.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof(dir), "/tmp/filtermail-fileio-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
}

/* The names in dir, counted, and whether one of them is a temporary file. */
static int count_files(int *tmp_r)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    int n = 0;
    *tmp_r = 0;
    if (d == NULL)
        return -1;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        n++;
        if (strstr(de->d_name, FILEIO_TMP_SUFFIX) != NULL)
            (*tmp_r)++;
    }
    closedir(d);
    return n;
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_read(void)
{
    char path[128], err[128], *text;
    size_t len;

    make_dir();
    snprintf(path, sizeof(path), "%s/a", dir);
    write_file(path, "hello\n");
    CHECK_INT(fileio_read(AT_FDCWD, path, 0, 100, &text, &len, err, sizeof(err)), 0);
    CHECK_INT(len, 6);
    CHECK_STR(text, "hello\n");
    free(text);

    /* Exactly max is fine; one byte more is not. */
    CHECK_INT(fileio_read(AT_FDCWD, path, 0, 6, &text, &len, err, sizeof(err)), 0);
    free(text);
    CHECK_INT(fileio_read(AT_FDCWD, path, 0, 5, &text, &len, err, sizeof(err)), -1);
    CHECK_INT(errno, EFBIG);
    CHECK_STR(err, "larger than 5 bytes");
    CHECK(text == NULL);

    /* Empty. */
    write_file(path, "");
    CHECK_INT(fileio_read(AT_FDCWD, path, 0, 6, &text, &len, err, sizeof(err)), 0);
    CHECK_INT(len, 0);
    CHECK_STR(text, "");
    free(text);

    /* Relative to a directory descriptor. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    write_file(path, "x");
    CHECK_INT(fileio_read(dfd, "a", O_NOFOLLOW, 6, &text, &len, NULL, 0), 0);
    CHECK_STR(text, "x");
    free(text);
    close(dfd);

    /* Missing, a directory, a symbolic link refused with O_NOFOLLOW. */
    snprintf(path, sizeof(path), "%s/missing", dir);
    CHECK_INT(fileio_read(AT_FDCWD, path, 0, 6, &text, &len, err, sizeof(err)), -1);
    CHECK_INT(errno, ENOENT);
    CHECK_STR(err, strerror(ENOENT));
    CHECK_INT(fileio_read(AT_FDCWD, dir, 0, 6, &text, &len, err, sizeof(err)), -1);
    CHECK_INT(errno, EINVAL);
    CHECK_STR(err, "not a regular file");
    snprintf(path, sizeof(path), "%s/link", dir);
    CHECK(symlink("a", path) == 0);
    CHECK_INT(fileio_read(AT_FDCWD, path, O_NOFOLLOW, 6, &text, &len, NULL, 0), -1);
    CHECK_INT(errno, ELOOP);
    remove_dir();
}

/* A regular file whose read fails is an error, not an empty or shorter file
 * (/proc/self/mem is regular and its first page is unmapped: EIO). */
static void test_read_error(void)
{
    char err[128], *text = (char *)1;
    size_t len = 99;
    CHECK_INT(fileio_read(AT_FDCWD, "/proc/self/mem", 0, 4096, &text, &len, err, sizeof(err)),
              -1);
    CHECK_INT(errno, EIO);
    CHECK(text == NULL);
    CHECK_INT(len, 0);
}

/* A file larger than fstat said (as /proc files are, at size 0) is read to
 * its end, within max. */
static void test_read_grows(void)
{
    char *text;
    size_t len;
    CHECK_INT(fileio_read(AT_FDCWD, "/proc/self/status", 0, 1 << 20, &text, &len, NULL, 0), 0);
    CHECK(len > 100 && strncmp(text, "Name:", 5) == 0 && strlen(text) == len);
    free(text);
    CHECK_INT(fileio_read(AT_FDCWD, "/proc/self/status", 0, 10, &text, &len, NULL, 0), -1);
    CHECK_INT(errno, EFBIG);
}

static void check_content(const char *name, const char *want, mode_t mode)
{
    char path[128], *text;
    size_t len;
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    CHECKF(fileio_read(AT_FDCWD, path, 0, 1 << 20, &text, &len, NULL, 0) == 0, "%s", name);
    CHECK_STR(text, want);
    free(text);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == mode);
}

static void test_atomic(void)
{
    char path[128], err[128];
    struct fileio_atomic w;
    int tmp;

    make_dir();
    snprintf(path, sizeof(path), "%s/state", dir);
    CHECK_INT(fileio_write_atomic(AT_FDCWD, path, 0640, "one\n", 4, err, sizeof(err)), 0);
    check_content("state", "one\n", 0640);
    CHECK_INT(fileio_write_atomic(AT_FDCWD, path, 0600, "two\n", 4, err, sizeof(err)), 0);
    check_content("state", "two\n", 0600);
    CHECK_INT(count_files(&tmp), 1);
    CHECK_INT(tmp, 0);

    /* While written, the old content is what readers see; abort keeps it. */
    CHECK_INT(fileio_atomic_begin(&w, AT_FDCWD, path, 0600, err, sizeof(err)), 0);
    CHECK(write(w.fd, "three\n", 6) == 6);
    check_content("state", "two\n", 0600);
    fileio_atomic_abort(&w);
    check_content("state", "two\n", 0600);
    CHECK_INT(count_files(&tmp), 1);

    /* Relative to a directory descriptor. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    CHECK_INT(fileio_write_atomic(dfd, "rel", 0600, "r", 1, err, sizeof(err)), 0);
    check_content("rel", "r", 0600);
    close(dfd);

    /* A directory that does not exist: an error, naming why. */
    snprintf(path, sizeof(path), "%s/no/such", dir);
    CHECK_INT(fileio_write_atomic(AT_FDCWD, path, 0600, "x", 1, err, sizeof(err)), -1);
    CHECK_INT(errno, ENOENT);
    CHECK_INT(fileio_atomic_begin(&w, AT_FDCWD, "", 0600, err, sizeof(err)), -1);
    remove_dir();
}

/* Without O_TMPFILE (a file system without it), and without linkat (no
 * /proc), the result is the same and nothing is left behind. */
static void test_atomic_fallbacks(void)
{
    static const struct {
        const char *name;
        int nr, arg;
        unsigned flag;
    } cases[] = {
        {"no O_TMPFILE", __NR_openat, 2, 020000000 /* __O_TMPFILE */},
        {"no linkat", __NR_linkat, 4, 0xffffffffu},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[128];
        int tmp, st;
        make_dir();
        snprintf(path, sizeof(path), "%s/state", dir);
        pid_t pid = fork();
        if (pid == 0) {
            char err[128];
            bool ok = syscall_fault(cases[i].nr, cases[i].arg, cases[i].flag, EOPNOTSUPP) == 0 &&
                      fileio_write_atomic(AT_FDCWD, path, 0640, "old", 3, err, sizeof(err)) == 0 &&
                      fileio_write_atomic(AT_FDCWD, path, 0640, "new", 3, err, sizeof(err)) == 0;
            _exit(ok ? 0 : 1);
        }
        CHECKF(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s",
               cases[i].name);
        check_content("state", "new", 0640);
        CHECKF(count_files(&tmp) == 1 && tmp == 0, "%s", cases[i].name);
        remove_dir();
    }
}

int main(void)
{
    UNIT_RUN(test_read);
    UNIT_RUN(test_read_error);
    UNIT_RUN(test_read_grows);
    UNIT_RUN(test_atomic);
    UNIT_RUN(test_atomic_fallbacks);
    return unit_summary();
}
