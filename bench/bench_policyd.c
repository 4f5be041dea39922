/* bench_policyd: filtermail-policyd under load, measured from outside.
 *
 *     build/bench/bench_policyd [--daemon PATH] [--seconds N] [--senders N]
 *                               [--connections N] [--no-redis]
 *
 * Starts the real daemon ($FILTERMAIL_BUILD/filtermail-policyd, default
 * build/) on a unix socket in a temporary directory, pinned to CPU 0 when
 * there are two or more, and drives it from this process (pinned to CPU 1)
 * over --connections (100) persistent connections, each behaving like one
 * smtpd process: Postfix 3.7's RCPT request (~700 bytes, every attribute),
 * one to three RCPTs per message sharing the message's instance, senders
 * drawn from a pool of 100,000, one request in flight per connection.
 *
 *  1. In-process state: requests/s as fast as replies come (closed loop),
 *     then latency at 50,000 requests/s offered (paced): percentiles from
 *     send to reply as the client sees them, and the daemon's CPU time per
 *     request, hence the rate one core could sustain. Each figure is the
 *     median of three rounds of --seconds (3) after a 1 s warm-up, with the
 *     range, because the machine may be shared. The same load then runs
 *     against a minimal server that answers DUNNO without parsing (the
 *     baseline: what the machine and the load generator allow), with ratios.
 *  2. Memory: --senders (1,000,000) distinct senders at a rate slow enough
 *     that none refills during the run; the daemon's VmRSS grows by the
 *     reported bytes per tracked sender. Then the time SIGTERM takes, which
 *     includes writing the snapshot of every sender.
 *  3. Redis (skipped with --no-redis or without redis-server): a private
 *     redis-server on a free loopback port, the daemon with
 *     filtermail_ratelimit_redis, the same load as 1 (requests/s, latency,
 *     and EVALSHA calls/s from Redis's own counters); then, in the same run
 *     against the same server, redis-benchmark running the very same script
 *     (EVALSHA, 100 clients, random keys) for the ceiling Redis itself sets.
 *
 * Targets (printed next to the figures): >= 50,000 requests/s on one core
 * with 100 connections, p99 < 1 ms, <= 200 bytes per tracked sender.
 * Exit status 1 only when something could not be measured.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_server.h"
#include "redislimit.h"

#define NS 1000000000ull
#define POOL 100000

static const char *daemon_path;
static double seconds = 3;
#define ROUNDS 3
static long senders = 1000000;
static int nconns = 100;
static bool with_redis = true;
static char tmpdir[] = "/tmp/bench-policyd-XXXXXX";
static int ncpu;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * NS + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    fprintf(stderr, "bench_policyd: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void pin(int cpu)
{
    cpu_set_t set;
    if (ncpu < 2)
        return;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof(set), &set);
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* ---- The daemon */

struct daemon {
    pid_t pid;
    char ini[256], sock[100], log[256], state[256];
};

