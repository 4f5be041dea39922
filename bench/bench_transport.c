/* bench_transport: filtermail-transport against real servers on loopback.
 *
 *     build/bench/bench_transport            (from the repository root, as root)
 *     build/bench/bench_transport --run N UID FILE -- PROGRAM ARG...
 *
 * bench/run.py runs every build/bench/bench_* program. The measurement needs
 * nginx, a private Postfix, a test CA and signed DNS zones, which the Python
 * harness of the integration tests already starts and stops, so without
 * arguments this program hands over to bench/bench_transport.py.
 *
 * That script uses the second form to time processes: N times, fork, switch
 * to UID, exec PROGRAM with FILE on stdin and its output discarded, wait4();
 * one line per run: "wall_us cpu_us maxrss_kib exit_status". The fork
 * happens in this small process, so a child's peak RSS (ru_maxrss) is its own
 * and not inflated by a large parent's pages.
 */
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int run(int argc, char **argv)
{
    if (argc < 6 || strcmp(argv[5], "--") != 0 || argc < 7) {
        fprintf(stderr, "usage: bench_transport --run N UID FILE -- PROGRAM ARG...\n");
        return 2;
    }
    int n = atoi(argv[2]);
    uid_t uid = (uid_t)atoi(argv[3]);
    const char *file = argv[4];
    char **prog = argv + 6;
    for (int i = 0; i < n; i++) {
        long long t0 = now_us();
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            int in = open(file, O_RDONLY);
            int out = open("/dev/null", O_WRONLY);
            if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
                _exit(126);
            if (setgroups(0, NULL) < 0 || setgid(uid) < 0 || setuid(uid) < 0)
                _exit(126);
            execv(prog[0], prog);
            _exit(127);
        }
        int status;
        struct rusage ru;
        if (wait4(pid, &status, 0, &ru) < 0) {
            perror("wait4");
            return 1;
        }
        long long wall = now_us() - t0;
        long long cpu = (long long)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000 +
                        ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
        printf("%lld %lld %ld %d\n", wall, cpu, ru.ru_maxrss,
               WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--run") == 0)
        return run(argc, argv);
    char *args[64];
    int n = 0;
    args[n++] = "/usr/bin/python3";
    args[n++] = "bench/bench_transport.py";
    for (int i = 1; i < argc && n < 63; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    execv(args[0], args);
    perror("bench_transport: /usr/bin/python3");
    return 1;
}
