/* Tests for pipe-transport/state.c: the shared host state and TLS slots. */
#include "state.h"
#include "syscall_fault.h"
#include "unit.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void test_parse_format(void)
{
    struct state_table t;
    struct buf b;
    state_table_init(&t);
    const char *text = "filtermail-transport-state 1\n"
                       "https-refused mx.example.org 443 2000\n"
                       "down mx.example.org 25 3000\n"
                       "down expired.example.org 25 500\n"
                       "bogus line\n"
                       "down bad/host 25 3000\n"
                       "down mx.example.org 0 3000\n"
                       "down mx.example.org 70000 3000\n"
                       "down mx.example.org 25 -1\n"
                       "down mx.example.org 25 3000 extra\n"
                       "\n"
                       "down mx2.example.org 25 99999999999999999999999\n";
    CHECK_INT(state_parse(text, strlen(text), 1000, &t), 7);
    CHECK_INT(t.n, 2);
    CHECK(state_has(&t, STATE_HTTPS_REFUSED, "mx.example.org", 443, 1000));
    CHECK(!state_has(&t, STATE_HTTPS_REFUSED, "mx.example.org", 443, 2000));
    CHECK(state_has(&t, STATE_DOWN, "mx.example.org", 25, 2999));
    CHECK(!state_has(&t, STATE_DOWN, "mx.example.org", 26, 1000));
    CHECK(!state_has(&t, STATE_DOWN, "expired.example.org", 25, 1000));
    buf_init(&b, 1 << 20);
    CHECK(state_format(&t, 2500, &b) == 0);
    CHECK_STR(buf_cstr(&b), "filtermail-transport-state 1\ndown mx.example.org 25 3000\n");
    buf_free(&b);
    /* Another version or no header: an empty state. */
    CHECK_INT(state_parse("filtermail-transport-state 2\ndown a.b 25 3000\n", 43, 0, &t), 1);
    CHECK_INT(t.n, 0);
    CHECK_INT(state_parse("", 0, 0, &t), 0);
    state_table_free(&t);
}

static void test_set_clear_bounded(void)
{
    struct state_table t;
    char host[64];
    state_table_init(&t);
    CHECK(state_set(&t, STATE_DOWN, "a.example", 25, 100) == 0);
    CHECK(state_set(&t, STATE_DOWN, "a.example", 25, 200) == 0);
    CHECK_INT(t.n, 1);
    CHECK(state_set(&t, STATE_DOWN, "bad host", 25, 200) < 0);
    CHECK(state_clear(&t, STATE_DOWN, "a.example", 25));
    CHECK(!state_clear(&t, STATE_DOWN, "a.example", 25));
    for (int i = 0; i < STATE_MAX_ENTRIES + 10; i++) {
        snprintf(host, sizeof(host), "h%d.example", i);
        CHECK(state_set(&t, STATE_DOWN, host, 25, 1000 + i) == 0);
    }
    CHECK_INT(t.n, STATE_MAX_ENTRIES);
    /* The ones expiring first made room. */
    CHECK(!state_has(&t, STATE_DOWN, "h0.example", 25, 0));
    CHECK(state_has(&t, STATE_DOWN, "h4105.example", 25, 0));
    state_table_free(&t);
}

static char dir[64];

static void rmrf(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* The number of *.tmp files in the state directory and its tls/. */
static int tmp_files(void)
{
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "find %s -name '*.tmp' | wc -l", dir);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (p == NULL || fscanf(p, "%d", &n) != 1)
        n = -1;
    if (p != NULL)
        pclose(p);
    return n;
}

/* Makes openat() with O_TMPFILE fail with EOPNOTSUPP in this process, as on a
 * file system without it. */
static int refuse_tmpfile(void)
{
    if (syscall_fault(__NR_openat, 2, 020000000 /* __O_TMPFILE */, EOPNOTSUPP) < 0)
        return -1;
    return openat(AT_FDCWD, "/tmp", O_TMPFILE | O_WRONLY, 0600) < 0 && errno == EOPNOTSUPP ? 0
                                                                                       : -1;
}

