/* filter: the chatmail E2EE gate and DKIM as milter callbacks; see filter.h.
 *
 * Envelope, headers and body chunks go into the streaming analyser
 * (common/mime.c) as they arrive, the flag files are looked up at end of
 * message (common/mailbox.c), and the policy (verdict.c) decides; DKIM
 * verification or signing runs beside. Per-connection state lives in
 * msess_setpriv(); a connection's callbacks run one after another, those of
 * different connections concurrently, so nothing here is global: the
 * shared, immutable parts are the struct filter (msess_ctx).
 */
#include "filter.h"

#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include "actions.h"
#include "address.h"
#include "array.h"
#include "buf.h"
#include "hfield.h"
#include "log.h"
#include "mailbox.h"
#include "message.h"
#include "mime.h"
#include "reply.h"
#include "verdict.h"

#define TARGET "filtermail::milter"

/* Most recipients one message may have; Postfix's smtpd_recipient_limit
 * defaults to 1000. More is refused with a temporary error. */
#define MAX_RCPTS 10000

/* The longest header field kept whole for DKIM (Postfix's header_size_limit
 * defaults to 100 KiB). */
#define MAX_FIELD (256 * 1024)

struct rcpt {
    char *raw;   /* as Postfix gave it, without angle brackets (for msess_delrcpt) */
    char *addr;  /* lowercased */
};

/* State of one SMTP connection; the message fields are reset per message. */
struct conn {
    const struct filter *f;
    const struct config *cfg; /* the configuration of the current message */
    unsigned long pflags; /* protocol flags negotiated with the MTA */
    bool active;          /* a message is in progress */
    enum armor_direction dir;
    char sender[ADDRESS_MAX];
    struct rcpt *rcpts;
    size_t nrcpts, rcap;
    struct mime_parser *parser;
    bool in_body;
    bool failed;           /* an internal error: answer 4xx at end of message */
    struct message msg;    /* size and From */
    char qid[32];
    struct dkimcheck_msg *dv;  /* incoming: verification in progress */
    struct dkimsign_msg *ds;   /* outgoing: signature in progress */
    bool verify;               /* incoming and verification is on */
    struct buf field;          /* one header field rebuilt for DKIM and the spool */
    struct rejected_spool spool;
    char dkim_why[512];
    char dkim_domain[256];     /* the raw From's domain the signatures must align to */
};

/* The reply for callbacks whose answer we negotiated away. */
static enum mstatus nr(const struct conn *c, unsigned long flag)
{
    return (c != NULL && (c->pflags & flag)) ? MS_NOREPLY : MS_CONTINUE;
}

static void conn_reset_message(struct conn *c)
{
    for (size_t i = 0; i < c->nrcpts; i++) {
        free(c->rcpts[i].raw);
        free(c->rcpts[i].addr);
    }
    c->nrcpts = 0;
    c->active = false;
    config_release(&c->cfg); /* a replaced configuration goes with its last message */
    c->in_body = false;
    c->failed = false;
    message_reset(&c->msg, 0);
    c->sender[0] = '\0';
    c->qid[0] = '\0';
    dkimcheck_msg_free(&c->dv);
    dkimsign_msg_free(&c->ds);
    buf_reset(&c->field);
    rejected_spool_discard(&c->spool);
    c->dkim_why[0] = '\0';
    c->dkim_domain[0] = '\0';
    c->verify = false;
}

static struct conn *conn_get(struct msess *ctx)
{
    struct conn *c = msess_getpriv(ctx);
    if (c == NULL) {
        c = calloc(1, sizeof(*c));
        if (c == NULL)
            return NULL;
        buf_init(&c->field, MAX_FIELD);
        rejected_spool_init(&c->spool);
        c->f = msess_ctx(ctx);
        msess_setpriv(ctx, c);
    }
    return c;
}

static void conn_free(struct msess *ctx)
{
    struct conn *c = msess_getpriv(ctx);
    if (c == NULL)
        return;
    conn_reset_message(c);
    free(c->rcpts);
    buf_free(&c->field);
    mime_parser_free(&c->parser);
    free(c);
    msess_setpriv(ctx, NULL);
}

/* Sets an SMTP reply, '%' doubled and cut to the reply budget (reply.h). */
static void set_reply(struct msess *ctx, const char *code, const char *xcode, const char *text)
{
    char esc[REPLY_MAX + 1];
    if (msess_setreply(ctx, code, xcode, reply_escape(code, xcode, text, esc)) != 0)
        log_warn(TARGET, "could not set reply %s %.100s", code, text);
}

