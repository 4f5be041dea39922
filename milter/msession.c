/* msession: one milter session as bytes in, bytes out; see msession.h. */
#include "msession.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include "log.h"
#include "mproto.h"

#define TARGET "filtermail::milter"

/* Macros kept per session (Postfix sends a handful per stage). */
#define MAX_MACROS 64
/* Bytes of macro names and values kept per session. */
#define MAX_MACRO_BYTES (64 * 1024)
/* Bytes read at once; a packet larger than this grows the buffer up to
 * MPROTO_MAX_PACKET. */
#define READ_CHUNK (128 * 1024)

struct macro {
    char stage;
    char *name, *value;
};

struct msess {
    const struct msession_config *cfg;
    void *priv;
    uint32_t actions, protocol;
    bool connected;      /* negotiated; connect callback ran */
    bool in_eom;         /* modifications are allowed */
    bool in_txn;         /* from MAIL to end of message or ABORT */
    bool have_reply;
    char reply[1024];
    struct macro macros[MAX_MACROS];
    size_t nmacros;
    struct buf out;
    unsigned char *in;   /* received bytes: an unfinished packet at the front */
    size_t inlen, incap;
};

/* ------------------------------------------------------------------------ */
/* Session API. */

void *msess_ctx(const struct msess *s)
{
    return s->cfg->ctx;
}

void *msess_getpriv(struct msess *s)
{
    return s->priv;
}

void msess_setpriv(struct msess *s, void *priv)
{
    s->priv = priv;
}

uint32_t msess_protocol(const struct msess *s)
{
    return s->protocol;
}

const char *msess_getsymval(struct msess *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->nmacros; i++) {
        const char *m = s->macros[i].name;
        /* Postfix sends "{name}" for long names; accept either spelling. */
        if (strcmp(m, name) == 0 ||
            (m[0] == '{' && strlen(m) == n + 2 && strncmp(m + 1, name, n) == 0) ||
            (name[0] == '{' && strlen(m) + 2 == n && strncmp(name + 1, m, n - 2) == 0))
            return s->macros[i].value;
    }
    return NULL;
}

int msess_setreply(struct msess *s, const char *code, const char *xcode, const char *text)
{
    int n = snprintf(s->reply, sizeof(s->reply), "%s%s%s %s", code,
                     xcode != NULL && xcode[0] != '\0' ? " " : "", xcode != NULL ? xcode : "",
                     text);
    if (n < 0 || (size_t)n >= sizeof(s->reply)) {
        s->have_reply = false;
        return -1;
    }
    s->have_reply = true;
    return 0;
}

int msess_delrcpt(struct msess *s, const char *rcpt)
{
    if (!s->in_eom || !(s->actions & SMFIF_DELRCPT))
        return -1;
    return mproto_put_str(&s->out, SMFIR_DELRCPT, rcpt);
}

int msess_chgfrom(struct msess *s, const char *from)
{
    if (!s->in_eom || !(s->actions & SMFIF_CHGFROM))
        return -1;
    return mproto_put_chgfrom(&s->out, from);
}

int msess_insheader(struct msess *s, uint32_t idx, const char *name, const char *value)
{
    if (!s->in_eom || !(s->actions & SMFIF_ADDHDRS))
        return -1;
    return mproto_put_insheader(&s->out, idx, name, value);
}

/* ------------------------------------------------------------------------ */
/* Packets. */

static void macros_clear(struct msess *s, char stage)
{
    size_t o = 0;
    for (size_t i = 0; i < s->nmacros; i++) {
        if (stage == 0 || s->macros[i].stage == stage) {
            free(s->macros[i].name);
            free(s->macros[i].value);
        } else {
            s->macros[o++] = s->macros[i];
        }
    }
    s->nmacros = o;
}

/* Stores the macros of one stage. Returns 0, or -1 when they cannot all be
 * kept (more than MAX_MACROS, MAX_MACRO_BYTES in all, or out of memory): a
 * dropped {auth_authen} or {daemon_name} would change the message's
 * direction, so the connection is closed and Postfix answers with its
 * milter_default_action (tempfail). */
