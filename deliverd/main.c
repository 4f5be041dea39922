/* filtermail-deliverd: the delivery daemon behind filtermail-transport-client.
 *
 *     filtermail-deliverd CONFIG
 *
 * pipe(8) starts a process per delivery; a process that links libcurl,
 * OpenSSL and libunbound spends most of a delivery's CPU on starting
 * (bench/README.md). This daemon starts once: the libraries, the DNSSEC
 * resolver (whose cache keeps validated answers for their TTL) and the TLS
 * policy file are set up at start-up, and each delivery handed over on
 * filtermail_transport_socket runs in a thread of its own (serve.c). HTTPS
 * connections to remote relays stay open between deliveries and are reused
 * (https_share_connections).
 *
 * Wiring only: the configuration, the listening socket (created as root,
 * given to filtermail_user and filtermail_socket_group with mode 0660), the
 * privilege drop before any thread, the accept thread, signals and the
 * watchdog. SIGTERM stops accepting and waits for the deliveries under way
 * (at most filtermail_transport_deadline).
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "clock.h"
#include "config.h"
#include "dns.h"
#include "https.h"
#include "listener.h"
#include "log.h"
#include "pipeout.h"
#include "privs.h"
#include "sdnotify.h"
#include "serve.h"
#include "tlspolicy.h"

#define TARGET "filtermail::deliverd"

/* Deliveries at once (master.cf's maxproc is 100). More wait in the
 * listen backlog. */
#define MAX_DELIVERIES 256
/* Every domain in the limit's table has a delivery thread. */
_Static_assert(DESTLIMIT_SLOTS >= MAX_DELIVERIES, "destlimit's table fits every delivery");
#define THREAD_STACK (512 * 1024)

static struct serve_ctx sc;
static atomic_uint running;
static pthread_mutex_t slots_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t slots_free = PTHREAD_COND_INITIALIZER;
/* Delivery threads that ended and are still to be joined (slots_lock).
 * Threads are joined, never detached, so that when main returns no delivery
 * thread runs any more, not even its exit (OpenSSL's thread-local clean-up)
 * under the exit handlers. At most MAX_DELIVERIES run, so this fits. */
static pthread_t ended[MAX_DELIVERIES];
static unsigned nended;

struct job {
    int conn;
};

static void *delivery_thread(void *arg)
{
    struct job *j = arg;
    serve_connection(&sc, j->conn);
    free(j);
    pthread_mutex_lock(&slots_lock);
    if (nended < MAX_DELIVERIES)
        ended[nended++] = pthread_self();
    else
        pthread_detach(pthread_self()); /* cannot happen: see ended[] */
    running--;
    pthread_cond_broadcast(&slots_free);
    pthread_mutex_unlock(&slots_lock);
    return NULL;
}

/* Joins the delivery threads that have ended (each has only its return
 * left). */
static void reap_ended(void)
{
    pthread_t batch[MAX_DELIVERIES];
    pthread_mutex_lock(&slots_lock);
    unsigned n = nended;
    memcpy(batch, ended, n * sizeof(batch[0]));
    nended = 0;
    pthread_mutex_unlock(&slots_lock);
    for (unsigned i = 0; i < n; i++)
        pthread_join(batch[i], NULL);
}

static void *accept_thread(void *arg)
{
    int lfd = *(int *)arg;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, THREAD_STACK);
    for (;;) {
        reap_ended();
        pthread_mutex_lock(&slots_lock);
        while (running >= MAX_DELIVERIES)
            pthread_cond_wait(&slots_free, &slots_lock);
        pthread_mutex_unlock(&slots_lock);
        int c = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EBADF || errno == EINVAL)
                break; /* shut down */
            if (errno != EINTR && errno != ECONNABORTED)
                log_err(TARGET, "accept: %s", strerror(errno));
            if (errno == EMFILE || errno == ENFILE || errno == ENOMEM)
                usleep(100 * 1000);
            continue;
        }
        struct job *j = malloc(sizeof(*j));
        pthread_t t;
        if (j == NULL) {
            close(c); /* the client defers (4.3.0) */
            continue;
        }
        j->conn = c;
        pthread_mutex_lock(&slots_lock);
        running++;
        pthread_mutex_unlock(&slots_lock);
        if (pthread_create(&t, &attr, delivery_thread, j) != 0) {
            log_err(TARGET, "cannot start a delivery thread");
            close(c);
            free(j);
            pthread_mutex_lock(&slots_lock);
            running--;
            pthread_mutex_unlock(&slots_lock);
        }
    }
    pthread_attr_destroy(&attr);
    return NULL;
}