static void daemon_start(struct daemon *d, const char *name, const char *extra)
{
    FILE *f;
    uint64_t end;

    snprintf(d->ini, sizeof(d->ini), "%s/%s.ini", tmpdir, name);
    snprintf(d->sock, sizeof(d->sock), "%s/%s.sock", tmpdir, name);
    snprintf(d->log, sizeof(d->log), "%s/%s.log", tmpdir, name);
    snprintf(d->state, sizeof(d->state), "%s/%s.state", tmpdir, name);
    f = fopen(d->ini, "w");
    if (f == NULL)
        die(d->ini);
    fprintf(f,
            "[params]\nmail_domain = example.org\nfiltermail_policy_socket = unix:%s\n"
            "filtermail_ratelimit_state = %s\nfiltermail_user = nobody\n"
            "filtermail_socket_group = %s\nfiltermail_log_level = %s\n%s",
            d->sock, d->state, getenv("BENCH_GROUP") ? getenv("BENCH_GROUP") : "nogroup",
            getenv("BENCH_LOG_LEVEL") ? getenv("BENCH_LOG_LEVEL") : "info", extra);
    fclose(f);
    d->pid = fork();
    if (d->pid < 0)
        die("fork");
    if (d->pid == 0) {
        int fd = open(d->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        pin(0);
        execl(daemon_path, daemon_path, d->ini, (char *)NULL);
        fprintf(stderr, "exec %s: %s\n", daemon_path, strerror(errno));
        _exit(127);
    }
    end = now_ns() + 10 * NS;
    while (now_ns() < end) {
        struct sockaddr_un a = {.sun_family = AF_UNIX};
        int fd = socket(AF_UNIX, SOCK_STREAM, 0), ok;
        memcpy(a.sun_path, d->sock, strlen(d->sock) + 1); /* tmpdir paths are short */
        ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
        close(fd);
        if (ok)
            return;
        if (waitpid(d->pid, NULL, WNOHANG) == d->pid)
            break;
        usleep(10000);
    }
    fprintf(stderr, "bench_policyd: %s did not start; its log (%s):\n", daemon_path, d->log);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "cat %s >&2", d->log);
    if (system(cmd) != 0)
        fprintf(stderr, "(no log)\n");
    exit(1);
}

static bool log_contains(const struct daemon *d, const char *text)
{
    char buf[65536];
    FILE *f = fopen(d->log, "r");
    size_t n;
    if (f == NULL)
        return false;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, text) != NULL;
}

/* Stops the daemon; returns how long SIGTERM took (it saves the snapshot). */
static double daemon_stop(struct daemon *d)
{
    uint64_t t0 = now_ns();
    int st;
    kill(d->pid, SIGTERM);
    waitpid(d->pid, &st, 0);
    return (double)(now_ns() - t0) / NS;
}

/* utime + stime of a process, in seconds. */
static double cpu_seconds(pid_t pid)
{
    char path[64], buf[1024], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL || fgets(buf, sizeof(buf), f) == NULL) {
        if (f)
            fclose(f);
        return 0;
    }
    fclose(f);
    p = strrchr(buf, ')');
    /* Fields after the name: state is field 3; utime 14, stime 15. */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long rss_kb(pid_t pid)
{
    char path[64], line[256];
    long kb = -1;
    FILE *f;
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

/* ---- The baseline: the least any policy server must do */

/* A minimal epoll server on path: answers "action=DUNNO" to every request
 * (found by its empty line) without parsing or deciding. Runs in a forked
 * child pinned like the daemon; its figures are what this machine allows. */
static pid_t baseline_start(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    pid_t pid;

    unlink(path);
    memcpy(a.sun_path, path, strlen(path) + 1);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(lfd, 1024) < 0)
        die("baseline listen");
    pid = fork();
    if (pid < 0)
        die("fork");
    if (pid > 0) {
        close(lfd);
        return pid;
    }
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    pin(0);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, evs[256];
    static char tail[65536][2]; /* last two bytes seen per fd */
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                int c = accept(lfd, NULL, NULL);
                if (c >= 0 && c < 65536) {
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce);
                }
                continue;
            }
            char buf[4096];
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r <= 0) {
                close(fd);
                continue;
            }
            int replies = 0;
            for (ssize_t k = 0; k < r; k++) {
                if (buf[k] == '\n' && tail[fd][1] == '\n')
                    replies++;
                tail[fd][0] = tail[fd][1];
                tail[fd][1] = buf[k];
            }
            for (int k = 0; k < replies; k++)
                if (write(fd, "action=DUNNO\n\n", 14) < 0)
                    break;
        }
    }
}

/* ---- The load */

