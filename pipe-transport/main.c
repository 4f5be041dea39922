/* filtermail-transport: remote delivery for Postfix's pipe(8).
 *
 *     filtermail-transport CONFIG [-q QUEUE_ID] -f SENDER -- RECIPIENT...
 *
 * Reads the message from stdin into a bounded temporary file, delivers it to
 * the recipients' domain (deliver.c: DNSSEC-validated MX, HTTPS /mxdeliv
 * first, verified-TLS SMTP second) and tells pipe(8) the result the only way
 * it listens: the exit status (sysexits) and a first output line "4.X.Y text"
 * or "5.X.Y text". Everything that is not a definitive refusal is a temporary
 * failure (exit 75), including bad configuration and our own errors, and an
 * internal deadline ends the process well before pipe(8)'s time limit (which
 * would bounce).
 *
 * stdout and stderr both become the DSN text, so log lines go elsewhere:
 * syslog (mail facility) by default, or a file (filtermail_transport_log).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "config.h"
#include "deliver.h"
#include "dns.h"
#include "dsn.h"
#include "envelope.h"
#include "fdio.h"
#include "log.h"
#include "netio.h"
#include "spool.h"
#include "state.h"
#include "tlspolicy.h"

#define TARGET "filtermail::transport"

/* Headroom over max_message_size for what Postfix adds (Received:). */
#define SIZE_SLACK (256 * 1024)

/* The alarm that backs the internal deadline, should a wait overrun it. */
#define DEADLINE_GRACE 15

/* Writes the result line on the saved stdout and exits. */
static int result_fd = STDOUT_FILENO;

static void emit(const struct outcome *o)
{
    char line[DSN_TEXT_MAX + 32];
    size_t n = dsn_format(o, line, sizeof(line));
    (void)fd_write_all(result_fd, line, n); /* pipe(8) gone: nothing to tell */
}

