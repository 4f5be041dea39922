/* verdict: the chatmail E2EE policy, in upstream's order. */
#include "verdict.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "address.h"

#define TARGET_OUT "filtermail::outbound"
#define TARGET_IN "filtermail::inbound"
#define TARGET_SERVER "filtermail::smtp_server"

struct verdict_ctx {
    const struct verdict_input *in;
    struct verdict *out;
    verdict_log_fn *log;
    void *log_ctx;
    const char *target;
};

static void vlog(struct verdict_ctx *c, enum log_level level, const char *target,
                 const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void vlog(struct verdict_ctx *c, enum log_level level, const char *target,
                 const char *fmt, ...)
{
    char text[2048];
    va_list ap;
    if (c->log == NULL)
        return;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    c->log(c->log_ctx, level, target, text);
}

/* Copies text into a reply, keeping it printable ASCII (a reply cannot carry
 * CR, LF or 8-bit bytes; they become '?') and bounded. */
static void reply_append(char *dst, size_t dstlen, const char *src, size_t srclen)
{
    size_t o = strlen(dst);
    for (size_t i = 0; i < srclen && o + 1 < dstlen; i++) {
        unsigned char ch = (unsigned char)src[i];
        dst[o++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : (ch == '\t' ? ' ' : '?');
    }
    dst[o] = '\0';
}

static void set_reply(struct verdict *out, enum verdict_action action, enum verdict_reason reason,
                      const char *code, const char *xcode, const char *text)
{
    out->action = action;
    out->reason = reason;
    snprintf(out->code, sizeof(out->code), "%s", code);
    snprintf(out->xcode, sizeof(out->xcode), "%s", xcode);
    out->text[0] = '\0';
    reply_append(out->text, sizeof(out->text), text, strlen(text));
}

/* Like set_reply, with peer-supplied text appended after a fixed prefix. */
static void set_reply_with(struct verdict *out, enum verdict_reason reason, const char *code,
                           const char *prefix, const char *peer, size_t peer_len)
{
    set_reply(out, VERDICT_REJECT, reason, code, "", prefix);
    reply_append(out->text, sizeof(out->text), peer, peer_len);
}

/* Trims ASCII whitespace (Rust's str::trim on the ASCII range). */
static void trim(const char **s, size_t *n)
{
    while (*n > 0 && (**s == ' ' || **s == '\t' || **s == '\r' || **s == '\n' || **s == '\v' ||
                      **s == '\f')) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0) {
        char ch = (*s)[*n - 1];
        if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n' && ch != '\v' && ch != '\f')
            break;
        (*n)--;
    }
}

/* passthrough_recipients entry: exact, or "@domain" matching the end. */
static bool passthrough_rcpt_match(const struct config_list *l, const char *rcpt)
{
    size_t rn = strlen(rcpt);
    for (size_t i = 0; i < l->n; i++) {
        const char *e = l->items[i];
        size_t en = strlen(e);
        if (strcmp(e, rcpt) == 0)
            return true;
        if (e[0] == '@' && en <= rn && memcmp(rcpt + rn - en, e, en) == 0)
            return true;
    }
    return false;
}

static size_t remaining_rcpts(const struct verdict_input *in)
{
    size_t n = 0;
    for (size_t i = 0; i < in->nrcpts; i++)
        if (!in->rcpts[i].remove)
            n++;
    return n;
}

/* Removes DISABLED recipients (spec 2.4), logging each. */
static void remove_disabled(struct verdict_ctx *c)
{
    for (size_t i = 0; i < c->in->nrcpts; i++) {
        struct verdict_rcpt *r = &c->in->rcpts[i];
        if (r->disabled) {
            r->remove = true;
            vlog(c, LOGL_WARN, c->target, "Disabled recipient: %s; removing from RCPT TO", r->addr);
        }
    }
}

/* Outgoing Autocrypt Setup Message exception (spec 4.7). */
static bool is_asm(const struct verdict_input *in, const char *from)
{
    static const char subject[] = "Autocrypt Setup Message";
    const struct mime_header *s = &in->msg->subject;
    const char *only = NULL;

    if (remaining_rcpts(in) != 1)
        return false;
    for (size_t i = 0; i < in->nrcpts; i++)
        if (!in->rcpts[i].remove)
            only = in->rcpts[i].addr;
    return strcmp(only, from) == 0 && s->value != NULL && !s->truncated &&
           s->len == sizeof(subject) - 1 && memcmp(s->value, subject, s->len) == 0 &&
           strcmp(in->msg->mimetype, "multipart/mixed") == 0;
}

static bool is_passthrough(const struct verdict_input *in)
{
    size_t n = 0;
    if (in->passthrough_senders != NULL && in->sender[0] != '\0' &&
        config_list_has(in->passthrough_senders, in->sender))
        return true;
    if (in->passthrough_recipients == NULL || in->passthrough_recipients->n == 0)
        return false;
    for (size_t i = 0; i < in->nrcpts; i++) {
        if (in->rcpts[i].remove)
            continue;
        if (!passthrough_rcpt_match(in->passthrough_recipients, in->rcpts[i].addr))
            return false;
        n++;
    }
    return n > 0;
}

/* Incoming mailer-daemon exception (spec 4.6). Any non-empty Auto-Submitted
 * counts, even "no" (quirk Q22, copied). */
static bool is_mailer_daemon(const struct verdict_input *in, const char *from)
{
    const struct mime_header *a = &in->msg->auto_submitted;
    return a->value != NULL && a->len > 0 && strncmp(from, "mailer-daemon@", 14) == 0 &&
           strcmp(in->msg->mimetype, "multipart/report") == 0;
}

enum armor_direction verdict_direction(const char *auth, const char *daemon,
                                       const struct config_list *outgoing_daemon_names)
{
    if (auth != NULL && auth[0] != '\0')
        return ARMOR_OUTGOING;
    if (daemon != NULL && config_list_has(outgoing_daemon_names, daemon))
        return ARMOR_OUTGOING;
    return ARMOR_INCOMING;
}

/* The origin check (spec 6.3). Returns true when the message may pass. */
static bool origin_check(struct verdict_ctx *c, const char *from)
{
    enum address_domain_kind kind;
    const char *domain;
    size_t dlen;

    if (address_domain(from, &kind, &domain, &dlen) < 0) {
        set_reply_with(c->out, REASON_INVALID_ADDRESS, "553", "Invalid email address: ", from,
                       strlen(from));
        return false;
    }
    if (kind == ADDRESS_DOMAIN_LITERAL)
        return true; /* domain literals rely on encryption alone (upstream 0.6.0) */
    if (c->in->origin_domain != NULL && (strlen(c->in->origin_domain) != dlen ||
                                         strncasecmp(c->in->origin_domain, domain, dlen) != 0)) {
        vlog(c, LOGL_WARN, c->target,
             "From domain %.*s differs from the domain the signatures were checked against "
             "(%.100s)",
             (int)dlen, domain, c->in->origin_domain);
        set_reply(c->out, VERDICT_REJECT, REASON_DKIM, "554", "5.7.1",
                  "No valid DKIM signature found");
        return false;
    }
    switch (c->in->origin_fn != NULL ? c->in->origin_fn(c->in->origin_ctx) : c->in->origin) {
    case ORIGIN_PASS:
    case ORIGIN_SKIPPED:
        return true;
    case ORIGIN_NO_SIGNATURE:
        set_reply(c->out, VERDICT_REJECT, REASON_DKIM, "554", "5.7.1", "No DKIM signature found");
        return false;
    case ORIGIN_NO_VALID_SIGNATURE:
        set_reply(c->out, VERDICT_REJECT, REASON_DKIM, "554", "5.7.1",
                  "No valid DKIM signature found");
        return false;
    case ORIGIN_TEMPFAIL:
        set_reply(c->out, VERDICT_TEMPFAIL, REASON_DKIM, "451", "4.7.5",
                  "DKIM key lookup failed, try again later");
        return false;
    }
    return false;
}

/* Steps shared by both directions up to the From address. Returns false when
 * the verdict is already final; otherwise writes the From address to from. */
static bool common_checks(struct verdict_ctx *c, char *from, size_t fromlen)
{
    const struct mime_result *m = c->in->msg;
    const char *fv;
    size_t fn;

    if (c->in->oversize) {
        set_reply(c->out, VERDICT_REJECT, REASON_OVERSIZE, "552", "",
                  "Message exceeds maximum size");
        return false;
    }
    if (m->internal_error) {
        set_reply(c->out, VERDICT_TEMPFAIL, REASON_INTERNAL, "451", "4.3.0",
                  "Internal error in the mail filter, try again later");
        return false;
    }
    if (m->parse_error != NULL) {
        set_reply_with(c->out, REASON_PARSE_ERROR, "500", "Failed to parse message: ",
                       m->parse_error, strlen(m->parse_error));
        return false;
    }
    /* The first From value, trimmed; no From at all gives an empty value. */
    fv = m->from.value != NULL ? m->from.value : "";
    fn = m->from.value != NULL ? m->from.len : 0;
    trim(&fv, &fn);
    if (m->from.truncated || address_extract(fv, fn, from, fromlen) < 0) {
        set_reply_with(c->out, REASON_INVALID_FROM, "500", "Invalid FROM header: ", fv, fn);
        return false;
    }
    return true;
}

static void decide_outgoing(struct verdict_ctx *c)
{
    const struct verdict_input *in = c->in;
    char from[ADDRESS_MAX];

    c->target = TARGET_OUT;
    if (!common_checks(c, from, sizeof(from)))
        return;
    remove_disabled(c);
    vlog(c, LOGL_DEBUG, c->target, "Processing DATA message from %s", in->sender);
    if (strcasecmp(in->sender, from) != 0) {
        char text[2 * ADDRESS_MAX + 32];
        snprintf(text, sizeof(text), "Invalid FROM <%s> for <%s>", from, in->sender);
        set_reply(c->out, VERDICT_REJECT, REASON_FROM_MISMATCH, "500", "", text);
        return;
    }
    if (in->msg->encrypted || in->msg->securejoin) {
        vlog(c, LOGL_INFO, c->target, "Outgoing: Filtering encrypted mail.");
        c->out->kind = in->msg->encrypted ? KIND_ENCRYPTED : KIND_SECUREJOIN;
    } else {
        vlog(c, LOGL_INFO, c->target, "Outgoing: Filtering unencrypted mail.");
        if (is_asm(in, from)) {
            c->out->kind = KIND_ASM;
        } else if (is_passthrough(in)) {
            c->out->kind = KIND_PASSTHROUGH;
        } else {
            vlog(c, LOGL_WARN, c->target, "Rejected unencrypted mail from: %s", from);
            set_reply(c->out, VERDICT_REJECT, REASON_UNENCRYPTED, "523", "",
                      "Encryption Needed: Invalid Unencrypted Mail");
            return;
        }
    }
    if (in->sender_disabled) {
        vlog(c, LOGL_WARN, c->target, "Dropping mail; Sender %s is disabled.", in->sender);
        c->out->action = VERDICT_DISCARD;
        c->out->reason = REASON_SENDER_DISABLED;
        return;
    }
    if (remaining_rcpts(in) == 0) {
        vlog(c, LOGL_WARN, c->target, "Dropping mail; All recipients disabled.");
        c->out->action = VERDICT_DISCARD;
        c->out->reason = REASON_ALL_RECIPIENTS_DISABLED;
        return;
    }
    c->out->action = VERDICT_ACCEPT;
}

static void decide_incoming(struct verdict_ctx *c)
{
    const struct verdict_input *in = c->in;
    char from[ADDRESS_MAX];
    bool pass;

    c->target = TARGET_IN;
    if (!common_checks(c, from, sizeof(from)))
        return;
    vlog(c, LOGL_DEBUG, c->target, "Processing DATA message from %s", from);
    /* A return path that is not the From address (SRS forwarders, forgeries)
     * becomes <>, so no bounce can go to it (upstream 0.5.2). */
    if (in->sender[0] != '\0' && strcasecmp(in->sender, from) != 0)
        c->out->null_sender = true;
    remove_disabled(c);
    vlog(c, LOGL_DEBUG, c->target, "mail_encrypted: %s", in->msg->encrypted ? "true" : "false");
    vlog(c, LOGL_DEBUG, c->target, "is_securejoin: %s", in->msg->securejoin ? "true" : "false");

    if (in->msg->encrypted || in->msg->securejoin) {
        vlog(c, LOGL_INFO, c->target, "Incoming: Filtering encrypted mail.");
        c->out->kind = in->msg->encrypted ? KIND_ENCRYPTED : KIND_SECUREJOIN;
    } else if (is_mailer_daemon(in, from)) {
        vlog(c, LOGL_INFO, c->target, "Incoming: Filtering mailer-daemon message from <%s>", from);
        c->out->kind = KIND_MAILER_DAEMON;
    } else {
        vlog(c, LOGL_INFO, c->target, "Incoming: Filtering unencrypted mail.");
        for (size_t i = 0; i < in->nrcpts; i++) {
            if (!in->rcpts[i].remove && in->rcpts[i].enforce_e2ee) {
                vlog(c, LOGL_WARN, c->target, "Rejected unencrypted mail from: %s", from);
                set_reply(c->out, VERDICT_REJECT, REASON_UNENCRYPTED, "523", "",
                          "Encryption Needed: Invalid Unencrypted Mail");
                c->out->null_sender = false;
                return;
            }
        }
        c->out->kind = KIND_CLEARTEXT_ALLOWED;
    }
    pass = origin_check(c, from);
    if (!pass) {
        c->out->null_sender = false;
        return;
    }
    if (remaining_rcpts(in) == 0) {
        vlog(c, LOGL_WARN, TARGET_SERVER, "Dropping mail; All recipients disabled.");
        c->out->action = VERDICT_DISCARD;
        c->out->reason = REASON_ALL_RECIPIENTS_DISABLED;
        return;
    }
    c->out->action = VERDICT_ACCEPT;
}

void verdict_decide(const struct verdict_input *in, struct verdict *out, verdict_log_fn *log,
                    void *log_ctx)
{
    struct verdict_ctx c = {in, out, log, log_ctx, TARGET_OUT};

    memset(out, 0, sizeof(*out));
    out->action = VERDICT_TEMPFAIL;
    for (size_t i = 0; i < in->nrcpts; i++)
        in->rcpts[i].remove = false;
    if (in->dir == ARMOR_OUTGOING)
        decide_outgoing(&c);
    else
        decide_incoming(&c);
    /* Recipients are only removed from a message that is delivered. */
    if (out->action != VERDICT_ACCEPT)
        for (size_t i = 0; i < in->nrcpts; i++)
            in->rcpts[i].remove = false;
}

const char *verdict_reason_name(enum verdict_reason r)
{
    static const char *const names[] = {
        [REASON_NONE] = "none",
        [REASON_OVERSIZE] = "oversize",
        [REASON_PARSE_ERROR] = "parse_error",
        [REASON_INVALID_FROM] = "invalid_from",
        [REASON_FROM_MISMATCH] = "from_mismatch",
        [REASON_UNENCRYPTED] = "unencrypted",
        [REASON_INVALID_ADDRESS] = "invalid_address",
        [REASON_DKIM] = "dkim",
        [REASON_INTERNAL] = "internal",
        [REASON_SENDER_DISABLED] = "sender_disabled",
        [REASON_ALL_RECIPIENTS_DISABLED] = "all_recipients_disabled",
    };
    return (unsigned)r < sizeof(names) / sizeof(names[0]) ? names[r] : "unknown";
}

const char *verdict_kind_name(enum verdict_kind k)
{
    static const char *const names[] = {
        [KIND_NONE] = "none",
        [KIND_ENCRYPTED] = "encrypted",
        [KIND_SECUREJOIN] = "securejoin",
        [KIND_MAILER_DAEMON] = "mailer_daemon",
        [KIND_ASM] = "asm",
        [KIND_PASSTHROUGH] = "passthrough",
        [KIND_CLEARTEXT_ALLOWED] = "cleartext_allowed",
    };
    return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}
