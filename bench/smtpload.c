/* smtpload: a small SMTP load generator for the benchmarks.
 *
 * N connections, one thread each, send the same message over plain SMTP
 * without pipelining: EHLO (and, with -x, XCLIENT LOGIN= then EHLO again, as
 * a submission client authenticated by the proxy would look), then per message
 * MAIL FROM / RCPT TO / DATA / the message / "." and the final reply. A
 * connection sends -n messages, or as many as it can until -d seconds have
 * passed, then QUIT. A 421 or a dropped connection is counted and the
 * connection is made again.
 *
 * The message file is read once, made CRLF and dot-stuffed, and shared by all
 * threads. Latency is from MAIL FROM to the final reply after ".", kept in a
 * fixed log-scale histogram per thread (about 3 % resolution), so memory does
 * not grow with the run. The result is one line of key=value pairs on stdout
 * (bench/run.py parses it); the first non-2xx final reply goes to stderr.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1000
#define MAX_MESSAGE (64u * 1024 * 1024)
#define LINE_MAX_ 1024          /* longest reply line kept; longer ones are cut */
#define READ_BUF 4096
#define IO_TIMEOUT 120          /* seconds, per read or write */
#define MAX_DIAL_FAILURES 20     /* in a row; then the connection gives up */
#define HIST_SUB 32             /* buckets per power of two */
#define HIST_BUCKETS (41 * HIST_SUB)

struct options {
    const char *host;
    const char *port;
    int conns;
    long per_conn;              /* messages per connection; 0 = until the deadline */
    double duration;            /* seconds; 0 = no deadline */
    const char *file;
    const char *from;
    const char *rcpt;
    const char *xclient;        /* LOGIN= value, or NULL */
    const char *helo;
};

struct message {
    char *data;                 /* CRLF, dot-stuffed, ending with ".\r\n" */
    size_t len;
};

struct stats {
    uint64_t sent;              /* final replies received */
    uint64_t c2, c4, c5;        /* by class of the reply that ended the transaction */
    uint64_t errors;            /* I/O errors, timeouts, garbled replies */
    uint64_t reconnects;
    uint64_t hist[HIST_BUCKETS];
};

struct worker {
    pthread_t tid;
    int id;
    struct stats st;
};

struct conn {
    int fd;
    char buf[READ_BUF];
    size_t off, len;
};

static struct options opt;
static struct message msg;
static double deadline;         /* monotonic time after which no message starts */
static pthread_mutex_t report_lock = PTHREAD_MUTEX_INITIALIZER;
static int reported;            /* first non-2xx reply printed */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr,
            "Usage: smtpload -p PORT -f FILE [-H HOST] [-c CONNS] [-n MSGS | -d SECONDS]\n"
            "                [-F MAIL_FROM] [-R RCPT_TO] [-x XCLIENT_LOGIN] [-e EHLO_NAME]\n"
            "  CONNS concurrent connections (default 1), each sending MSGS messages\n"
            "  (default 1) or as many as it can for SECONDS. Prints one key=value line.\n");
    exit(2);
}

static long parse_long(const char *s, long min, long max, const char *what)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "smtpload: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static void append(struct message *m, size_t *cap, const char *p, size_t n)
{
    if (n > MAX_MESSAGE - m->len) {
        fprintf(stderr, "smtpload: message larger than %u bytes\n", MAX_MESSAGE);
        exit(2);
    }
    if (m->len + n > *cap) {
        size_t ncap = *cap ? *cap : 4096;
        while (ncap < m->len + n)
            ncap *= 2;
        char *d = realloc(m->data, ncap);
        if (d == NULL) {
            perror("smtpload: realloc");
            exit(1);
        }
        m->data = d;
        *cap = ncap;
    }
    memcpy(m->data + m->len, p, n);
    m->len += n;
}