/* Postfix 3.7.11's RCPT request, as the integration harness captured it. */
static int format_request(char *out, size_t len, unsigned long sender, unsigned long msg,
                          unsigned rcpt, int port)
{
    return snprintf(out, len,
                    "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n"
                    "client_address=203.0.113.7\nclient_name=unknown\nclient_port=%d\n"
                    "reverse_client_name=unknown\nserver_address=192.0.2.1\nserver_port=587\n"
                    "helo_name=[192.168.1.23]\nsender=user%lu@example.org\n"
                    "recipient=friend%u@example.net\nrecipient_count=0\nqueue_id=\n"
                    "instance=%x.%lx.6a1f.0\nsize=0\netrn_domain=\nstress=\nsasl_method=PLAIN\n"
                    "sasl_username=user%lu@example.org\nsasl_sender=\nccert_subject=\n"
                    "ccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n"
                    "encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n"
                    "encryption_keysize=256\npolicy_context=\n\n",
                    port, sender, rcpt, (unsigned)port, msg, sender);
}

struct client {
    int fd;
    char out[1024];
    size_t out_len, out_off;
    char in[512];
    size_t in_len;
    uint64_t sent;     /* when the request was sent */
    uint64_t due_sent; /* paced: when it was due */
    uint64_t due;      /* paced: when the next request is due */
    bool waiting;      /* paced: reply in, next request not yet due */
    unsigned long sender, msg;
    unsigned rcpts_left, rcpt;
};

struct load {
    bool distinct; /* memory run: a new sender for every request */
    long limit;    /* stop after this many requests (0: time) */
    unsigned long next_sender;
    uint32_t *lat; /* latencies (ns) of measured requests, send to reply */
    uint32_t *lag; /* paced: due to reply (the load generator's lateness too) */
    size_t nlat, cap;
    bool measuring;
    long done, passed, limited;
    double rate; /* requests/s offered in all (0: as fast as replies come) */
};

static void next_request(struct client *c, struct load *L, int idx)
{
    if (c->rcpts_left == 0) {
        c->msg++;
        c->rcpt = 0;
        if (L->distinct) {
            c->sender = L->next_sender++;
            c->rcpts_left = 1;
        } else {
            c->sender = rnd() % POOL;
            c->rcpts_left = 1 + rnd() % 3;
        }
    }
    c->rcpts_left--;
    c->out_len =
        (size_t)format_request(c->out, sizeof(c->out), c->sender, c->msg, c->rcpt++, 40000 + idx);
    c->out_off = 0;
}

static int connect_to(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (strlen(path) >= sizeof(a.sun_path))
        die(path);
    memcpy(a.sun_path, path, strlen(path) + 1);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect");
    fcntl(fd, F_SETFL, O_NONBLOCK);
    return fd;
}

static bool client_send(struct client *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN)
                return true;
            die("write");
        }
        c->out_off += (size_t)n;
    }
    return true;
}

/* Drives the load for `secs` (after `warm` unmeasured seconds), or until
 * L->limit requests. Closed loop (a connection sends its next request when
 * the reply is in), or paced at L->rate requests/s in all: each connection
 * then has a schedule, and latency counts from when a request was due, so a
 * slow reply also charges the requests it delayed. Returns the measured
 * wall time. */