static enum mstatus tempfail(struct msess *ctx, const char *why)
{
    set_reply(ctx, "451", "4.3.0", "Internal error in the mail filter, try again later");
    log_err(TARGET, "temporary failure: %s", why);
    return MS_TEMPFAIL;
}

static enum mstatus cb_connect(struct msess *ctx)
{
    struct conn *c = conn_get(ctx);
    if (c == NULL)
        return MS_TEMPFAIL;
    c->pflags = msess_protocol(ctx);
    return MS_CONTINUE;
}

static enum mstatus cb_envfrom(struct msess *ctx, const char *from)
{
    struct conn *c = msess_getpriv(ctx);
    const char *auth, *daemon;

    if (c == NULL)
        return MS_NOREPLY; /* cannot happen: cb_connect made it */
    conn_reset_message(c);
    c->active = true;
    c->cfg = config_live_get(c->f->config);
    const struct config *cfg = c->cfg;
    message_reset(&c->msg, cfg->max_message_size);

    auth = msess_getsymval(ctx, "{auth_authen}");
    daemon = msess_getsymval(ctx, "{daemon_name}");
    c->dir = verdict_direction(auth, daemon, &cfg->outgoing_daemon_names);
    if (log_enabled(LOGL_DEBUG)) {
        char esc[200];
        log_debug(TARGET, "direction %s (auth_authen=%s, daemon_name=%s)",
                  c->dir == ARMOR_OUTGOING ? "outgoing" : "incoming",
                  auth != NULL && auth[0] != '\0' ? "set" : "unset",
                  daemon != NULL ? log_escape(esc, sizeof(esc), daemon, strlen(daemon), 64)
                                 : "unset");
    }

    address_envelope(from, c->sender, sizeof(c->sender));
    if (c->parser == NULL) {
        c->parser = mime_parser_new(NULL, c->dir);
        if (c->parser == NULL)
            c->failed = true;
    } else {
        mime_parser_reset(c->parser, c->dir);
    }
    /* DKIM runs beside the encryption check: verification of incoming mail,
     * signing of outgoing mail. Either handle missing is an internal error,
     * answered 4xx at end of message. */
    if (c->dir == ARMOR_INCOMING && c->f->checker != NULL) {
        c->verify = true;
        c->dv = dkimcheck_msg_new(c->f->checker, "milter");
        if (c->dv == NULL)
            c->failed = true;
        rejected_spool_begin(c->f->rejected, &c->spool);
    } else if (c->dir == ARMOR_OUTGOING && c->f->signer != NULL) {
        c->ds = dkimsign_msg_new(c->f->signer);
        if (c->ds == NULL)
            c->failed = true;
    }
    return nr(c, SMFIP_NR_MAIL);
}

static enum mstatus cb_envrcpt(struct msess *ctx, const char *rcpt)
{
    struct conn *c = msess_getpriv(ctx);
    char plain[ADDRESS_MAX], addr[ADDRESS_MAX];

    if (c == NULL || !c->active)
        return nr(c, SMFIP_NR_RCPT);
    if (c->nrcpts == MAX_RCPTS) {
        c->failed = true;
        return nr(c, SMFIP_NR_RCPT);
    }
    struct rcpt *r =
        array_grow(c->rcpts, sizeof(*c->rcpts), c->rcap, c->nrcpts + 1, MAX_RCPTS, &c->rcap);
    if (r == NULL) {
        c->failed = true;
        return nr(c, SMFIP_NR_RCPT);
    }
    c->rcpts = r;
    address_strip_brackets(rcpt, plain, sizeof(plain));
    address_envelope(rcpt, addr, sizeof(addr));
    c->rcpts[c->nrcpts].raw = strdup(plain);
    c->rcpts[c->nrcpts].addr = strdup(addr);
    if (c->rcpts[c->nrcpts].raw == NULL || c->rcpts[c->nrcpts].addr == NULL) {
        free(c->rcpts[c->nrcpts].raw);
        free(c->rcpts[c->nrcpts].addr);
        c->failed = true;
    } else {
        c->nrcpts++;
    }
    return nr(c, SMFIP_NR_RCPT);
}

static enum mstatus cb_header(struct msess *ctx, const char *name, const char *value)
{
    struct conn *c = msess_getpriv(ctx);

