/* serve: one delivery handed over by filtermail-transport-client.
 *
 * Reads the request and the message descriptor (handoffio.h), checks the
 * envelope, spools the message from pipe(8)'s pipe, delivers it (deliver.c,
 * with the daemon's resolver, whose cache keeps DNSSEC-validated answers for
 * their TTL) and answers with the outcome as soon as it is settled, before
 * the shared state is updated. Logs the delivery's line as
 * filtermail-transport does. Deliveries of one message to one domain that
 * arrive together go out together (batch.h); at most
 * filtermail_transport_destination_concurrency go to one domain at once
 * (destlimit.h).
 *
 * Thread-safe: any number of connections at once, one thread each.
 */
#ifndef FILTERMAIL_DELIVERD_SERVE_H
#define FILTERMAIL_DELIVERD_SERVE_H

#include "config.h"
#include "batch.h"
#include "destlimit.h"
#include "dns.h"
#include "tlspolicy.h"

/* How long a client may take to send its request. */
#define SERVE_REQUEST_WAIT_MS 10000

struct serve_ctx {
    const struct config *cfg;
    struct dns_resolver *dns;
    const struct tls_policy_table *policy; /* NULL: no exceptions */
    struct batcher *batcher;               /* NULL: every delivery alone */
    struct destlimit *limit;               /* NULL: no limit per domain */
};

/* Serves the connection conn and closes it. */
void serve_connection(const struct serve_ctx *sc, int conn);

#endif
