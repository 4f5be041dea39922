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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>

#include "clock.h"
#include "config.h"
#include "deadline.h"
#include "deliver.h"
#include "dns.h"
#include "dsn.h"
#include "envelope.h"
#include "fdio.h"
#include "invocation.h"
#include "log.h"
#include "pipeout.h"
#include "spool.h"
#include "state.h"
#include "tlspolicy.h"

#define TARGET "filtermail::transport"

/* Headroom over max_message_size for what Postfix adds (Received:). */
#define SIZE_SLACK (256 * 1024)

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

int main(int argc, char **argv)
{
    struct invocation a;
    struct config *cfg = NULL;
    char err[1024];

    int result_fd = pipeout_start(argc, argv, "filtermail-transport", &a, &cfg);
    deadline_start(result_fd, cfg->transport_deadline + PIPEOUT_DEADLINE_GRACE);
    int64_t deadline = (int64_t)clock_mono_ms() + (int64_t)cfg->transport_deadline * 1000;
    if (pipeout_log_sink(cfg->transport_log, err, sizeof(err)) < 0)
        pipeout_fail("4.3.5", "%s", err);
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
    enum spool_status ss = spool_from_fd(STDIN_FILENO, cfg->transport_state, max_in, deadline,
                                         &msg, err, sizeof(err));
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
        random = (uint32_t)getpid() ^ (uint32_t)clock_mono_ns();
    struct deliver_ctx ctx = {
        .cfg = cfg,
        .dns = dns,
        .state = state,
        .policy = policy,
        .deadline = deadline,
        .now_unix = (int64_t)(clock_wall_ns() / CLOCK_NS_PER_SEC),
        .random = random,
        .queue_id = a.queue_id,
        .settled = deadline_settle,
    };
    struct deliver_report rep;
    uint64_t t0 = clock_mono_ns();
    deliver_run(&ctx, &env, &msg, &out, &rep);
    char summary[2048];
    deliver_summary(&env, &rep, clock_elapsed_s(t0), msg.size, &out, summary, sizeof(summary));
    log_info(TARGET, "%s: %s", a.queue_id, summary);
    log_memory(a.queue_id);
    curl_global_cleanup();
cleanup:
    dns_resolver_free(&dns);
    tls_policy_free(&policy);
    spool_close(&msg);
    state_close(&state);
done:
    pipeout_emit(&out);
    config_free(&cfg);
    return dsn_exit_status(&out);
}
