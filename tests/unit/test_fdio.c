/* Tests for common/fdio.c: whole writes to files and pipes, and to
 * non-blocking sockets with bounded waits. */
#include "clock.h"
#include "fdio.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* More than a pipe holds at once: the writer sees short writes while a child
 * reads slowly, and everything arrives in order. */
static void test_whole_write_through_pipe(void)
{
    enum { N = 1024 * 1024 };
    unsigned char *data = malloc(N);
    int p[2];
    CHECK(data != NULL && pipe(p) == 0);
    if (data == NULL)
        return;
    for (size_t i = 0; i < N; i++)
        data[i] = (unsigned char)(i * 7 + i / 251);
    CHECK(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        static unsigned char got[N];
        size_t have = 0;
        ssize_t n;
        while (have < N && (n = read(p[0], got + have, 1000)) > 0)
            have += (size_t)n;
        _exit(have == N && memcmp(got, data, N) == 0 ? 0 : 1);
    }
    close(p[0]);
    CHECK(fd_write_all(p[1], data, N) == 0);
    close(p[1]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(data);
}

static void test_errors(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    close(p[0]);
    signal(SIGPIPE, SIG_IGN);
    errno = 0;
    CHECK(fd_write_all(p[1], "x", 1) == -1 && errno == EPIPE);
    close(p[1]);
    CHECK(fd_write_all(-1, "x", 1) == -1 && errno == EBADF);
    CHECK(fd_write_all(-1, "", 0) == 0); /* nothing to write: nothing fails */
}

/* fd_send_all on a blocking socket (the milter's): whole sends, and a peer
 * that went away is EPIPE, not SIGPIPE (left at its default here, which
 * would kill the test). */
static void test_send_all(void)
{
    int sv[2];
    char got[8] = "";
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    signal(SIGPIPE, SIG_DFL);
    CHECK(fd_send_all(sv[0], "hello", 5, 0, 0) == 0);
    CHECK(read(sv[1], got, sizeof(got)) == 5 && memcmp(got, "hello", 5) == 0);
    close(sv[1]);
    errno = 0;
    CHECK(fd_send_all(sv[0], "x", 1, 0, 0) == -1 && errno == EPIPE);
    close(sv[0]);
}

/* A non-blocking socket whose buffer fills: fd_send_all waits for room while
 * a child reads slowly, and everything arrives in order. */
static void test_send_through_socket(void)
{
    enum { N = 1024 * 1024 };
    unsigned char *data = malloc(N);
    int sv[2];
    CHECK(data != NULL && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    if (data == NULL)
        return;
    for (size_t i = 0; i < N; i++)
        data[i] = (unsigned char)(i * 13 + i / 253);
    CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        static unsigned char got[N];
        size_t have = 0;
        ssize_t n;
        while (have < N && (n = read(sv[1], got + have, 3000)) > 0) {
            have += (size_t)n;
            if (have % 7 == 0)
                usleep(100);
        }
        _exit(have == N && memcmp(got, data, N) == 0 ? 0 : 1);
    }
    close(sv[1]);
    CHECK(fd_send_all(sv[0], data, N, 5000, (int64_t)clock_mono_ms() + 20000) == 0);
    close(sv[0]);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    free(data);
}

/* A peer that never reads: each wait is bounded by wait_ms, and the whole
 * write by until_ms; a peer that has gone is EPIPE, never SIGPIPE (the
 * default action, which would end this test, is left in place). */
static void test_send_bounds(void)
{
    enum { N = 8 * 1024 * 1024 };
    char *data = calloc(1, N);
    int sv[2];
    CHECK(data != NULL && socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    if (data == NULL)
        return;
    CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0);
    signal(SIGPIPE, SIG_DFL);
    int64_t t0 = (int64_t)clock_mono_ms();
    errno = 0;
    CHECK(fd_send_all(sv[0], data, N, 200, t0 + 10000) == -1 && errno == ETIMEDOUT);
    int64_t took = (int64_t)clock_mono_ms() - t0;
    CHECKF(took >= 190 && took < 2000, "wait bound: took %lld ms", (long long)took);
    t0 = (int64_t)clock_mono_ms();
    errno = 0;
    CHECK(fd_send_all(sv[0], data, N, 5000, t0 + 150) == -1 && errno == ETIMEDOUT);
    took = (int64_t)clock_mono_ms() - t0;
    CHECKF(took < 1000, "deadline: took %lld ms", (long long)took);
    close(sv[1]);
    errno = 0;
    CHECK(fd_send_all(sv[0], "x", 1, 200, (int64_t)clock_mono_ms() + 1000) == -1 && errno == EPIPE);
    close(sv[0]);
    CHECK(fd_send_all(-1, "", 0, 200, 0) == 0);
    free(data);
}

int main(void)
{
    UNIT_RUN(test_send_through_socket);
    UNIT_RUN(test_send_bounds);
    UNIT_RUN(test_whole_write_through_pipe);
    UNIT_RUN(test_errors);
    UNIT_RUN(test_send_all);
    return unit_summary();
}