static int macros_set(struct msess *s, const struct mpacket *p)
{
    const char *name, *value;
    size_t off = 1;
    if (p->len < 1)
        return 0;
    macros_clear(s, (char)p->data[0]);
    size_t bytes = 0;
    for (size_t i = 0; i < s->nmacros; i++)
        bytes += strlen(s->macros[i].name) + strlen(s->macros[i].value);
    while (mproto_macro(p, &off, &name, &value)) {
        bytes += strlen(name) + strlen(value);
        if (s->nmacros >= MAX_MACROS || bytes > MAX_MACRO_BYTES) {
            log_warn(TARGET, "more macros than the limits (%d, %d bytes); closing the connection",
                     MAX_MACROS, MAX_MACRO_BYTES);
            return -1;
        }
        struct macro *m = &s->macros[s->nmacros];
        m->stage = (char)p->data[0];
        m->name = strdup(name);
        m->value = strdup(value);
        if (m->name == NULL || m->value == NULL) {
            free(m->name);
            free(m->value);
            log_err(TARGET, "out of memory storing macros; closing the connection");
            return -1;
        }
        s->nmacros++;
    }
    return 0;
}

/* Queues the answer to a command; nothing when no reply was negotiated. */
static int respond(struct msess *s, enum mstatus st, uint32_t nr_flag)
{
    if (nr_flag != 0 && (s->protocol & nr_flag))
        return 0;
    switch (st) {
    case MS_ACCEPT:
        return mproto_put(&s->out, SMFIR_ACCEPT, NULL, 0);
    case MS_REJECT:
    case MS_TEMPFAIL:
        if (s->have_reply) {
            s->have_reply = false;
            return mproto_put_str(&s->out, SMFIR_REPLYCODE, s->reply);
        }
        return mproto_put(&s->out, st == MS_REJECT ? SMFIR_REJECT : SMFIR_TEMPFAIL, NULL, 0);
    case MS_DISCARD:
        return mproto_put(&s->out, SMFIR_DISCARD, NULL, 0);
    case MS_CONTINUE:
    case MS_NOREPLY:
    default:
        return mproto_put(&s->out, SMFIR_CONTINUE, NULL, 0);
    }
}

static void session_end(struct msess *s)
{
    const struct mserver_callbacks *cb = s->cfg->cb;
    s->in_txn = false;
    if (s->connected && cb->close != NULL)
        cb->close(s);
    s->connected = false;
    s->priv = NULL;
    s->have_reply = false;
    macros_clear(s, 0);
}

/* Handles one packet. Returns 0, 1 to close the connection, -1 on error. */
static int handle(struct msess *s, const struct mpacket *p)
{
    const struct mserver_callbacks *cb = s->cfg->cb;
    const struct msession_config *cfg = s->cfg;
    uint32_t version, actions, protocol;
    const char *a, *b;

    switch (p->cmd) {
    case SMFIC_OPTNEG:
        if (mproto_parse_optneg(p, &version, &actions, &protocol) < 0) {
            log_warn(TARGET, "malformed option negotiation from the MTA; closing the connection");
            return -1;
        }
        if (version < 6) {
            log_err(TARGET, "the MTA offers milter protocol version %u; version 6 is needed",
                    (unsigned)version);
            return -1;
        }
        s->actions = actions & cfg->actions;
        s->protocol = protocol & cfg->protocol;
        if (mproto_put_optneg(&s->out, 6, s->actions, s->protocol, cfg->symlist_stage,
                              (s->actions & SMFIF_SETSYMLIST) ? cfg->symlist : NULL) < 0)
            return -1;
        if (s->connected)
            session_end(s);
        s->connected = true;
        if (cb->connect != NULL && cb->connect(s) != MS_CONTINUE)
            return -1;
        return 0;
    case SMFIC_MACRO:
        return macros_set(s, p);
    case SMFIC_MAIL:
        s->in_txn = true;
        a = mproto_string(p, 0);
        return respond(s, cb->envfrom(s, a != NULL ? a : "<>"), SMFIP_NR_MAIL);
    case SMFIC_RCPT:
        a = mproto_string(p, 0);
        return respond(s, cb->envrcpt(s, a != NULL ? a : ""), SMFIP_NR_RCPT);
    case SMFIC_HEADER:
        a = mproto_string(p, 0);
        b = mproto_string(p, 1);
        if (a == NULL || b == NULL)
            return -1;
        return respond(s, cb->header(s, a, b), SMFIP_NR_HDR);
    case SMFIC_BODY:
        return respond(s, cb->body(s, p->data, p->len), SMFIP_NR_BODY);
    case SMFIC_BODYEOB: {
        enum mstatus st = MS_CONTINUE;
        if (p->len > 0)
            st = cb->body(s, p->data, p->len);
        s->in_eom = true;
        if (st == MS_CONTINUE || st == MS_NOREPLY)
            st = cb->eom(s);
        s->in_eom = false;
        s->in_txn = false;
        int rc = respond(s, st, 0);
        s->have_reply = false;
        return rc;
    }
    case SMFIC_ABORT:
        s->in_txn = false;
        if (cb->abort != NULL)
            cb->abort(s);
        s->have_reply = false;
        return 0;
    case SMFIC_QUIT:
        return 1;
    case SMFIC_QUIT_NC:
        session_end(s);
        s->connected = true;
        if (cb->connect != NULL && cb->connect(s) != MS_CONTINUE)
            return -1;
        return 0;
    case SMFIC_CONNECT:
        return respond(s, MS_CONTINUE, SMFIP_NR_CONN);
    case SMFIC_HELO:
        return respond(s, MS_CONTINUE, SMFIP_NR_HELO);
    case SMFIC_DATA:
        return respond(s, MS_CONTINUE, SMFIP_NR_DATA);
    case SMFIC_EOH:
        return respond(s, MS_CONTINUE, SMFIP_NR_EOH);
    case SMFIC_UNKNOWN:
        return respond(s, MS_CONTINUE, SMFIP_NR_UNKN);
    default:
        log_warn(TARGET, "unknown milter command 0x%02x", (unsigned char)p->cmd);
        return -1;
    }
}

