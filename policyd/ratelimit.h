/* ratelimit: what filtermail-policyd decides for one policy request, and the
 * in-process table of senders it decides with. No I/O except the snapshot
 * functions, which read and write a stream the caller opened.
 *
 * The key is the SASL login (sasl_username) when there is one, else the
 * envelope sender; it is ASCII-lowercased and cut at RATELIMIT_KEY_MAX bytes
 * (a cut only makes senders that share the prefix share a budget). A request
 * with an empty sender (a bounce) is never limited, nor is a key listed in
 * filtermail_ratelimit_exempt (an address, or a domain as "example.org" or
 * "@example.org").
 *
 * Postfix asks once per RCPT with smtpd_delay_reject=yes, but a message must
 * cost one unit. Every RCPT of a message carries the same `instance`, so the
 * verdict for (key, instance) is remembered twice: per connection (struct
 * ratelimit_session; one smtpd process asks over one connection) and per
 * sender in the table (in case Postfix reconnected between two RCPTs). A
 * message that was refused stays refused for all its recipients, so it is
 * never delivered to only some of them.
 *
 * The table is open addressing with linear probing, keyed by SipHash-1-3 with
 * a per-process random key (so senders cannot be chosen to collide). An entry
 * whose GCRA state is fully refilled equals no entry and is dropped by an
 * incremental sweep; when max_senders are tracked anyway, the entry closest
 * to refilled among a sample is evicted (that sender gets a fresh burst).
 *
 * Times: `now` is CLOCK_MONOTONIC in nanoseconds (injected by tests). Not
 * thread-safe; filtermail-policyd is one thread.
 */
#ifndef FILTERMAIL_RATELIMIT_H
#define FILTERMAIL_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "config.h"
#include "gcra.h"

/* Longest key kept, in bytes (RFC 5321 paths are at most 256). */
#define RATELIMIT_KEY_MAX 512

/* Senders tracked at most, unless the configuration says otherwise. About
 * 100 bytes each (see bench_policyd), so the table stays under ~110 MB. */
#define RATELIMIT_DEFAULT_MAX_SENDERS 1000000

struct ratelimit_config {
    uint32_t per_minute;              /* max_user_send_per_minute */
    uint32_t burst;                   /* max_user_send_burst_size */
    const struct config_list *exempt; /* filtermail_ratelimit_exempt; may be NULL */
    size_t max_senders;               /* 0: RATELIMIT_DEFAULT_MAX_SENDERS */
    uint64_t seed[2];                 /* hash key: random in the daemon, fixed in tests */
};

/* The attributes of one request that matter here (NULL when absent). */
struct ratelimit_request {
    const char *request; /* must be "smtpd_access_policy" */
    const char *sender;
    const char *sasl_username;
    const char *instance;
};

enum ratelimit_verdict {
    RATELIMIT_PASS,    /* reply DUNNO */
    RATELIMIT_LIMITED, /* reply 450 "4.7.1: Too much mail from ..." */
    RATELIMIT_CHECK,   /* undecided: a GCRA step is needed (local or Redis) */
    RATELIMIT_INVALID, /* not a smtpd_access_policy request: close the connection */
};

enum ratelimit_reason {
    RATELIMIT_R_NONE,
    RATELIMIT_R_BOUNCE,     /* empty sender */
    RATELIMIT_R_EXEMPT,     /* filtermail_ratelimit_exempt */
    RATELIMIT_R_CACHED,     /* a later RCPT of a message already decided */
    RATELIMIT_R_ALLOWED,    /* charged one unit */
    RATELIMIT_R_LIMITED,    /* over the limit, nothing charged */
    RATELIMIT_R_NOT_POLICY, /* request attribute missing or different */
};

struct ratelimit_decision {
    enum ratelimit_verdict verdict;
    enum ratelimit_reason reason;
    char key[RATELIMIT_KEY_MAX + 1]; /* NUL-terminated; "" for bounces */
    size_t key_len;
    const char *instance; /* the request's instance ("" when none) */
    uint64_t dedupe;      /* hash of (key, instance); 0 without an instance */
    uint64_t allowed_at;  /* LIMITED: monotonic ns when the next can pass */
};

/* The per-connection memory of the last message decided. Zero-initialise. */
struct ratelimit_session {
    uint64_t dedupe;
    enum ratelimit_verdict verdict;
    uint64_t allowed_at;
};

struct ratelimit_stats {
    size_t senders;        /* entries in the table */
    size_t slots;          /* table capacity */
    uint64_t evicted_full; /* live entries evicted because the table was full */
};