static void test_store(void)
{
    char err[256];
    snprintf(dir, sizeof(dir), "/tmp/filtermail-state-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    rmrf(); /* state_open creates it */
    struct state_store *s = state_open(dir, err, sizeof(err));
    CHECK(s != NULL);
    if (s == NULL)
        return;
    struct state_table t;
    state_table_init(&t);
    CHECK(state_load(s, 100, &t) == 0);
    CHECK_INT(t.n, 0);
    struct state_op ops[2] = {
        {.set = true, .kind = STATE_DOWN, .host = "mx.example.org", .port = 25, .until = 400},
        {.set = true, .kind = STATE_HTTPS_REFUSED, .host = "mx.example.org", .port = 443,
         .until = 2000},
    };
    CHECK(state_update(s, 100, ops, 2, err, sizeof(err)) == 0);
    CHECK(state_load(s, 100, &t) == 0);
    CHECK_INT(t.n, 2);
    ops[0].set = false;
    CHECK(state_update(s, 100, ops, 1, err, sizeof(err)) == 0);
    CHECK(state_load(s, 100, &t) == 0);
    CHECK_INT(t.n, 1);
    CHECK(state_has(&t, STATE_HTTPS_REFUSED, "mx.example.org", 443, 100));

    /* Concurrent writers: every entry survives, the file stays whole. */
    for (int k = 0; k < 8; k++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0; i < 20; i++) {
                struct state_op o = {.set = true, .kind = STATE_DOWN, .port = 25,
                                     .until = 5000};
                snprintf(o.host, sizeof(o.host), "p%d-%d.example", k, i);
                if (state_update(s, 100, &o, 1, err, sizeof(err)) < 0)
                    _exit(1);
            }
            _exit(0);
        }
    }
    for (int k = 0; k < 8; k++) {
        int st;
        CHECK(wait(&st) > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    CHECK(state_load(s, 100, &t) == 0);
    CHECK_INT(t.n, 1 + 8 * 20);

    /* TLS session slots. */
    char slot[8];
    state_session_slot("smtp mx.example.org 25 verify", slot);
    CHECK(strncmp(slot, "tls/", 4) == 0 && strlen(slot) == 7);
    unsigned char *der;
    size_t len;
    CHECK(state_session_load(s, "smtp mx.example.org 25 verify", &der, &len) < 0);
    CHECK(state_session_save(s, "smtp mx.example.org 25 verify", (const unsigned char *)"\x30\x01\x00", 3) == 0);
    CHECK(state_session_load(s, "smtp mx.example.org 25 verify", &der, &len) == 0);
    CHECK(len == 3 && memcmp(der, "\x30\x01\x00", 3) == 0);
    free(der);
    CHECK(state_session_load(s, "smtp mx.example.org 25 dane-00", &der, &len) < 0);
    CHECK(state_session_save(s, "bad\nkey", (const unsigned char *)"x", 1) < 0);
    static unsigned char big[STATE_SESSION_MAX + 1];
    CHECK(state_session_save(s, "k", big, sizeof(big)) < 0);

    /* Nothing is left behind by a save; a killed writer's leftovers go once
     * they are older than STATE_TMP_AGE, young ones (a writer at work) stay. */
    char path[256];
    CHECK(tmp_files() == 0);
    const char *old_tmp[] = {"hosts.99.0.tmp", "tls/abc.99.1.tmp"};
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, old_tmp[i]);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL && fclose(f) == 0);
        struct timespec old[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
        CHECK(utimensat(AT_FDCWD, path, old, 0) == 0);
    }
    snprintf(path, sizeof(path), "%s/tls/def.98.0.tmp", dir);
    FILE *young = fopen(path, "w");
    CHECK(young != NULL && fclose(young) == 0);
    CHECK_INT(tmp_files(), 3);
    struct state_op sweep_op = {.set = true, .kind = STATE_DOWN, .host = "sweep.example",
                                .port = 25, .until = 5000};
    CHECK(state_update(s, 1000 + STATE_TMP_AGE, &sweep_op, 1, err, sizeof(err)) == 0);
    CHECK_INT(tmp_files(), 1);
    CHECK_INT(state_sweep(s, time(NULL) + STATE_TMP_AGE), 1);
    CHECK_INT(tmp_files(), 0);

    /* A lock held by a stuck process: the update gives up after
     * STATE_LOCK_WAIT_MS instead of waiting without limit. */
    char lockpath[256];
    snprintf(lockpath, sizeof(lockpath), "%s/hosts.lock", dir);
    int held = open(lockpath, O_RDWR | O_CREAT, 0600);
    CHECK(held >= 0 && flock(held, LOCK_EX) == 0);
    pid_t waiter = fork();
    if (waiter == 0) {
        struct state_op o = {.set = true, .kind = STATE_DOWN, .host = "late.example",
                             .port = 25, .until = 5000};
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int rc = state_update(s, 100, &o, 1, err, sizeof(err));
        clock_gettime(CLOCK_MONOTONIC, &t1);
        long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        _exit(rc == -1 && strstr(err, "held by another process") != NULL &&
                      ms >= STATE_LOCK_WAIT_MS && ms < STATE_LOCK_WAIT_MS + 3000
                  ? 0
                  : 1);
    }
    int wst;
    CHECK(waitpid(waiter, &wst, 0) == waiter && WIFEXITED(wst) && WEXITSTATUS(wst) == 0);
    close(held);
    CHECK(state_load(s, 100, &t) == 0);
    CHECK(!state_has(&t, STATE_DOWN, "late.example", 25, 100));

    /* Without O_TMPFILE the writes go through a named temporary file, with
     * the same result and nothing left behind. */
    pid_t child = fork();
    if (child == 0) {
        unsigned char *got = NULL;
        size_t got_len = 0;
        struct state_op o = {.set = true, .kind = STATE_DOWN, .host = "named.example",
                             .port = 25, .until = 5000};
        struct state_table ct;
        state_table_init(&ct);
        bool ok = refuse_tmpfile() == 0 &&
                  state_session_save(s, "named 25", (const unsigned char *)"\x30\x00", 2) == 0 &&
                  state_session_load(s, "named 25", &got, &got_len) == 0 && got_len == 2 &&
                  state_update(s, 100, &o, 1, err, sizeof(err)) == 0 &&
                  state_load(s, 100, &ct) == 0 &&
                  state_has(&ct, STATE_DOWN, "named.example", 25, 100);
        _exit(ok ? 0 : 1);
    }
    int cst;
    CHECK(waitpid(child, &cst, 0) == child && WIFEXITED(cst) && WEXITSTATUS(cst) == 0);
    CHECK(state_load(s, 100, &t) == 0);
    CHECK(state_has(&t, STATE_DOWN, "named.example", 25, 100));
    CHECK_INT(tmp_files(), 0);

    /* A read error is an error, not a short file: the reader fails, and an
     * update writes nothing rather than the table rebuilt from what was read
     * (which dropped every other host's entry). Regression test. */
    CHECK(state_load(s, 100, &t) == 0);
    size_t before = t.n;
    CHECK(before > 100);
    pid_t rchild = fork();
    if (rchild == 0) {
        unsigned char *got = NULL;
        size_t got_len = 0;
        struct state_op o = {.set = true, .kind = STATE_DOWN, .host = "readerr.example",
                             .port = 25, .until = 5000};
        struct state_table ct;
        state_table_init(&ct);
        bool ok = syscall_fault(__NR_read, 0, 0, EIO) == 0 && state_load(s, 100, &ct) == -1 &&
                  ct.n == 0 &&
                  state_update(s, 100, &o, 1, err, sizeof(err)) == -1 &&
                  strstr(err, "/hosts: ") != NULL &&
                  state_session_load(s, "named 25", &got, &got_len) == -1;
        _exit(ok ? 0 : 1);
    }
    int rst;
    CHECK(waitpid(rchild, &rst, 0) == rchild && WIFEXITED(rst) && WEXITSTATUS(rst) == 0);
    CHECK(state_load(s, 100, &t) == 0);
    CHECK_INT(t.n, before);
    CHECK(!state_has(&t, STATE_DOWN, "readerr.example", 25, 100));
    CHECK_INT(tmp_files(), 0);

    /* Writes never wait for the disk (no fsync: the state is advisory and
     * written on nearly every delivery): with fsync failing they still work. */
    pid_t schild = fork();
    if (schild == 0) {
        unsigned char *got = NULL;
        size_t got_len = 0;
        struct state_op o = {.set = true, .kind = STATE_DOWN, .host = "nosync.example",
                             .port = 25, .until = 5000};
        struct state_table ct;
        state_table_init(&ct);
        bool ok = syscall_fault(__NR_fsync, 0, 0, EIO) == 0 && fsync(STDOUT_FILENO) < 0 &&
                  state_update(s, 100, &o, 1, err, sizeof(err)) == 0 &&
                  state_session_save(s, "nosync 25", (const unsigned char *)"\x30\x00", 2) == 0 &&
                  state_session_load(s, "nosync 25", &got, &got_len) == 0 && got_len == 2 &&
                  state_load(s, 100, &ct) == 0 &&
                  state_has(&ct, STATE_DOWN, "nosync.example", 25, 100);
        _exit(ok ? 0 : 1);
    }
    int sst;
    CHECK(waitpid(schild, &sst, 0) == schild && WIFEXITED(sst) && WEXITSTATUS(sst) == 0);
    CHECK_INT(tmp_files(), 0);

    /* A hosts file nobody can use (too large) reads as empty, and the next
     * update replaces it. */
    char hosts[256];
    snprintf(hosts, sizeof(hosts), "%s/hosts", dir);
    CHECK(truncate(hosts, STATE_MAX_FILE + 1) == 0);
    CHECK(state_load(s, 100, &t) == 0);
    CHECK_INT(t.n, 0);
    CHECK(state_update(s, 100, &sweep_op, 1, err, sizeof(err)) == 0);
    CHECK(state_load(s, 100, &t) == 0);
    CHECK_INT(t.n, 1);

    /* Harmless to delete while in use. */
    rmrf();
    CHECK(state_load(s, 100, &t) == 0);
    CHECK_INT(t.n, 0);
    CHECK(state_update(s, 100, ops + 1, 1, err, sizeof(err)) < 0);
    state_close(&s);
    CHECK(s == NULL);
    state_table_free(&t);
    CHECK(state_open("/proc/nonexistent/dir", err, sizeof(err)) == NULL);
}

int main(void)
{
    UNIT_RUN(test_parse_format);
    UNIT_RUN(test_set_clear_bounded);
    UNIT_RUN(test_store);
    return unit_summary();
}