    if (c == NULL || !c->active || c->failed || c->parser == NULL)
        return nr(c, SMFIP_NR_HDR);
    if (!message_header(&c->msg, name, value))
        return nr(c, SMFIP_NR_HDR); /* over max_message_size: no longer looked at */
    struct buf *f = &c->field;
    int bad = hfield_build(f, name, value, (c->pflags & SMFIP_HDR_LEADSPC) != 0);
    if (bad != 0) {
        /* Longer than MAX_FIELD (ENOBUFS; the buffer is left as it was, so
         * its length does not tell) or no memory: the DKIM check cannot see
         * this field and must not pass. Too long is the message's fault
         * (552, final); no memory is ours (451). Postfix's own
         * header_size_limit (100 KiB by default) normally cuts it first. */
        if (errno == ENOBUFS)
            message_set_oversize(&c->msg);
        else
            c->failed = true;
        dkimcheck_msg_free(&c->dv);
        dkimsign_msg_free(&c->ds);
        return nr(c, SMFIP_NR_HDR);
    }
    /* The signers and verifiers take the field without its line end. */
    if (c->dv != NULL)
        dkimcheck_header(c->dv, f->data, f->len - 2);
    if (c->ds != NULL)
        dkimsign_header(c->ds, f->data, f->len - 2);
    mime_push(c->parser, f->data, f->len);
    rejected_spool_write(c->f->rejected, &c->spool, f->data, f->len);
    return nr(c, SMFIP_NR_HDR);
}

static void end_of_headers(struct conn *c)
{
    if (!c->in_body) {
        c->in_body = true;
        if (c->parser != NULL && !c->msg.oversize)
            mime_push(c->parser, "\r\n", 2);
        rejected_spool_write(c->f->rejected, &c->spool, "\r\n", 2);
        if (c->dv != NULL) {
            address_from_domain(c->msg.from, c->dkim_domain, sizeof(c->dkim_domain));
            dkimcheck_eoh(c->dv, c->dkim_domain[0] != '\0' ? c->dkim_domain : NULL);
        }
        if (c->ds != NULL)
            dkimsign_eoh(c->ds);
    }
}

static enum mstatus cb_body(struct msess *ctx, const unsigned char *chunk, size_t len)
{
    struct conn *c = msess_getpriv(ctx);

    if (c == NULL || !c->active || c->failed || c->parser == NULL)
        return nr(c, SMFIP_NR_BODY);
    end_of_headers(c);
    if (message_account(&c->msg, len)) {
        mime_push(c->parser, (const char *)chunk, len);
        if (c->dv != NULL)
            dkimcheck_body(c->dv, chunk, len);
        if (c->ds != NULL)
            dkimsign_body(c->ds, chunk, len);
        rejected_spool_write(c->f->rejected, &c->spool, chunk, len);
    } else {
        rejected_spool_discard(&c->spool);
    }
    return nr(c, SMFIP_NR_BODY);
}

/* Hands the policy's log lines to the log, with the queue id at debug level. */
static void verdict_log(void *ctx, enum log_level level, const char *target, const char *text)
{
    (void)ctx;
    log_msg(level, target, "%s", text);
}

/* The origin check, called by the policy only when it needs it. */
static enum verdict_origin origin_check(void *ctx)
{
    struct conn *c = ctx;
    enum verdict_origin o;

    if (!c->verify)
        return ORIGIN_SKIPPED;
    if (c->dv == NULL) /* dropped on a header it could not hold: fail closed */
        return ORIGIN_NO_VALID_SIGNATURE;
    const char *from = c->msg.from;
    size_t naddr = from[0] != '\0' ? address_count(from, strlen(from)) : 0;
    o = dkimcheck_finish(c->dv, c->msg.from_count, naddr, c->dkim_why, sizeof(c->dkim_why));
    log_msg(LOGL_INFO, TARGET, "%s: DKIM %s: %s", c->qid,
            o == ORIGIN_PASS ? "pass" : o == ORIGIN_TEMPFAIL ? "temporary failure" : "fail",
            c->dkim_why);
    return o;
}