/* ------------------------------------------------------------------------ */
/* Bytes in, bytes out. */

struct msess *msess_new(const struct msession_config *cfg)
{
    struct msess *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->in = malloc(READ_CHUNK);
    if (s->in == NULL) {
        free(s);
        return NULL;
    }
    s->cfg = cfg;
    s->incap = READ_CHUNK;
    buf_init(&s->out, 2 * MPROTO_MAX_PACKET);
    return s;
}

void msess_free(struct msess **sp)
{
    struct msess *s = *sp;
    if (s == NULL)
        return;
    session_end(s);
    buf_free(&s->out);
    free(s->in);
    free(s);
    *sp = NULL;
}

struct buf *msess_output(struct msess *s)
{
    return &s->out;
}

bool msess_between_packets(const struct msess *s)
{
    return s->inlen == 0;
}

bool msess_in_txn(const struct msess *s)
{
    return s->in_txn;
}

size_t msess_missing(const struct msess *s)
{
    if (s->inlen < 4)
        return 0;
    size_t need = (size_t)s->in[0] << 24 | (size_t)s->in[1] << 16 | (size_t)s->in[2] << 8 |
                  s->in[3];
    need += 4;
    return need > s->inlen ? need - s->inlen : 0;
}

unsigned char *msess_inbuf(struct msess *s, size_t *room_r)
{
    /* A buffer grown for one large packet goes back to READ_CHUNK once it
     * is handled, so an idle session does not keep up to 1 MiB. */
    if (s->incap > READ_CHUNK && s->inlen <= READ_CHUNK / 4) {
        unsigned char *in = realloc(s->in, READ_CHUNK);
        if (in != NULL) {
            s->in = in;
            s->incap = READ_CHUNK;
        }
    }
    if (s->incap - s->inlen < READ_CHUNK / 4) {
        size_t cap = s->incap * 2;
        if (cap > MPROTO_MAX_PACKET + 5 + READ_CHUNK)
            cap = MPROTO_MAX_PACKET + 5 + READ_CHUNK;
        if (cap <= s->incap) {
            log_warn(TARGET, "milter packet too large; closing the connection");
            return NULL;
        }
        unsigned char *in = realloc(s->in, cap);
        if (in == NULL)
            return NULL;
        s->in = in;
        s->incap = cap;
    }
    *room_r = s->incap - s->inlen;
    return s->in + s->inlen;
}

int msess_received(struct msess *s, size_t n)
{
    struct mpacket p;
    size_t start = 0;
    long k;
    int rc = 0;

    s->inlen += n;
    while ((k = mproto_next(s->in + start, s->inlen - start, MPROTO_MAX_PACKET, &p)) > 0) {
        start += (size_t)k;
        rc = handle(s, &p);
        if (rc != 0)
            break;
    }
    /* Keep the unfinished packet at the front. */
    if (start > 0) {
        memmove(s->in, s->in + start, s->inlen - start);
        s->inlen -= start;
    }
    if (rc < 0)
        return MSESS_ERROR;
    if (rc > 0)
        return MSESS_END;
    if (k < 0) {
        log_warn(TARGET, "malformed milter packet; closing the connection");
        return MSESS_ERROR;
    }
    return MSESS_GO_ON;
}

int msess_push(struct msess *s, const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len > 0) {
        size_t room;
        unsigned char *in = msess_inbuf(s, &room);
        if (in == NULL)
            return MSESS_ERROR;
        size_t n = len < room ? len : room;
        memcpy(in, p, n);
        int rc = msess_received(s, n);
        if (rc != MSESS_GO_ON)
            return rc;
        p += n;
        len -= n;
    }
    return MSESS_GO_ON;
}