/* Reads the file and makes it what goes between DATA and the final reply. */
static void load_message(const char *path)
{
    FILE *f = fopen(path, "rb");
    size_t cap = 0;
    bool bol = true;
    int ch;

    if (f == NULL) {
        fprintf(stderr, "smtpload: %s: %s\n", path, strerror(errno));
        exit(2);
    }
    while ((ch = getc(f)) != EOF) {
        char c = (char)ch;
        if (c == '\r')
            continue; /* re-added before every LF */
        if (bol && c == '.')
            append(&msg, &cap, ".", 1);
        if (c == '\n') {
            append(&msg, &cap, "\r\n", 2);
            bol = true;
        } else {
            append(&msg, &cap, &c, 1);
            bol = false;
        }
    }
    fclose(f);
    if (!bol)
        append(&msg, &cap, "\r\n", 2);
    append(&msg, &cap, ".\r\n", 3);
}

static void hist_add(uint64_t *hist, double seconds)
{
    uint64_t us = seconds <= 0 ? 0 : (uint64_t)(seconds * 1e6);
    unsigned b;

    if (us < HIST_SUB) {
        b = (unsigned)us;
    } else {
        unsigned msb = 63u - (unsigned)__builtin_clzll(us); /* >= 5 */
        unsigned sub = (unsigned)(us >> (msb - 5)) & (HIST_SUB - 1);
        b = (msb - 4) * HIST_SUB + sub;
    }
    if (b >= HIST_BUCKETS)
        b = HIST_BUCKETS - 1;
    hist[b]++;
}

/* The middle of bucket b, in microseconds. */
static double hist_value(unsigned b)
{
    if (b < HIST_SUB)
        return b + 0.5;
    unsigned msb = b / HIST_SUB + 4, sub = b % HIST_SUB;
    double lo = (double)((uint64_t)(HIST_SUB + sub) << (msb - 5));
    double width = (double)((uint64_t)1 << (msb - 5));
    return lo + width / 2;
}

static double hist_quantile(const uint64_t *hist, uint64_t total, double q)
{
    uint64_t want, seen = 0;

    if (total == 0)
        return 0;
    want = (uint64_t)(q * (double)total);
    if (want >= total)
        want = total - 1;
    for (unsigned b = 0; b < HIST_BUCKETS; b++) {
        seen += hist[b];
        if (seen > want)
            return hist_value(b);
    }
    return hist_value(HIST_BUCKETS - 1);
}

static int dial(void)
{
    struct addrinfo hints = {0}, *res, *ai;
    struct timeval tv = {.tv_sec = IO_TIMEOUT};
    int fd = -1, one = 1, rc;

    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(opt.host, opt.port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "smtpload: %s:%s: %s\n", opt.host, opt.port, gai_strerror(rc));
        return -1;
    }
    for (ai = res; ai != NULL; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* One reply line into line[] (cut to LINE_MAX_ - 1 bytes, CRLF removed). */
static int read_line(struct conn *c, char *line)
{
    size_t n = 0;

    for (;;) {
        if (c->off == c->len) {
            ssize_t r = recv(c->fd, c->buf, sizeof(c->buf), 0);
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                line[n] = '\0';
                return -1;
            }
            c->off = 0;
            c->len = (size_t)r;
        }
        char ch = c->buf[c->off++];
        if (ch == '\n')
            break;
        if (ch != '\r' && n < LINE_MAX_ - 1)
            line[n++] = ch;
    }
    line[n] = '\0';
    return 0;
}

/* Reads a whole (possibly multi-line) reply; returns its code, -1 on error.
 * The last line is left in last[]. */
static int read_reply(struct conn *c, char *last)
{
    for (;;) {
        if (read_line(c, last) < 0)
            return -1;
        if (strlen(last) < 3 || last[0] < '2' || last[0] > '5' || last[1] < '0' ||
            last[1] > '9' || last[2] < '0' || last[2] > '9')
            return -1;
        if (last[3] != '-')
            return (last[0] - '0') * 100 + (last[1] - '0') * 10 + (last[2] - '0');
    }
}