/* Keeps a DKIM-rejected message (spec 6.7). */
static void keep_rejected(struct conn *c)
{
    char where[512];
    if (c->f->rejected == NULL)
        return;
    if (rejected_keep(c->f->rejected, &c->spool, "dkim-verify", c->qid, where, sizeof(where)) ==
        0) {
        log_info(TARGET, "Rejected message stored at: %s/%s", c->cfg->rejected_dir, where);
    } else {
        log_err(TARGET, "Failed to save rejected message to file: %s", where);
        log_info(TARGET, "Rejected message stored at: ERR");
    }
}

/* Adds the DKIM-Signature of an accepted outgoing message. */
static int sign(struct msess *ctx, struct conn *c)
{
    char value[8192];
    int lead = (c->pflags & SMFIP_HDR_LEADSPC) != 0;

    value[0] = ' ';
    if (dkimsign_finish(c->ds, value + lead, sizeof(value) - 1) < 0) {
        log_err(TARGET, "%s: cannot sign: %s", c->qid, value + lead);
        return -1;
    }
    if (msess_insheader(ctx, 0, "DKIM-Signature", value) != 0) {
        log_err(TARGET, "%s: cannot add the DKIM-Signature field", c->qid);
        return -1;
    }
    log_debug(TARGET, "%s: signed with d=%s s=%s", c->qid, c->cfg->mail_domain,
              c->cfg->dkim_selector);
    return 0;
}

static enum mstatus cb_eom(struct msess *ctx)
{
    struct conn *c = msess_getpriv(ctx);
    struct verdict_rcpt *vr = NULL;
    struct mime_result res;
    struct verdict v;
    struct verdict_input in;
    struct mailbox_flags flags;
    const char *qid;
    enum mstatus rc;

    if (c == NULL || !c->active)
        return tempfail(ctx, "end of message without a transaction");
    const struct config *cfg = c->cfg;
    qid = msess_getsymval(ctx, "i");
    snprintf(c->qid, sizeof(c->qid), "%s", qid != NULL ? qid : "NOQUEUE");
    if (c->failed || c->parser == NULL) {
        rc = tempfail(ctx, "out of memory or too many recipients");
        goto out;
    }
    end_of_headers(c);
    mime_finish(c->parser, &res);

    memset(&in, 0, sizeof(in));
    in.dir = c->dir;
    in.sender = c->sender;
    in.msg = &res;
    in.oversize = c->msg.oversize;
    in.passthrough_senders = &cfg->passthrough_senders;
    in.passthrough_recipients = &cfg->passthrough_recipients;
    in.origin = ORIGIN_SKIPPED;
    in.origin_fn = origin_check;
    in.origin_ctx = c;
    in.origin_domain = c->verify ? c->dkim_domain : NULL;

