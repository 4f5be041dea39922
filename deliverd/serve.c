/* serve: request in, delivery, outcome out. */
#include "serve.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "batch.h"
#include "buf.h"
#include "clock.h"
#include "deliver.h"
#include "destlimit.h"
#include "envelope.h"
#include "handoff.h"
#include "handoffio.h"
#include "log.h"
#include "spool.h"
#include "state.h"

#define TARGET "filtermail::transport"

/* Headroom over max_message_size for what Postfix adds (Received:). */
#define SIZE_SLACK (256 * 1024)
/* How long the answer may take to leave once the delivery has ended. */
#define REPLY_WAIT_MS 10000
/* How long past its own deadline a batch member waits for the batch. The
 * leader came first, so its deadline is the earlier one and its delivery
 * keeps to it, but its last steps may run a moment over; a member that gave
 * up then would be deferred while the batch delivered it, and get a second
 * copy on the retry. The client waits 10 s past the deadline
 * (transport-client/main.c), so the member still answers first. */
#define MEMBER_GRACE_MS 5000

/* deliver_run's settled hook has no argument: the connection it answers on
 * is the thread's own. */
static _Thread_local int reply_sock = -1;
static _Thread_local bool reply_sent;

static void reply(const struct outcome *o)
{
    if (reply_sock < 0 || reply_sent)
        return;
    reply_sent = true;
    (void)handoff_send_reply(reply_sock, o, (int64_t)clock_mono_ms() + REPLY_WAIT_MS);
}

/* Joins the batch of its kind, when batches are on and the delivery is one
 * recipient of a known queue id. NULL: deliver alone. */
static struct batch *join(const struct serve_ctx *sc, const struct handoff_request *req,
                          const struct envelope *env, const struct spool *msg, bool *leader_r)
{
    struct batch_key key;
    if (sc->batcher == NULL || req->nrcpts != 1 || strcmp(req->queue_id, "-") == 0)
        return NULL;
    memset(&key, 0, sizeof(key));
    size_t s = strlen(req->sender), q = strlen(req->queue_id), d = strlen(env->domain);
    if (s >= sizeof(key.sender) || q >= sizeof(key.queue_id) || d >= sizeof(key.domain))
        return NULL;
    memcpy(key.sender, req->sender, s);
    memcpy(key.queue_id, req->queue_id, q);
    memcpy(key.domain, env->domain, d);
    key.size = msg->size;
    memcpy(key.digest, msg->digest, sizeof(key.digest));
    return batch_join(sc->batcher, &key, req->rcpts[0], leader_r);
}

/* A place among the deliveries to env's domain (destlimit.h); false, with
 * the outcome set and settled, when the deadline passed first. *held_r:
 * whether there is a place to give back. */
static bool take_place(const struct serve_ctx *sc, const struct deliver_ctx *ctx,
                       const struct envelope *env, bool *held_r, struct outcome *out,
                       struct deliver_report *rep)
{
    *held_r = false;
    if (sc->limit == NULL)
        return true;
    enum destlimit_result lr = destlimit_acquire(sc->limit, env->domain, ctx->deadline);
    if (lr == DESTLIMIT_DEADLINE) {
        memset(rep, 0, sizeof(*rep));
        snprintf(rep->relay, sizeof(rep->relay), "none");
        outcome_set(out, OUTCOME_TEMPFAIL, "4.4.7",
                    "delivery deadline of %u s reached while %u deliveries to %s were under way",
                    (unsigned)sc->cfg->transport_deadline,
                    (unsigned)sc->cfg->transport_destination_concurrency, env->domain);
        if (ctx->settled != NULL)
            ctx->settled(out);
        return false;
    }
    if (lr == DESTLIMIT_WAITED)
        log_debug(TARGET, "%s: waited for one of the %u deliveries at once to %s", ctx->queue_id,
                  (unsigned)sc->cfg->transport_destination_concurrency, env->domain);
    *held_r = lr != DESTLIMIT_UNLIMITED;
    return true;
}

static void give_place(const struct serve_ctx *sc, const struct envelope *env, bool *held)
{
    if (*held)
        destlimit_release(sc->limit, env->domain);
    *held = false;
}

