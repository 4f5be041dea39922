/* null_milter: the cheapest milter that still reads every message, for
 * bench/run.py's accept-rate floor. It speaks the protocol through the same
 * server as filtermail-milter (milter/mserver.c) with the same negotiation
 * (every stage skipped that filtermail skips, no replies to MAIL, RCPT,
 * headers and body), and accepts every message without looking at it. What
 * Postfix loses with it is what any milter that reads the body costs.
 *
 *   null_milter unix:/path/to/socket
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include "mserver.h"

static struct mserver *server;

static enum mstatus noreply_str(struct msess *s, const char *a)
{
    (void)s;
    (void)a;
    return MS_NOREPLY;
}

static enum mstatus noreply_hdr(struct msess *s, const char *n, const char *v)
{
    (void)s;
    (void)n;
    (void)v;
    return MS_NOREPLY;
}

static enum mstatus noreply_body(struct msess *s, const unsigned char *d, size_t l)
{
    (void)s;
    (void)d;
    (void)l;
    return MS_NOREPLY;
}

static enum mstatus accept_eom(struct msess *s)
{
    (void)s;
    return MS_CONTINUE;
}

static void on_signal(int sig)
{
    (void)sig;
    mserver_stop(server);
}

int main(int argc, char **argv)
{
    static const struct mserver_callbacks cb = {
        .envfrom = noreply_str,
        .envrcpt = noreply_str,
        .header = noreply_hdr,
        .body = noreply_body,
        .eom = accept_eom,
    };
    struct mserver_config cfg = {
        .actions = 0,
        .protocol = SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH |
                    SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NR_BODY |
                    SMFIP_HDR_LEADSPC,
        .timeout = 600,
        .max_sessions = 1000,
        .cb = &cb,
    };
    char err[256];

    if (argc != 2) {
        fprintf(stderr, "usage: %s unix:/path/to/socket\n", argv[0]);
        return 1;
    }
    cfg.socket_spec = argv[1];
    server = mserver_open(&cfg, err, sizeof(err));
    if (server == NULL) {
        fprintf(stderr, "null_milter: %s\n", err);
        return 1;
    }
    /* A bench tool run as root: the listener makes the socket 0660 for its
     * owner's group (root here), and Postfix's smtpd (user postfix) must
     * connect. */
    const char *path = strncmp(argv[1], "unix:", 5) == 0 ? argv[1] + 5 : argv[1];
    if (chmod(path, 0666) < 0) {
        fprintf(stderr, "null_milter: chmod %s: %s\n", path, strerror(errno));
        return 1;
    }
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    if (mserver_run(server, err, sizeof(err)) < 0) {
        fprintf(stderr, "null_milter: %s\n", err);
        return 1;
    }
    mserver_close(&server);
    return 0;
}