    vr = calloc(c->nrcpts ? c->nrcpts : 1, sizeof(*vr));
    if (vr == NULL) {
        rc = tempfail(ctx, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < c->nrcpts; i++) {
        vr[i].addr = c->rcpts[i].addr;
        if (mailbox_lookup(cfg->mailboxes_dir, vr[i].addr, &flags) < 0) {
            char esc[300];
            log_err(TARGET, "%s: cannot read the flags of mailbox %s in %s: %s", c->qid,
                    log_escape(esc, sizeof(esc), vr[i].addr, strlen(vr[i].addr), 100),
                    cfg->mailboxes_dir, strerror(errno));
            rc = tempfail(ctx, "mailbox flag lookup failed");
            goto out;
        }
        vr[i].disabled = flags.disabled;
        vr[i].enforce_e2ee = flags.enforce_e2ee;
    }
    in.rcpts = vr;
    in.nrcpts = c->nrcpts;
    if (c->sender[0] != '\0') {
        if (mailbox_lookup(cfg->mailboxes_dir, c->sender, &flags) < 0) {
            log_err(TARGET, "%s: cannot read the flags of the sender's mailbox in %s: %s", c->qid,
                    cfg->mailboxes_dir, strerror(errno));
            rc = tempfail(ctx, "mailbox flag lookup failed");
            goto out;
        }
        in.sender_disabled = flags.disabled;
    }

    verdict_decide(&in, &v, verdict_log, NULL);
    /* One line per message for metrics (the mtail program): direction,
     * action, kind (securejoin and Autocrypt Setup Messages, which upstream's
     * lines count as encrypted, apart), reason. */
    log_info(TARGET, "%s: verdict %s %s %s %s (%.200s)", c->qid,
              c->dir == ARMOR_OUTGOING ? "outgoing" : "incoming",
              v.action == VERDICT_ACCEPT    ? "accept"
              : v.action == VERDICT_REJECT  ? "reject"
              : v.action == VERDICT_DISCARD ? "discard"
                                            : "tempfail",
              verdict_kind_name(v.kind), verdict_reason_name(v.reason), v.text);

    struct actions a;
    actions_plan(&v, c->ds != NULL, &a);
    for (size_t i = 0; a.remove_rcpts && i < c->nrcpts; i++) {
        if (vr[i].remove && msess_delrcpt(ctx, c->rcpts[i].raw) != 0) {
            rc = tempfail(ctx, "cannot remove a recipient");
            goto out;
        }
    }
    if (a.null_sender && msess_chgfrom(ctx, "<>") != 0) {
        rc = tempfail(ctx, "cannot change the envelope sender");
        goto out;
    }
    if (a.sign && sign(ctx, c) < 0) {
        rc = tempfail(ctx, "DKIM signing failed");
        goto out;
    }
    if (a.keep_rejected)
        keep_rejected(c);
    if (a.reply)
        set_reply(ctx, v.code, v.xcode, v.text);
    rc = a.status;
out:
    free(vr);
    conn_reset_message(c);
    return rc;
}

static void cb_abort(struct msess *ctx)
{
    struct conn *c = msess_getpriv(ctx);
    if (c != NULL)
        conn_reset_message(c);
}

static void cb_close(struct msess *ctx)
{
    conn_free(ctx);
}

const struct mserver_callbacks filter_callbacks = {
    .connect = cb_connect,
    .envfrom = cb_envfrom,
    .envrcpt = cb_envrcpt,
    .header = cb_header,
    .body = cb_body,
    .eom = cb_eom,
    .abort = cb_abort,
    .close = cb_close,
};

/* FILTERMAIL_SKIP_DKIM=1|true (any case) turns verification off (spec 6.6). */
static bool skip_dkim(void)
{
    const char *v = getenv("FILTERMAIL_SKIP_DKIM");
    return v != NULL && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0);
}

/* Resolver, verifier, signer and rejected store. Runs as root, before the
 * privileges are dropped: the signing key is readable by root only, and the
 * resolver reads its files now; its threads start after the drop
 * (filter_start). */
int filter_open(struct filter *f, const struct config *cfg, char *err, size_t errlen)
{

    if (cfg->dkim_sign) {
        f->signer = dkimsign_new(cfg->dkim_key, cfg->dkim_selector, cfg->mail_domain, NULL, err,
                              errlen);
        if (f->signer == NULL)
            return -1;
        log_debug(TARGET, "signing outgoing mail: d=%s s=%s a=%s", cfg->mail_domain,
                  cfg->dkim_selector, dkimsign_algorithm(f->signer));
    }
    if (skip_dkim()) {
        log_warn("filtermail", "DKIM verification DISABLED! This should not be used in production.");
        return 0;
    }
    struct dns_config dc = {
        .unbound_config = cfg->unbound_config[0] != '\0' ? cfg->unbound_config : NULL,
        .trust_anchor = cfg->trust_anchor,
        .start_later = true,
    };
    f->dns = dns_resolver_new(&dc, err, errlen);
    if (f->dns == NULL)
        return -1;
    f->checker = dkimcheck_new(f->dns, (int)cfg->dns_timeout * 1000, err, errlen);
    if (f->checker == NULL)
        return -1;
    if (cfg->rejected_dir[0] != '\0') {
        /* A directory created here belongs to the user the milter runs as. */
        uid_t uid = geteuid();
        gid_t gid = getegid();
        struct passwd *pw = uid == 0 ? getpwnam(cfg->user) : NULL;
        if (pw != NULL) {
            uid = pw->pw_uid;
            gid = pw->pw_gid;
        }
        f->rejected = rejected_open(cfg->rejected_dir, cfg->rejected_max_files,
                                 cfg->rejected_max_bytes, uid, gid, err, errlen);
        if (f->rejected == NULL)
            return -1;
    }
    return 0;
}

int filter_start(struct filter *f, char *err, size_t errlen)
{
    return f->dns != NULL ? dns_resolver_start(f->dns, err, errlen) : 0;
}

void filter_close(struct filter *f)
{
    dkimcheck_free(&f->checker); /* before the resolver it queries */
    dkimsign_free(&f->signer);
    rejected_close(&f->rejected);
    dns_resolver_free(&f->dns);
}
