/* filtermail-transport-client: remote delivery for Postfix's pipe(8), handed
 * to filtermail-deliverd.
 *
 *     filtermail-transport-client CONFIG [-q QUEUE_ID] -f SENDER -- RECIPIENT...
 *
 * The same command line, output and exit codes as filtermail-transport, but
 * the delivery runs in the long-lived daemon, which keeps what a fresh
 * process would rebuild every time (libraries, the DNSSEC-validated cache,
 * the CA store, TLS sessions). This program links libc and the handoff only:
 * it connects to filtermail_transport_socket, passes its stdin descriptor
 * (the daemon reads the message from pipe(8) itself), sends the envelope,
 * waits for the one result line and prints it as pipe(8) wants it.
 *
 * Anything that goes wrong on the way (daemon not running, gone in the
 * middle, a malformed answer, the deadline) is a temporary failure, 4.3.0 or
 * 4.4.7 with exit 75: Postfix tries again later.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "buf.h"
#include "clock.h"
#include "config.h"
#include "deadline.h"
#include "dsn.h"
#include "handoff.h"
#include "handoffio.h"
#include "invocation.h"
#include "listener.h"
#include "pipeout.h"

/* The daemon ends a delivery at filtermail_transport_deadline and answers;
 * this process waits a little longer, so the daemon's answer wins. */
#define CLIENT_GRACE 10

int main(int argc, char **argv)
{
    struct invocation a;
    struct config *cfg = NULL;
    struct listener_addr la;
    char err[1024];

    int result_fd = pipeout_start(argc, argv, "filtermail-transport-client", &a, &cfg);
    unsigned wait_s = cfg->transport_deadline + CLIENT_GRACE;
    deadline_start(result_fd, wait_s + PIPEOUT_DEADLINE_GRACE);
    int64_t until = (int64_t)clock_mono_ms() + (int64_t)wait_s * 1000;
    if (listener_parse(cfg->transport_socket, &la, err, sizeof(err)) < 0 || !la.is_unix)
        pipeout_fail("4.3.5", "filtermail_transport_socket must be a unix socket");

    struct buf req;
    buf_init(&req, HANDOFF_REQUEST_MAX);
    if (handoff_request_format(a.queue_id, a.sender, a.rcpts, a.nrcpts, &req) < 0) {
        struct outcome o;
        if (a.nrcpts == 0 || a.nrcpts > HANDOFF_MAX_RCPTS)
            pipeout_fail("4.3.5", "%zu recipients: filtermail_destination_recipient_limit must be "
                              "1 to %d", a.nrcpts, HANDOFF_MAX_RCPTS);
        /* CR or LF in an address, or one longer than any address may be. */
        outcome_set(&o, OUTCOME_BOUNCE, "5.1.3", "Bad address syntax in the envelope");
        pipeout_exit(&o);
    }
    int s = handoff_connect(la.path, err, sizeof(err));
    if (s < 0)
        pipeout_fail("4.3.0", "filtermail-deliverd is not reachable: %s", err);
    if (handoff_send(s, &req, STDIN_FILENO, until, err, sizeof(err)) < 0)
        pipeout_fail("4.3.0", "filtermail-deliverd: %s", err);
    buf_free(&req);
    /* The daemon has the descriptor now; ours is no longer needed. */
    close(STDIN_FILENO);
    struct outcome o;
    if (handoff_recv_reply(s, until, &o, err, sizeof(err)) < 0)
        pipeout_fail("4.3.0", "filtermail-deliverd: %s", err);
    close(s);
    config_free(&cfg);
    pipeout_exit(&o);
}
