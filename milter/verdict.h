/* verdict: the chatmail E2EE policy for one message (spec 5.1, 6.2-6.4).
 *
 * Takes what the milter learnt about a message (envelope, flag files, the
 * streaming MIME analysis, the DKIM result) and returns what to do with it:
 * accept (possibly removing disabled recipients and, coming in, resetting the
 * envelope sender to <>), reject with upstream's exact reply, discard, or
 * answer with a temporary failure. The log lines operators' dashboards match
 * (spec 9.2) are handed to a callback, in upstream's order and wording.
 *
 * Pure: no I/O, no globals, no clock. Thread-safe.
 */
#ifndef FILTERMAIL_VERDICT_H
#define FILTERMAIL_VERDICT_H

#include <stdbool.h>
#include <stddef.h>

#include "armor.h"
#include "config.h"
#include "log.h"
#include "mime.h"

/* One envelope recipient. */
struct verdict_rcpt {
    const char *addr;   /* lowercased, without angle brackets */
    bool disabled;      /* DISABLED flag file */
    bool enforce_e2ee;  /* enforceE2EEincoming flag file, or an invalid address */
    bool remove;        /* out: delete this recipient from the message */
};

/* The result of the origin check (DKIM verification against the From domain),
 * computed while the message streamed by. The policy decides whether it counts:
 * only after the encryption check, and never for domain-literal senders. */
enum verdict_origin {
    ORIGIN_PASS,               /* an aligned signature verified */
    ORIGIN_SKIPPED,            /* verification is off (FILTERMAIL_SKIP_DKIM) */
    ORIGIN_NO_SIGNATURE,       /* no DKIM-Signature field */
    ORIGIN_NO_VALID_SIGNATURE, /* none verified with d= equal to the From domain */
    ORIGIN_TEMPFAIL,           /* DNS failure, timeout, bogus DNSSEC */
};

struct verdict_input {
    enum armor_direction dir;
    const char *sender;        /* envelope sender, lowercased; "" for <> */
    bool sender_disabled;      /* the sender's DISABLED flag file */
    struct verdict_rcpt *rcpts;
    size_t nrcpts;
    const struct mime_result *msg;
    bool oversize;             /* more than max_message_size bytes */
    const struct config_list *passthrough_senders;
    const struct config_list *passthrough_recipients;
    enum verdict_origin origin;
    /* When set, called instead of reading origin, and only when the policy
     * needs the origin check: so a message refused for other reasons never
     * costs a key lookup. */
    enum verdict_origin (*origin_fn)(void *ctx);
    void *origin_ctx;
    /* When not NULL: the domain the signatures were checked against, taken
     * from the From field as received ("" when it had none). The policy's
     * From is taken from the decoded field (RFC 2047 words, as upstream
     * reads it); when the two domains differ, a signature proves nothing
     * about the address the policy judged, so the origin check fails. */
    const char *origin_domain;
};

enum verdict_action {
    VERDICT_ACCEPT,   /* deliver (to the recipients not marked remove) */
    VERDICT_REJECT,   /* 5xx with code/xcode/text */
    VERDICT_TEMPFAIL, /* 4xx with code/xcode/text */
    VERDICT_DISCARD,  /* accept and drop silently, as upstream does */
};

/* Why the message was refused or dropped, for metrics. */
enum verdict_reason {
    REASON_NONE,
    REASON_OVERSIZE,
    REASON_PARSE_ERROR,
    REASON_INVALID_FROM,
    REASON_FROM_MISMATCH,
    REASON_UNENCRYPTED,
    REASON_INVALID_ADDRESS,
    REASON_DKIM,
    REASON_INTERNAL,
    REASON_SENDER_DISABLED,
    REASON_ALL_RECIPIENTS_DISABLED,
};

/* What kind of message was accepted (or would have been, before DKIM). */
enum verdict_kind {
    KIND_NONE,
    KIND_ENCRYPTED,
    KIND_SECUREJOIN,
    KIND_MAILER_DAEMON,
    KIND_ASM,
    KIND_PASSTHROUGH,
    KIND_CLEARTEXT_ALLOWED,
};

struct verdict {
    enum verdict_action action;
    enum verdict_reason reason;
    enum verdict_kind kind;
    char code[4];       /* e.g. "523" */
    char xcode[8];      /* enhanced status code, e.g. "5.7.1", or "" (upstream sends none) */
    char text[1024];    /* reply text after the code(s); printable ASCII only */
    bool null_sender;   /* incoming: rewrite the envelope sender to <> */
};

/* Receives each log line: level, upstream's target, the text. */
typedef void verdict_log_fn(void *ctx, enum log_level level, const char *target,
                            const char *text);

/* The direction of a message from the session's macros: outgoing when the
 * client authenticated ({auth_authen} non-empty) or {daemon_name} is one of
 * outgoing_daemon_names; incoming otherwise. Authentication alone selects
 * outgoing, so a submission service whose daemon name is missing from the
 * list can never let a user's cleartext out under the incoming policy.
 * auth and daemon may be NULL (macro not sent). Pure. */
enum armor_direction verdict_direction(const char *auth, const char *daemon,
                                       const struct config_list *outgoing_daemon_names);

/* Decides. Marks recipients to remove in in->rcpts[i].remove. log may be NULL. */
void verdict_decide(const struct verdict_input *in, struct verdict *out, verdict_log_fn *log,
                    void *log_ctx);

/* Name of a reason / kind, for logs and metrics ("unencrypted", "securejoin"...). */
const char *verdict_reason_name(enum verdict_reason r);
const char *verdict_kind_name(enum verdict_kind k);

#endif