static void deliver(const struct serve_ctx *sc, const struct handoff_request *req, int msg_fd,
                    int64_t deadline, struct outcome *out)
{
    const struct config *cfg = sc->cfg;
    struct envelope env;
    char err[1024];

    enum envelope_status es =
        envelope_check(req->sender, req->rcpts, req->nrcpts, &env, err, sizeof(err));
    if (es == ENVELOPE_BAD_ADDRESS) {
        outcome_set(out, OUTCOME_BOUNCE, "5.1.3", "%s", err);
        return;
    }
    if (es != ENVELOPE_OK) {
        outcome_set(out, OUTCOME_TEMPFAIL, "4.3.5", "%s", err);
        log_err(TARGET, "%s: %s", req->queue_id, err);
        return;
    }
    struct state_store *state = NULL;
    if (cfg->transport_state[0] != '\0') {
        state = state_open(cfg->transport_state, err, sizeof(err));
        if (state == NULL)
            log_warn(TARGET, "%s: no shared state: %s", req->queue_id, err);
    }
    struct spool msg;
    uint64_t max_in = cfg->max_message_size + SIZE_SLACK;
    if (max_in < cfg->max_message_size)
        max_in = UINT64_MAX;
    enum spool_status ss =
        spool_from_fd(msg_fd, cfg->transport_state, max_in, deadline, &msg, err, sizeof(err));
    if (ss != SPOOL_OK) {
        if (ss == SPOOL_TOO_BIG) {
            outcome_set(out, OUTCOME_BOUNCE, "5.3.4", "Message too big for system: %s", err);
        } else {
            outcome_set(out, OUTCOME_TEMPFAIL, "4.3.0", "%s", err);
            log_err(TARGET, "%s: %s", req->queue_id, err);
        }
        state_close(&state);
        return;
    }
    uint32_t random = 0;
    if (getrandom(&random, sizeof(random), GRND_NONBLOCK) != sizeof(random))
        random = (uint32_t)clock_mono_ns();
    struct deliver_ctx ctx = {
        .cfg = cfg,
        .dns = sc->dns,
        .state = state,
        .policy = sc->policy,
        .deadline = deadline,
        .now_unix = (int64_t)(clock_wall_ns() / CLOCK_NS_PER_SEC),
        .random = random,
        .queue_id = req->queue_id,
        .settled = reply,
    };
    struct deliver_report rep;
    uint64_t t0 = clock_mono_ns();
    bool leader = false, done = false, held = false;
    struct batch *bt = join(sc, req, &env, &msg, &leader);
    if (bt != NULL && leader) {
        /* The place first: recipients that come meanwhile join the batch. */
        ctx.settled = NULL;
        bool placed = take_place(sc, &ctx, &env, &held, out, &rep);
        size_t n;
        const char *const *rcpts = batch_close(sc->batcher, bt, deadline, &n);
        struct envelope all;
        if (!placed) {
            /* out says why; the members try alone, within their deadline. */
        } else if (n == 1) {
            /* Alone: as without batches, answered as soon as settled. */
            ctx.settled = reply;
            deliver_run(&ctx, &env, &msg, out, &rep);
            done = true;
        } else if (envelope_check(req->sender, rcpts, n, &all, err, sizeof(err)) == ENVELOPE_OK) {
            deliver_run(&ctx, &all, &msg, out, &rep);
            log_debug(TARGET, "%s: %zu recipients at %s together: %s", req->queue_id, n,
                      env.domain, out->cls == OUTCOME_DELIVERED ? "delivered" : out->text);
            done = out->cls == OUTCOME_DELIVERED;
        } else {
            outcome_set(out, OUTCOME_TEMPFAIL, "4.3.0", "%s", err);
            memset(&rep, 0, sizeof(rep));
        }
        give_place(sc, &env, &held);
        batch_finish(sc->batcher, bt, out, &rep);
        done = done || !placed;
    } else if (bt != NULL) {
        if (batch_wait(sc->batcher, bt, deadline + MEMBER_GRACE_MS, out, &rep) < 0) {
            outcome_set(out, OUTCOME_TEMPFAIL, "4.4.7", "delivery deadline of %u s reached",
                        (unsigned)cfg->transport_deadline);
            snprintf(rep.relay, sizeof(rep.relay), "none");
            rep.channel[0] = rep.tls[0] = '\0';
            done = true;
        } else {
            done = out->cls == OUTCOME_DELIVERED;
        }
    }
    batch_release(sc->batcher, &bt);
    /* Not delivered together: nothing was (a relay's /mxdeliv and the SMTP
     * client are all or nothing), so each recipient goes on its own, for
     * its own exact outcome. */
    if (!done) {
        ctx.settled = reply;
        if (take_place(sc, &ctx, &env, &held, out, &rep))
            deliver_run(&ctx, &env, &msg, out, &rep);
        give_place(sc, &env, &held);
    }
    char summary[2048];
    deliver_summary(&env, &rep, clock_elapsed_s(t0), msg.size, out, summary, sizeof(summary));
    log_info(TARGET, "%s: %s", req->queue_id, summary);
    spool_close(&msg);
    state_close(&state);
}

void serve_connection(const struct serve_ctx *sc, int conn)
{
    int64_t start = (int64_t)clock_mono_ms();
    int64_t deadline = start + (int64_t)sc->cfg->transport_deadline * 1000;
    struct handoff_request *req = malloc(sizeof(*req));
    struct outcome out;
    struct buf b;
    char err[300];
    int fd = -1;

    reply_sock = conn;
    reply_sent = false;
    buf_init(&b, HANDOFF_REQUEST_MAX);
    if (req == NULL) {
        outcome_set(&out, OUTCOME_TEMPFAIL, "4.3.0", "filtermail-deliverd: out of memory");
    } else if (handoff_recv_request(conn, &b, &fd, start + SERVE_REQUEST_WAIT_MS, req, err,
                                    sizeof(err)) < 0) {
        outcome_set(&out, OUTCOME_TEMPFAIL, "4.3.0", "filtermail-deliverd: bad request: %s", err);
        log_warn(TARGET, "bad request from a client: %s", err);
    } else if (fd < 0) {
        outcome_set(&out, OUTCOME_TEMPFAIL, "4.3.0",
                    "filtermail-deliverd: the request came without the message");
        log_warn(TARGET, "%s: the request came without the message", req->queue_id);
    } else {
        deliver(sc, req, fd, deadline, &out);
    }
    reply(&out);
    reply_sock = -1;
    if (fd >= 0)
        close(fd);
    buf_free(&b);
    free(req);
    close(conn);
}