static double run_load(const char *sock, struct load *L, double warm, double secs)
{
    struct client *cs = calloc((size_t)nconns, sizeof(*cs));
    int ep = epoll_create1(0);
    struct epoll_event evs[256];
    uint64_t start = now_ns(), mstart = 0, end, interval = 0;
    bool stop = false;
    long outstanding = 0, nwaiting = 0;

    if (L->rate > 0)
        interval = (uint64_t)((double)nconns * NS / L->rate);
    for (int i = 0; i < nconns; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        cs[i].fd = connect_to(sock);
        cs[i].msg = (unsigned long)rnd() << 8;
        epoll_ctl(ep, EPOLL_CTL_ADD, cs[i].fd, &ev);
    }
    L->measuring = warm <= 0;
    if (L->measuring)
        mstart = start;
    for (int i = 0; i < nconns; i++) {
        if (L->limit && L->done + outstanding >= L->limit)
            break;
        if (interval) {
            /* Spread the first requests over one interval. */
            cs[i].due = start + interval * (uint64_t)i / (uint64_t)nconns;
            cs[i].waiting = true;
            nwaiting++;
            continue;
        }
        next_request(&cs[i], L, i);
        cs[i].sent = now_ns();
        client_send(&cs[i]);
        outstanding++;
    }
    end = start + (uint64_t)((warm + secs) * NS);
    while (outstanding > 0 || (nwaiting > 0 && !stop)) {
        /* Paced: sleep until the next request is due, to the nanosecond
         * (epoll_pwait2). A sleeping load generator is not pushed off its
         * CPU by the scheduler the way a spinning one would be. */
        struct timespec ts = {1, 0};
        if (nwaiting > 0) {
            uint64_t next = UINT64_MAX, t0 = now_ns();
            for (int i = 0; i < nconns; i++)
                if (cs[i].waiting && cs[i].due < next)
                    next = cs[i].due;
            next = next > t0 ? next - t0 : 0;
            ts.tv_sec = (time_t)(next / NS);
            ts.tv_nsec = (long)(next % NS);
        }
        int n = epoll_pwait2(ep, evs, 256, &ts, NULL);
        uint64_t t = now_ns();
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        if (!L->measuring && t >= start + (uint64_t)(warm * NS)) {
            L->measuring = true;
            mstart = t;
            L->done = L->passed = L->limited = 0;
            L->nlat = 0;
        }
        if (!L->limit && t >= end)
            stop = true;
        for (int k = 0; k < n; k++) {
            struct client *c = &cs[evs[k].data.u32];
            ssize_t r = read(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len - 1);
            if (r <= 0) {
                if (r < 0 && errno == EAGAIN)
                    continue;
                fprintf(stderr, "bench_policyd: the daemon closed a connection\n");
                exit(1);
            }
            c->in_len += (size_t)r;
            c->in[c->in_len] = '\0';
            if (strstr(c->in, "\n\n") == NULL)
                continue;
            outstanding--;
            t = now_ns();
            if (L->measuring) {
                if (L->nlat == L->cap) {
                    L->cap = L->cap ? L->cap * 2 : 1 << 20;
                    L->lat = realloc(L->lat, L->cap * sizeof(*L->lat));
                    L->lag = realloc(L->lag, L->cap * sizeof(*L->lag));
                    if (L->lat == NULL || L->lag == NULL)
                        die("realloc");
                }
                uint64_t d = t - c->sent, g = interval ? t - c->due_sent : d;
                L->lag[L->nlat] = g > UINT32_MAX ? UINT32_MAX : (uint32_t)g;
                L->lat[L->nlat++] = d > UINT32_MAX ? UINT32_MAX : (uint32_t)d;
            }
            L->done++;
            if (strncmp(c->in, "action=DUNNO", 12) == 0)
                L->passed++;
            else if (strncmp(c->in, "action=450", 10) == 0)
                L->limited++;
            c->in_len = 0;
            if (stop || (L->limit && L->done + outstanding >= L->limit))
                continue;
            if (interval) {
                c->due += interval;
                c->waiting = true;
                nwaiting++;
                continue;
            }
            next_request(c, L, (int)evs[k].data.u32);
            c->sent = t;
            client_send(c);
            outstanding++;
        }
        if (nwaiting > 0 && !stop) {
            t = now_ns();
            for (int i = 0; i < nconns; i++) {
                struct client *c = &cs[i];
                if (!c->waiting || c->due > t)
                    continue;
                c->waiting = false;
                nwaiting--;
                next_request(c, L, i);
                c->due_sent = c->due;
                c->sent = now_ns();
                client_send(c);
                outstanding++;
            }
        }
    }
    double measured = (double)(now_ns() - mstart) / NS;
    for (int i = 0; i < nconns; i++)
        close(cs[i].fd);
    close(ep);
    free(cs);
    return measured;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* A percentile of sorted latencies, in microseconds. */
static double pct_of(const uint32_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    return v[(size_t)(p / 100.0 * (double)(n - 1))] / 1000.0;
}

static double pct(const struct load *L, double p)
{
    return pct_of(L->lat, L->nlat, p);
}

/* Runs the standard load against a daemon and prints its figures. */
/* One measured round. */
struct round {
    double rps, cpu, p50, p99, p999, max, lag50, lag99;
    long done, passed, limited;
};

static void one_round(const char *sock, pid_t pid, double rate, struct round *r)
{
    struct load L = {0};
    double cpu0, cpu1, secs;

    /* A warm-up second without measuring: connections, table, Redis. */
    L.rate = rate;
    cpu0 = cpu_seconds(pid);
    secs = run_load(sock, &L, 1.0, seconds);
    cpu1 = cpu_seconds(pid);
    qsort(L.lat, L.nlat, sizeof(*L.lat), cmp_u32);
    qsort(L.lag, L.nlat, sizeof(*L.lag), cmp_u32);
    r->rps = (double)L.done / secs;
    r->cpu = (cpu1 - cpu0) / (secs + 1.0); /* the warm-up second is in the CPU figure */
    r->p50 = pct(&L, 50);
    r->p99 = pct(&L, 99);
    r->p999 = pct(&L, 99.9);
    r->max = pct(&L, 100);
    r->lag50 = pct_of(L.lag, L.nlat, 50);
    r->lag99 = pct_of(L.lag, L.nlat, 99);
    r->done = L.done;
    r->passed = L.passed;
    r->limited = L.limited;
    free(L.lat);
    free(L.lag);
}

static int by_rps(const void *a, const void *b)
{
    double x = ((const struct round *)a)->rps, y = ((const struct round *)b)->rps;
    return x < y ? -1 : x > y;
}

static int by_p99(const void *a, const void *b)
{
    double x = ((const struct round *)a)->p99, y = ((const struct round *)b)->p99;
    return x < y ? -1 : x > y;
}

/* Prints the median of ROUNDS rounds (by requests/s closed loop, by p99
 * paced) and the range, so that one round disturbed by another process on
 * the machine does not decide the figure. */
static void report(const char *label, double rate, struct round *r, double *rps_r, double *p99_r)
{
    struct round *m;

    qsort(r, ROUNDS, sizeof(r[0]), rate > 0 ? by_p99 : by_rps);
    m = &r[ROUNDS / 2];
    printf("%s, %s: %.0f requests/s (%d rounds of %.0f s: %.0f-%.0f), %d connections "
           "(%.1f%% DUNNO, %.1f%% 450)\n",
           label, rate > 0 ? "paced" : "closed loop", m->rps, ROUNDS, seconds, r[0].rps,
           r[ROUNDS - 1].rps, nconns, 100.0 * (double)m->passed / (double)(m->done ? m->done : 1),
           100.0 * (double)m->limited / (double)(m->done ? m->done : 1));
    printf("  latency, sent to reply: p50 %.0f us, p99 %.0f us (rounds: %.0f-%.0f), "
           "p99.9 %.0f us, max %.0f us\n",
           m->p50, m->p99, r[0].p99 < r[ROUNDS - 1].p99 ? r[0].p99 : r[ROUNDS - 1].p99,
           r[0].p99 > r[ROUNDS - 1].p99 ? r[0].p99 : r[ROUNDS - 1].p99, m->p999, m->max);
    if (rate > 0)
        printf("  latency, due to reply (counts the load generator's own delays too): "
               "p50 %.0f us, p99 %.0f us\n",
               m->lag50, m->lag99);
    if (m->cpu > 0)
        printf("  server CPU: %.0f%% of one core, %.1f us per request -> %.0f requests/s "
               "per core at 100%%\n",
               m->cpu * 100.0, m->cpu * 1e6 / m->rps, m->rps / m->cpu);
    *rps_r = m->rps;
    *p99_r = m->p99;
}

struct server {
    const char *label;
    const char *sock;
    pid_t pid;
    double rps, p99;
};

/* Runs the load against each server in turn, round after round, so that
 * whatever else the machine does falls on all of them alike. */
static void compare(struct server *sv, int n, double rate)
{
    struct round r[4][ROUNDS];

    for (int k = 0; k < ROUNDS; k++)
        for (int i = 0; i < n; i++)
            one_round(sv[i].sock, sv[i].pid, rate, &r[i][k]);
    for (int i = 0; i < n; i++)
        report(sv[i].label, rate, r[i], &sv[i].rps, &sv[i].p99);
}

static void throughput(const char *label, struct daemon *d, double rate, double *rps_r,
                       double *p99_r)
{
    struct server sv = {label, d->sock, d->pid, 0, 0};

    compare(&sv, 1, rate);
    *rps_r = sv.rps;
    *p99_r = sv.p99;
}

static void memory(void)
{
    struct daemon d;
    struct load L = {0};
    long before, after;
    double secs, stop;
    char extra[128];
    struct stat st;

    /* One message a minute: nobody refills during the run. */
    snprintf(extra, sizeof(extra), "max_user_send_per_minute = 1\nmax_user_send_burst_size = 10\n");
    daemon_start(&d, "memory", extra);
    before = rss_kb(d.pid);
    L.distinct = true;
    L.limit = senders;
    secs = run_load(d.sock, &L, 0, 0);
    after = rss_kb(d.pid);
    free(L.lat);
    free(L.lag);
    printf("memory: %ld senders tracked (%.0f new senders/s): VmRSS %ld -> %ld KiB, "
           "%.0f bytes per sender (target <= 200)\n",
           senders, (double)senders / secs, before, after,
           (double)(after - before) * 1024.0 / (double)senders);
    stop = daemon_stop(&d);
    printf("  SIGTERM with %ld senders (snapshot written): %.2f s", senders, stop);
    if (stat(d.state, &st) == 0)
        printf(", %s %.1f MB", "state file", (double)st.st_size / 1e6);
    printf("\n");
}

/* ---- Redis */

static struct redis_server rs;

static long long evalsha_calls(void)
{
    redisContext *c = redis_server_connect(&rs);
    redisReply *r = c ? redisCommand(c, "INFO commandstats") : NULL;
    long long calls = 0;
    if (r != NULL && r->type == REDIS_REPLY_STRING) {
        const char *p = strstr(r->str, "cmdstat_evalsha:calls=");
        if (p != NULL)
            calls = atoll(p + 22);
    }
    freeReplyObject(r);
    if (c)
        redisFree(c);
    return calls;
}

static void redis_benchmark(long n)
{
    char cmd[1024], line[1024];
    FILE *p;

    snprintf(cmd, sizeof(cmd),
             "redis-benchmark -h 127.0.0.1 -p %d -c %d -n %ld -r %d --csv EVALSHA %s 1 "
             "filtermail:ratelimit:rb:__rand_int__ 1000000 9000000 m:__rand_int__ 2>/dev/null",
             rs.port, nconns, n, POOL, REDISLIMIT_SCRIPT_SHA1);
    pin(0); /* where the daemon ran; redis-server keeps CPU 1 */
    p = popen(cmd, "r");
    pin(1);
    if (p == NULL) {
        printf("  redis-benchmark: cannot run it\n");
        return;
    }
    while (fgets(line, sizeof(line), p) != NULL) {
        double rps, avg, mn, p50, p95, p99, mx;
        /* "EVALSHA ...","rps","avg","min","p50","p95","p99","max" */
        char *q = strstr(line, "\",\"");
        if (q == NULL || line[0] != '"' || strncmp(line, "\"test\"", 6) == 0)
            continue;
        if (sscanf(q + 3, "%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf\",\"%lf", &rps, &avg, &mn,
                   &p50, &p95, &p99, &mx) == 7)
            printf("redis-benchmark, same script (EVALSHA, %d clients, same server): %.0f calls/s, "
                   "p50 %.0f us, p99 %.0f us\n",
                   nconns, rps, p50 * 1000, p99 * 1000);
    }
    pclose(p);
}

static void redis_phase(void)
{
    struct daemon d;
    char extra[256];
    double rps, p99;
    long long calls0, calls1;
    uint64_t t0, end;

    if (redis_server_init(&rs) < 0)
        return;
    rs.cpu = 1; /* the daemon and the load take CPU 0 */
    if (redis_server_start(&rs) < 0) {
        printf("redis: redis-server could not be started (tests/deps.sh installs it): skipped\n");
        redis_server_cleanup(&rs);
        return;
    }
    snprintf(extra, sizeof(extra), "filtermail_ratelimit_redis = redis://127.0.0.1:%d/0\n",
             rs.port);
    daemon_start(&d, "redis", extra);
    end = now_ns() + 5 * NS;
    while (!log_contains(&d, "ready for rate limiting") && now_ns() < end)
        usleep(10000);
    if (!log_contains(&d, "ready for rate limiting")) {
        printf("redis: the daemon did not get ready (see %s)\n", d.log);
        daemon_stop(&d);
        redis_server_cleanup(&rs);
        return;
    }
    calls0 = evalsha_calls();
    t0 = now_ns();
    throughput("redis state", &d, 0, &rps, &p99);
    calls1 = evalsha_calls();
    printf("  EVALSHA calls (Redis's counter): %.0f/s (later RCPTs of a message are answered "
           "from the connection's memory)\n",
           (double)(calls1 - calls0) / ((double)(now_ns() - t0) / NS));
    if (log_contains(&d, "cannot use Redis"))
        printf("  note: the daemon lost Redis during the run (see %s)\n", d.log);
    daemon_stop(&d);
    redis_benchmark(200000);
    redis_server_cleanup(&rs);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_policyd [--daemon PATH] [--seconds N] [--senders N] "
                    "[--connections N] [--no-redis]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    static char path[512];
    struct daemon d;

    snprintf(path, sizeof(path), "%s/filtermail-policyd",
             getenv("FILTERMAIL_BUILD") ? getenv("FILTERMAIL_BUILD") : "build");
    daemon_path = path;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--daemon") == 0 && i + 1 < argc)
            daemon_path = argv[++i];
        else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--senders") == 0 && i + 1 < argc)
            senders = atol(argv[++i]);
        else if (strcmp(argv[i], "--connections") == 0 && i + 1 < argc)
            nconns = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-redis") == 0)
            with_redis = false;
        else
            usage();
    }
    if (access(daemon_path, X_OK) != 0)
        die(daemon_path);
    if (seconds <= 0 || senders <= 0 || nconns <= 0 || nconns > 10000)
        usage();
    signal(SIGPIPE, SIG_IGN);
    ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (mkdtemp(tmpdir) == NULL)
        die("mkdtemp");
    chmod(tmpdir, 0777); /* the daemon runs as nobody when started as root */
    pin(1);
    printf("bench_policyd: %s, %d CPUs (daemon on CPU 0, load generator on CPU 1)\n", daemon_path,
           ncpu);

    /* The daemon and, in turns with it, a server that only answers DUNNO:
     * what this machine, its scheduler and the load generator allow. */
    {
        char bsock[128];
        struct server sv[2];

        daemon_start(&d, "local", "");
        snprintf(bsock, sizeof(bsock), "%s/baseline.sock", tmpdir);
        sv[0] = (struct server){"in-process state", d.sock, d.pid, 0, 0};
        sv[1] = (struct server){"baseline (answers DUNNO, no parsing)", bsock,
                                baseline_start(bsock), 0, 0};
        compare(sv, 2, 0);
        printf("  target: >= 50000 requests/s: %s; ratio to the baseline %.2f\n",
               sv[0].rps >= 50000 ? "PASS" : "MISS", sv[0].rps / sv[1].rps);
        compare(sv, 2, 50000);
        printf("  target: p99 < 1000 us at 50000 requests/s: %s; baseline p99 %.0f us\n",
               sv[0].p99 < 1000 && sv[0].rps >= 49000 ? "PASS" : "MISS", sv[1].p99);
        kill(sv[1].pid, SIGKILL);
        waitpid(sv[1].pid, NULL, 0);
        daemon_stop(&d);
    }

    memory();
    if (with_redis)
        redis_phase();

    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tmpdir);
    if (system(cmd) != 0)
        fprintf(stderr, "bench_policyd: could not remove %s\n", tmpdir);
    return 0;
}