struct ratelimit;

/* A new limiter. Returns NULL when out of memory or per_minute/burst is 0.
 * Keeps no pointer to c or its exempt list. Free with ratelimit_free. */
struct ratelimit *ratelimit_new(const struct ratelimit_config *c);

/* Frees the limiter and sets *rl to NULL. NULL-safe. */
void ratelimit_free(struct ratelimit **rl);

/* The GCRA parameters in use. */
const struct gcra *ratelimit_gcra(const struct ratelimit *rl);

/* First half of a decision, without the table: sets d to INVALID, PASS
 * (bounce, exempt), the session's cached verdict, or CHECK with the key and
 * dedupe hash filled in. d->instance points into req. */
void ratelimit_classify(const struct ratelimit *rl, const struct ratelimit_session *s,
                        const struct ratelimit_request *req, struct ratelimit_decision *d);

/* Second half, in the in-process table: for a CHECK decision, one GCRA step
 * for d->key at now (or the verdict remembered for d->dedupe), turning d into
 * PASS or LIMITED. Other decisions are left alone. Also sweeps a few slots. */
void ratelimit_check(struct ratelimit *rl, struct ratelimit_decision *d, uint64_t now);

/* Remembers a PASS/LIMITED decision that carries an instance in the session. */
void ratelimit_session_note(struct ratelimit_session *s, const struct ratelimit_decision *d);

/* classify + check + session_note: the whole decision in local mode. */
void ratelimit_decide(struct ratelimit *rl, struct ratelimit_session *s,
                      const struct ratelimit_request *req, uint64_t now,
                      struct ratelimit_decision *d);

/* The policy action for a PASS or LIMITED decision, written to out (outlen
 * bytes, NUL-terminated): "DUNNO", or "450 4.7.1: Too much mail from <key>,
 * rate-limited until <time>" (upstream's text) where <time> is UTC (RFC 3339
 * with milliseconds) computed from now_mono/now_wall (CLOCK_REALTIME, ns). Bytes of
 * the key outside printable ASCII become '?'. Returns 0, or -1 when it does
 * not fit or the decision has no action. */
int ratelimit_action(const struct ratelimit_decision *d, uint64_t now_mono, uint64_t now_wall,
                     char *out, size_t outlen);

/* Writes the time a LIMITED decision ends, as UTC with milliseconds
 * ("2026-11-24T10:00:03.250Z"), to out. Returns 0, or -1 when it does not fit. */
int ratelimit_format_until(const struct ratelimit_decision *d, uint64_t now_mono, uint64_t now_wall,
                           char *out, size_t outlen);

/* A short name for a reason, for log lines. */
const char *ratelimit_reason_name(enum ratelimit_reason r);

/* Drops refilled entries among the next `budget` slots of the sweep cursor.
 * Returns the number dropped. */
size_t ratelimit_sweep(struct ratelimit *rl, uint64_t now, size_t budget);

void ratelimit_stats(const struct ratelimit *rl, struct ratelimit_stats *st);

/* Snapshot, text, one sender a line:
 *
 *     filtermail-ratelimit-state 1
 *     saved <CLOCK_REALTIME ns>
 *     <ns until refilled> <key>
 *     ...
 *     end <number of sender lines>
 *
 * Only senders not yet refilled are written. Times are relative so that the
 * file survives a reboot (the monotonic clock restarts); on load, the wall
 * time elapsed since `saved` is subtracted (never added when the wall clock
 * went back), and a debt above the current T + tau is cut to it, so a
 * changed configuration applies at once.
 *
 * ratelimit_save writes the snapshot to f. Returns the number of senders
 * written, or -1 when a write failed (errno set). */
long ratelimit_save(const struct ratelimit *rl, FILE *f, uint64_t now_mono, uint64_t now_wall);

/* Reads a snapshot from f into the (normally empty) table. Returns the number
 * of senders loaded, or -1 with a message in err; then nothing is loaded
 * (the table is emptied). */
long ratelimit_load(struct ratelimit *rl, FILE *f, uint64_t now_mono, uint64_t now_wall, char *err,
                    size_t errlen);

/* A reload with new limits (c): a new limiter holding every sender of old,
 * carried over as a snapshot is (so each wait is cut to what the new limits
 * allow). Returns it, or NULL (out of memory; old is unchanged). The seed
 * comes from c. */
struct ratelimit *ratelimit_rebuild(const struct ratelimit *old, const struct ratelimit_config *c,
                                    uint64_t now_mono, uint64_t now_wall);

#endif