static int command(struct conn *c, const char *cmd, char *last)
{
    if (send_all(c->fd, cmd, strlen(cmd)) < 0)
        return -1;
    return read_reply(c, last);
}

static void note_reply(const char *stage, const char *line)
{
    pthread_mutex_lock(&report_lock);
    if (!reported) {
        reported = 1;
        fprintf(stderr, "smtpload: first non-2xx reply (at %s): %.200s\n", stage, line);
    }
    pthread_mutex_unlock(&report_lock);
}

/* Greeting, EHLO, and the optional XCLIENT. 0 when ready for MAIL. */
static int session_open(struct conn *c, char *line)
{
    char cmd[600];

    line[0] = '\0';
    c->off = c->len = 0;
    c->fd = dial();
    if (c->fd < 0)
        return -1;
    if (read_reply(c, line) != 220)
        goto bad;
    snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", opt.helo);
    if (command(c, cmd, line) != 250)
        goto bad;
    if (opt.xclient != NULL) {
        snprintf(cmd, sizeof(cmd), "XCLIENT LOGIN=%s\r\n", opt.xclient);
        if (command(c, cmd, line) != 220)
            goto bad;
        snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", opt.helo);
        if (command(c, cmd, line) != 250)
            goto bad;
    }
    return 0;
bad:
    note_reply("connect", line);
    close(c->fd);
    c->fd = -1;
    return -1;
}

static void count(struct stats *st, int code)
{
    if (code >= 200 && code < 300)
        st->c2++;
    else if (code >= 400 && code < 500)
        st->c4++;
    else
        st->c5++;
}

/* One transaction. Returns 0 to go on, -1 when the connection is unusable. */
static int transaction(struct conn *c, struct stats *st)
{
    char line[LINE_MAX_], cmd[600];
    const char *stage = "MAIL";
    double t0 = now();
    int code;

    snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>\r\n", opt.from);
    code = command(c, cmd, line);
    if (code < 0)
        return -1;
    if (code != 250)
        goto refused;
    stage = "RCPT";
    snprintf(cmd, sizeof(cmd), "RCPT TO:<%s>\r\n", opt.rcpt);
    code = command(c, cmd, line);
    if (code < 0)
        return -1;
    if (code != 250)
        goto refused;
    stage = "DATA";
    code = command(c, "DATA\r\n", line);
    if (code < 0)
        return -1;
    if (code != 354)
        goto refused;
    if (send_all(c->fd, msg.data, msg.len) < 0)
        return -1;
    code = read_reply(c, line);
    if (code < 0)
        return -1;
    st->sent++;
    hist_add(st->hist, now() - t0);
    count(st, code);
    if (code >= 300)
        note_reply("end of data", line);
    return code == 421 ? -1 : 0;
refused:
    st->sent++;
    hist_add(st->hist, now() - t0);
    count(st, code);
    note_reply(stage, line);
    if (code == 421)
        return -1;
    return command(c, "RSET\r\n", line) == 250 ? 0 : -1;
}

static bool more(long done)
{
    if (opt.per_conn > 0 && done >= opt.per_conn)
        return false;
    return opt.duration <= 0 || now() < deadline;
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct conn *c = malloc(sizeof(*c));
    char line[LINE_MAX_];
    long done = 0;
    int dial_failures = 0;

    if (c == NULL)
        return NULL;
    c->fd = -1;
    while (more(done)) {
        if (c->fd < 0) {
            if (session_open(c, line) < 0) {
                w->st.errors++;
                if (++dial_failures == MAX_DIAL_FAILURES)
                    break;
                usleep(100000);
                continue;
            }
            dial_failures = 0;
        }
        uint64_t before = w->st.sent;
        if (transaction(c, &w->st) < 0) {
            if (w->st.sent == before) /* no final reply: count it as an error */
                w->st.errors++;
            close(c->fd);
            c->fd = -1;
            w->st.reconnects++;
        }
        done++;
    }
    if (c->fd >= 0) {
        command(c, "QUIT\r\n", line);
        close(c->fd);
    }
    free(c);
    return NULL;
}