static noreturn void fail_now(const char *dsn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static noreturn void fail_now(const char *dsn, const char *fmt, ...)
{
    struct outcome o;
    char text[DSN_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    outcome_set(&o, OUTCOME_TEMPFAIL, dsn, "%s", text);
    emit(&o);
    exit(DSN_EX_TEMPFAIL);
}

/* The outcome once it is settled (the remote has answered): a deadline that
 * strikes afterwards, in the state bookkeeping, reports it instead of a
 * deferral, so a delivered message is never delivered again. */
static char settled_line[DSN_TEXT_MAX + 32];
static size_t settled_len;
static volatile sig_atomic_t settled_status = -1;

static void on_settled(const struct outcome *o)
{
    settled_len = dsn_format(o, settled_line, sizeof(settled_line));
    settled_status = dsn_exit_status(o);
}

static void on_alarm(int sig)
{
    static const char msg[] = "4.4.7 filtermail-transport: internal deadline exceeded\n";
    (void)sig;
    int status = settled_status;
    if (status >= 0) {
        if (write(result_fd, settled_line, settled_len) < 0) {
            /* nothing left to do */
        }
        _exit(status);
    }
    if (write(result_fd, msg, sizeof(msg) - 1) < 0) {
        /* nothing left to do */
    }
    _exit(DSN_EX_TEMPFAIL);
}

/* ------------------------------------------------------------------------ */
/* Log lines to syslog: a thread forwards what log.c writes to stderr. */

struct syslog_fwd {
    int rfd;
    pthread_t thread;
    bool running;
};

static void *syslog_pump(void *arg)
{
    struct syslog_fwd *f = arg;
    char buf[8192];
    size_t len = 0;
    for (;;) {
        ssize_t n = read(f->rfd, buf + len, sizeof(buf) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        char *start = buf, *nl;
        while ((nl = memchr(start, '\n', len - (size_t)(start - buf))) != NULL) {
            *nl = '\0';
            int prio = LOG_INFO;
            if (strncmp(start, "[ERROR", 6) == 0)
                prio = LOG_ERR;
            else if (strncmp(start, "[WARN", 5) == 0)
                prio = LOG_WARNING;
            else if (strncmp(start, "[DEBUG", 6) == 0 || strncmp(start, "[TRACE", 6) == 0)
                prio = LOG_DEBUG;
            syslog(prio, "%s", start);
            start = nl + 1;
        }
        len -= (size_t)(start - buf);
        memmove(buf, start, len);
        if (len == sizeof(buf) - 1) {
            buf[len] = '\0';
            syslog(LOG_INFO, "%s", buf);
            len = 0;
        }
    }
    if (len > 0) {
        buf[len] = '\0';
        syslog(LOG_INFO, "%s", buf);
    }
    return NULL;
}

/* Points stderr at the configured sink. */
static void log_sink(const char *sink, struct syslog_fwd *f)
{
    f->running = false;
    if (strcmp(sink, "stderr") == 0)
        return;
    int fd;
    if (strcmp(sink, "syslog") == 0) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
            fail_now("4.3.0", "cannot set up logging: %s", strerror(errno));
        openlog("filtermail-transport", LOG_PID | LOG_NDELAY, LOG_MAIL);
        f->rfd = p[0];
        if (pthread_create(&f->thread, NULL, syslog_pump, f) != 0)
            fail_now("4.3.0", "cannot set up logging");
        f->running = true;
        fd = p[1];
    } else {
        fd = open(sink, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
        if (fd < 0)
            fail_now("4.3.5", "cannot open filtermail_transport_log %s: %s", sink,
                     strerror(errno));
    }
    if (dup2(fd, STDERR_FILENO) < 0)
        fail_now("4.3.0", "cannot set up logging: %s", strerror(errno));
    close(fd);
}

static void log_sink_close(struct syslog_fwd *f)
{
    if (!f->running)
        return;
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null >= 0) {
        dup2(null, STDERR_FILENO); /* the pipe's last writer: the pump ends */
        close(null);
    }
    pthread_join(f->thread, NULL);
    close(f->rfd);
    closelog();
}

/* At debug level: the process's peak and private memory, for operators and
 * the benchmark (shared library pages count in the peak, not in RssAnon). */
static void log_memory(const char *queue_id)
{
    char line[256], hwm[64] = "?", anon[64] = "?";
    FILE *f;
    if (!log_enabled(LOGL_DEBUG) || (f = fopen("/proc/self/status", "re")) == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmHWM:", 6) == 0)
            sscanf(line + 6, "%63s", hwm);
        else if (strncmp(line, "RssAnon:", 8) == 0)
            sscanf(line + 8, "%63s", anon);
    }
    fclose(f);
    log_debug(TARGET, "%s: memory: peak RSS %s KiB, private (RssAnon) %s KiB", queue_id, hwm,
              anon);
}

/* ------------------------------------------------------------------------ */

struct args {
    const char *config;
    const char *queue_id;
    const char *sender;
    const char *const *rcpts;
    size_t nrcpts;
};

static int parse_args(int argc, char **argv, struct args *a)
{
    int i = 2;
    memset(a, 0, sizeof(*a));
    a->queue_id = "-";
    if (argc < 2 || argv[1][0] == '-')
        return -1;
    a->config = argv[1];
    while (i < argc) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "-q") == 0 && i + 1 < argc) {
            a->queue_id = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
            a->sender = argv[i + 1];
            i += 2;
        } else {
            return -1;
        }
    }
    if (a->sender == NULL)
        return -1;
    a->rcpts = (const char *const *)argv + i;
    a->nrcpts = (size_t)(argc - i);
    return 0;
}