int main(int argc, char **argv)
{
    char err[1024];
    struct config *cfg;
    struct listener_addr la;
    struct listener lsn;
    struct tls_policy_table *policy = NULL;
    sigset_t sigs;

    if (argc == 2 && strcmp(argv[1], "-V") == 0) {
        printf("filtermail-deliverd %s\n", FILTERMAIL_VERSION);
        return 0;
    }
    if (argc != 2 || argv[1][0] == '-') {
        fprintf(stderr, "Usage: %s <config_file>\n", argv[0]);
        fprintf(stderr, "  the relay's chatmail.ini; see filtermail-deliverd(8)\n");
        return 1;
    }
    if (config_load(argv[1], &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "Failed to read config: %s\n", err);
        return 1;
    }
    log_init("filtermail-deliverd", cfg->log_level);
    if (listener_parse(cfg->transport_socket, &la, err, sizeof(err)) < 0 || !la.is_unix) {
        fprintf(stderr, "Server error: filtermail_transport_socket must be a unix socket\n");
        return 1;
    }
    if (cfg->transport_tls_policy[0] != '\0' &&
        tls_policy_load(cfg->transport_tls_policy, &policy, err, sizeof(err)) < 0) {
        fprintf(stderr, "Failed to read config: filtermail_transport_tls_policy: %s\n", err);
        return 1;
    }
    struct dns_config dc = {.unbound_config = cfg->unbound_config,
                            .trust_anchor = cfg->trust_anchor,
                            .start_later = true};
    sc.dns = dns_resolver_new(&dc, err, sizeof(err));
    if (sc.dns == NULL) {
        fprintf(stderr, "Server error: DNS resolver: %s\n", err);
        return 1;
    }
    if (listener_open(&lsn, &la, 511, 0, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: %s\n", err);
        return 1;
    }
    if (privs_drop(cfg->user, cfg->transport_socket, cfg->socket_group, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: %s\n", err);
        return 1;
    }
    if (geteuid() == 0) {
        fprintf(stderr, "Server error: filtermail-deliverd refuses to deliver as root\n");
        return 1;
    }
    /* Where filtermail-transport's log lines go: operators' rules read the
     * delivery lines there. */
    if (pipeout_log_sink(cfg->transport_log, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: %s\n", err);
        return 1;
    }
    /* Signals are taken by the loop below, never by the delivery threads. */
    sdnotify_block_signals(&sigs);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "Server error: cannot initialise libcurl\n");
        return 1;
    }
    if (https_share_connections() < 0)
        log_warn(TARGET, "cannot keep HTTPS connections between deliveries: each connects anew");
    if (dns_resolver_start(sc.dns, err, sizeof(err)) < 0) {
        fprintf(stderr, "Server error: DNS resolver: %s\n", err);
        return 1;
    }
    sc.cfg = cfg;
    sc.policy = policy;
    sc.batcher = batcher_new();
    if (sc.batcher == NULL)
        log_warn(TARGET, "out of memory for batches: every delivery goes alone");
    sc.limit = destlimit_new(cfg->transport_destination_concurrency);
    if (sc.limit == NULL)
        log_warn(TARGET, "out of memory for the limit per domain: deliveries go unlimited");
    pthread_t acceptor;
    if (pthread_create(&acceptor, NULL, accept_thread, &lsn.fd) != 0) {
        fprintf(stderr, "Server error: cannot start the accept thread\n");
        return 1;
    }
    log_info("filtermail", "entering serving loop");
    log_debug(TARGET, "accepting deliveries on %s", cfg->transport_socket);
    sdnotify_ready("accepting deliveries");

    for (;;) {
        int sig = sdnotify_wait_signal(&sigs);
        if (sig == SIGHUP) {
            log_info(TARGET, "SIGHUP: the configuration is read at start only (restart to "
                             "change it)");
            continue;
        }
        log_info(TARGET, "shutting down on signal %d", sig);
        break;
    }
    sdnotify_stopping();
    /* No new deliveries: shutdown(2) wakes the accept thread. */
    shutdown(lsn.fd, SHUT_RDWR);
    pthread_join(acceptor, NULL);
    listener_close(&lsn);
    int64_t until = (int64_t)clock_mono_ms() + (int64_t)cfg->transport_deadline * 1000 + 5000;
    pthread_mutex_lock(&slots_lock);
    while (running > 0 && (int64_t)clock_mono_ms() < until) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&slots_free, &slots_lock, &ts);
    }
    unsigned left = running;
    pthread_mutex_unlock(&slots_lock);
    if (left > 0) {
        log_warn(TARGET, "%u deliveries still under way at exit", left);
        _exit(0); /* their clients defer (4.3.0); no exit handlers under them */
    }
    reap_ended();
    return 0;
}
