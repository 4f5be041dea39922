/* pipeout: the result line on a saved stdout, and the log sink. */
#include "pipeout.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deadline.h"
#include "fdio.h"
#include "log.h"

static int result_fd = STDOUT_FILENO;

int pipeout_init(void)
{
    int fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 10);
    result_fd = fd >= 0 ? fd : STDOUT_FILENO;
    return result_fd;
}

void pipeout_emit(const struct outcome *o)
{
    char line[DSN_TEXT_MAX + 32];
    size_t n = dsn_format(o, line, sizeof(line));
    (void)fd_write_all(result_fd, line, n);
}

noreturn void pipeout_exit(const struct outcome *o)
{
    pipeout_emit(o);
    exit(dsn_exit_status(o));
}

noreturn void pipeout_fail(const char *dsn, const char *fmt, ...)
{
    struct outcome o;
    char text[DSN_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    outcome_set(&o, OUTCOME_TEMPFAIL, dsn, "%s", text);
    pipeout_exit(&o);
}

int pipeout_log_sink(const char *sink, char *err, size_t errlen)
{
    if (strcmp(sink, "stderr") == 0)
        return 0;
    if (strcmp(sink, "syslog") == 0) {
        log_to_syslog("filtermail-transport");
        return 0;
    }
    int fd = open(sink, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open filtermail_transport_log %s: %s", sink,
                 strerror(errno));
        return -1;
    }
    int rc = dup2(fd, STDERR_FILENO);
    int e = errno;
    close(fd);
    if (rc < 0) {
        snprintf(err, errlen, "cannot set up logging: %s", strerror(e));
        return -1;
    }
    return 0;
}

int pipeout_start(int argc, char **argv, const char *prog, struct invocation *a,
                  struct config **cfg_r)
{
    char err[1024];
    signal(SIGPIPE, SIG_IGN);
    /* The result line must not be lost to buffering or mixed with logs. */
    int fd = pipeout_init();
    /* Until the configuration is read, the longest a delivery may take. */
    deadline_start(fd, 1000 - PIPEOUT_DEADLINE_GRACE);
    if (invocation_parse(argc, argv, a) < 0)
        pipeout_fail("4.3.5", "usage: %s CONFIG [-q QUEUE_ID] -f SENDER -- RECIPIENT... "
                              "(check the transport's argv in master.cf)", prog);
    if (geteuid() == 0)
        pipeout_fail("4.3.5", "%s refuses to run as root (set user= in master.cf)", prog);
    *cfg_r = NULL;
    if (config_load(a->config, cfg_r, err, sizeof(err)) < 0)
        pipeout_fail("4.3.5", "Failed to read config: %s", err);
    return fd;
}