/* A queue id goes into log lines: keep it short and plain. */
static bool queue_id_ok(const char *q)
{
    size_t n = 0;
    for (; *q != '\0'; q++, n++)
        if (!((*q >= '0' && *q <= '9') || (*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') ||
              *q == '-'))
            return false;
    return n > 0 && n <= 32;
}

int main(int argc, char **argv)
{
    struct args a;
    struct config *cfg = NULL;
    char err[1024];
    struct syslog_fwd fwd = {0};

    signal(SIGPIPE, SIG_IGN);
    /* Until the configuration is read, the longest a delivery may take. */
    signal(SIGALRM, on_alarm);
    alarm(1000 - DEADLINE_GRACE);
    /* The result line must not be lost to buffering or mixed with logs. */
    result_fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 10);
    if (result_fd < 0)
        result_fd = STDOUT_FILENO;

    if (parse_args(argc, argv, &a) < 0)
        fail_now("4.3.5", "usage: filtermail-transport CONFIG [-q QUEUE_ID] -f SENDER -- "
                          "RECIPIENT... (check the transport's argv in master.cf)");
    if (!queue_id_ok(a.queue_id))
        a.queue_id = "-";
    if (geteuid() == 0)
        fail_now("4.3.5", "filtermail-transport refuses to run as root (set user= in master.cf)");
    if (config_load(a.config, &cfg, err, sizeof(err)) < 0)
        fail_now("4.3.5", "Failed to read config: %s", err);
    alarm(cfg->transport_deadline + DEADLINE_GRACE);
    int64_t deadline = netio_now_ms() + (int64_t)cfg->transport_deadline * 1000;
    log_sink(cfg->transport_log, &fwd);
    log_init("filtermail-transport", cfg->log_level);

    struct envelope env;
    struct outcome out;
    enum envelope_status es = envelope_check(a.sender, a.rcpts, a.nrcpts, &env, err, sizeof(err));
    if (es == ENVELOPE_BAD_ADDRESS) {
        outcome_set(&out, OUTCOME_BOUNCE, "5.1.3", "%s", err);
        goto done;
    }
    if (es != ENVELOPE_OK) {
        outcome_set(&out, OUTCOME_TEMPFAIL, "4.3.5", "%s", err);
        log_err(TARGET, "%s: %s", a.queue_id, err);
        goto done;
    }

    struct state_store *state = NULL;
    if (cfg->transport_state[0] != '\0') {
        state = state_open(cfg->transport_state, err, sizeof(err));
        if (state == NULL)
            log_warn(TARGET, "%s: no shared state: %s", a.queue_id, err);
    }
    struct spool msg;
    uint64_t max_in = cfg->max_message_size + SIZE_SLACK;
    if (max_in < cfg->max_message_size)
        max_in = UINT64_MAX;
    enum spool_status ss = spool_from_fd(STDIN_FILENO, cfg->transport_state, max_in, &msg, err,
                                         sizeof(err));
    if (ss == SPOOL_TOO_BIG) {
        outcome_set(&out, OUTCOME_BOUNCE, "5.3.4", "Message too big for system: %s", err);
        state_close(&state);
        goto done;
    }
    if (ss != SPOOL_OK) {
        outcome_set(&out, OUTCOME_TEMPFAIL, "4.3.0", "%s", err);
        log_err(TARGET, "%s: %s", a.queue_id, err);
        state_close(&state);
        goto done;
    }

    struct tls_policy_table *policy = NULL;
    struct dns_resolver *dns = NULL;
    if (cfg->transport_tls_policy[0] != '\0' &&
        tls_policy_load(cfg->transport_tls_policy, &policy, err, sizeof(err)) < 0) {
        outcome_set(&out, OUTCOME_TEMPFAIL, "4.3.5", "filtermail_transport_tls_policy: %s", err);
        log_err(TARGET, "%s: %s", a.queue_id, out.text);
        goto cleanup;
    }
    if (env.kind == ENVELOPE_NAME) {
        struct dns_config dc = {.unbound_config = cfg->unbound_config,
                                .trust_anchor = cfg->trust_anchor};
        dns = dns_resolver_new(&dc, err, sizeof(err));
        if (dns == NULL) {
            outcome_set(&out, OUTCOME_TEMPFAIL, "4.3.5", "DNS resolver: %s", err);
            log_err(TARGET, "%s: %s", a.queue_id, out.text);
            goto cleanup;
        }
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        outcome_set(&out, OUTCOME_TEMPFAIL, "4.3.0", "cannot initialise libcurl");
        goto cleanup;
    }
    uint32_t random = 0;
    if (getrandom(&random, sizeof(random), GRND_NONBLOCK) != sizeof(random))
        random = (uint32_t)getpid() ^ (uint32_t)time(NULL);
    struct deliver_ctx ctx = {
        .cfg = cfg,
        .dns = dns,
        .state = state,
        .policy = policy,
        .deadline = deadline,
        .now_unix = (int64_t)time(NULL),
        .random = random,
        .queue_id = a.queue_id,
        .settled = on_settled,
    };
    struct deliver_report rep;
    int64_t t0 = netio_now_ms();
    deliver_run(&ctx, &env, &msg, &out, &rep);
    const char *status = out.cls == OUTCOME_DELIVERED ? "sent"
                         : out.cls == OUTCOME_BOUNCE  ? "bounced"
                                                      : "deferred";
    log_info(TARGET,
             "%s: to=<%.300s>%s, relay=%s%s%s%s%s, delay=%.3f, size=%llu, status=%s (%s%s%s)",
             a.queue_id, env.rcpts[0], env.nrcpts > 1 ? " and others" : "", rep.relay,
             rep.channel[0] ? "/" : "", rep.channel, rep.tls[0] ? ", tls=" : "", rep.tls,
             (double)(netio_now_ms() - t0) / 1000.0, (unsigned long long)msg.size, status,
             out.cls == OUTCOME_DELIVERED ? "" : out.dsn, out.cls == OUTCOME_DELIVERED ? "" : " ",
             out.text);
    log_memory(a.queue_id);
    curl_global_cleanup();
cleanup:
    dns_resolver_free(&dns);
    tls_policy_free(&policy);
    spool_close(&msg);
    state_close(&state);
done:
    emit(&out);
    log_sink_close(&fwd);
    config_free(&cfg);
    return dsn_exit_status(&out);
}