int main(int argc, char **argv)
{
    static struct worker workers[MAX_CONNS];
    struct stats total = {0};
    int ch;
    double t0, elapsed;

    opt.host = "127.0.0.1";
    opt.conns = 1;
    opt.from = "alice@example.org";
    opt.rcpt = "bob@example.net";
    opt.helo = "smtpload.localhost";
    while ((ch = getopt(argc, argv, "H:p:c:n:d:f:F:R:x:e:h")) != -1) {
        switch (ch) {
        case 'H':
            opt.host = optarg;
            break;
        case 'p':
            opt.port = optarg;
            break;
        case 'c':
            opt.conns = (int)parse_long(optarg, 1, MAX_CONNS, "connection count");
            break;
        case 'n':
            opt.per_conn = parse_long(optarg, 1, 100000000, "message count");
            break;
        case 'd':
            opt.duration = (double)parse_long(optarg, 1, 86400, "duration");
            break;
        case 'f':
            opt.file = optarg;
            break;
        case 'F':
            opt.from = optarg;
            break;
        case 'R':
            opt.rcpt = optarg;
            break;
        case 'x':
            opt.xclient = optarg;
            break;
        case 'e':
            opt.helo = optarg;
            break;
        default:
            usage();
        }
    }
    if (optind != argc || opt.port == NULL || opt.file == NULL)
        usage();
    if (strlen(opt.from) > 500 || strlen(opt.rcpt) > 500 || strlen(opt.helo) > 500 ||
        (opt.xclient != NULL && strlen(opt.xclient) > 500)) {
        fprintf(stderr, "smtpload: address or name too long\n");
        return 2;
    }
    if (opt.per_conn == 0 && opt.duration <= 0)
        opt.per_conn = 1;
    load_message(opt.file);
    signal(SIGPIPE, SIG_IGN);

    t0 = now();
    deadline = t0 + opt.duration;
    for (int i = 0; i < opt.conns; i++) {
        workers[i].id = i;
        int rc = pthread_create(&workers[i].tid, NULL, worker_main, &workers[i]);
        if (rc != 0) {
            fprintf(stderr, "smtpload: pthread_create: %s\n", strerror(rc));
            return 1;
        }
    }
    for (int i = 0; i < opt.conns; i++) {
        pthread_join(workers[i].tid, NULL);
        const struct stats *s = &workers[i].st;
        total.sent += s->sent;
        total.c2 += s->c2;
        total.c4 += s->c4;
        total.c5 += s->c5;
        total.errors += s->errors;
        total.reconnects += s->reconnects;
        for (unsigned b = 0; b < HIST_BUCKETS; b++)
            total.hist[b] += s->hist[b];
    }
    elapsed = now() - t0;

    printf("conns=%d size=%zu sent=%llu 2xx=%llu 4xx=%llu 5xx=%llu errors=%llu "
           "reconnects=%llu elapsed=%.3f rate=%.1f ok_rate=%.1f p50_ms=%.2f p99_ms=%.2f\n",
           opt.conns, msg.len - 3, (unsigned long long)total.sent,
           (unsigned long long)total.c2, (unsigned long long)total.c4,
           (unsigned long long)total.c5, (unsigned long long)total.errors,
           (unsigned long long)total.reconnects, elapsed, (double)total.sent / elapsed,
           (double)total.c2 / elapsed, hist_quantile(total.hist, total.sent, 0.50) / 1000.0,
           hist_quantile(total.hist, total.sent, 0.99) / 1000.0);
    free(msg.data);
    return total.errors > 0 && total.sent == 0 ? 1 : 0;
}
