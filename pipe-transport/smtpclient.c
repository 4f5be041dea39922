/* smtpclient: the SMTP dialogue of one delivery. */
#include "smtpclient.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

#define SMTP_DATA_CHUNK (64 * 1024)

static void conn_failed(struct smtp_result *res, const struct conn *c, const char *stage)
{
    res->status = SMTP_CONN_ERROR;
    snprintf(res->stage, sizeof(res->stage), "%s", stage);
    snprintf(res->err, sizeof(res->err), "%s (while sending %s)", c->err, stage);
}

static void rejected(struct smtp_result *res, const struct smtp_reply *r, const char *stage)
{
    res->status = SMTP_REJECTED;
    res->reply = *r;
    snprintf(res->stage, sizeof(res->stage), "%s", stage);
}

/* Sends one command line and reads its reply. Returns 0, or -1 (res set). */
static int command(struct conn *c, struct smtp_reply_parser *p, const char *line,
                   const char *stage, struct smtp_reply *r, struct smtp_result *res)
{
    if (line != NULL && conn_write(c, line, strlen(line)) < 0) {
        conn_failed(res, c, stage);
        return -1;
    }
    if (conn_read_reply(c, p, r) < 0) {
        conn_failed(res, c, stage);
        return -1;
    }
    return 0;
}

static void quit(struct conn *c)
{
    /* Polite, and not waited for: the outcome is known. */
    conn_write(c, "QUIT\r\n", 6);
}

static int ehlo(struct conn *c, struct smtp_reply_parser *p, const struct smtp_job *job,
                struct smtp_caps *caps, struct smtp_result *res)
{
    char line[600];
    struct smtp_reply r;
    snprintf(line, sizeof(line), "EHLO %s\r\n", job->helo);
    if (command(c, p, line, "EHLO", &r, res) < 0)
        return -1;
    if (r.code / 100 != 2) {
        rejected(res, &r, "EHLO");
        return -1;
    }
    smtp_caps_parse(&r, caps);
    return 0;
}

/* Builds "MAIL FROM:<...> params\r\nRCPT TO:<...>\r\n..." into b. */
static int envelope_commands(const struct smtp_job *job, const struct smtp_caps *caps,
                             struct buf *mail, struct buf *rcpts)
{
    char param[64];
    if (buf_puts(mail, "MAIL FROM:<") < 0 || buf_puts(mail, job->sender) < 0 ||
        buf_puts(mail, ">") < 0)
        return -1;
    if (caps->size) {
        snprintf(param, sizeof(param), " SIZE=%llu", (unsigned long long)job->msg->size);
        if (buf_puts(mail, param) < 0)
            return -1;
    }
    if (job->msg->eightbit && caps->eightbitmime && buf_puts(mail, " BODY=8BITMIME") < 0)
        return -1;
    if (job->smtputf8 && buf_puts(mail, " SMTPUTF8") < 0)
        return -1;
    if (buf_puts(mail, "\r\n") < 0)
        return -1;
    for (size_t i = 0; i < job->nrcpts; i++)
        if (buf_puts(rcpts, "RCPT TO:<") < 0 || buf_puts(rcpts, job->rcpts[i]) < 0 ||
            buf_puts(rcpts, ">\r\n") < 0)
            return -1;
    return 0;
}

/* Sends the message and the final ".". Returns 0, -1 before the dot was
 * written (res: CONN_ERROR), -2 when writing the dot failed. */
static int send_data(struct conn *c, const struct smtp_job *job, struct smtp_result *res)
{
    char *chunk = malloc(SMTP_DATA_CHUNK);
    uint64_t off = 0;
    if (chunk == NULL) {
        res->status = SMTP_CONN_ERROR;
        snprintf(res->err, sizeof(res->err), "out of memory");
        return -1;
    }
    while (off < job->msg->size) {
        long n = spool_read(job->msg, off, chunk, SMTP_DATA_CHUNK);
        if (n <= 0) {
            res->status = SMTP_CONN_ERROR;
            snprintf(res->err, sizeof(res->err), "reading the spooled message failed");
            free(chunk);
            return -1;
        }
        if (conn_write(c, chunk, (size_t)n) < 0) {
            conn_failed(res, c, "message content");
            free(chunk);
            return -1;
        }
        off += (uint64_t)n;
    }
    free(chunk);
    if (conn_write(c, ".\r\n", 3) < 0) {
        conn_failed(res, c, "end of DATA");
        return -2;
    }
    return 0;
}

void smtp_deliver(struct conn *c, const struct smtp_job *job, struct smtp_result *res)
{
    struct smtp_reply_parser *p = malloc(sizeof(*p));
    struct smtp_reply *r = malloc(sizeof(*r));
    struct smtp_caps caps;
    struct buf mail, rcpts;

    memset(res, 0, sizeof(*res));
    buf_init(&mail, 1024 * 1024 + 4096);
    buf_init(&rcpts, 1024 * 1024);
    if (p == NULL || r == NULL) {
        res->status = SMTP_CONN_ERROR;
        snprintf(res->err, sizeof(res->err), "out of memory");
        goto out;
    }
    smtp_reply_parser_init(p, NULL);

    /* Greeting. */
    if (command(c, p, NULL, "(greeting)", r, res) < 0)
        goto out;
    if (r->code / 100 != 2) {
        rejected(res, r, "initial greeting");
        quit(c);
        goto out;
    }
    if (ehlo(c, p, job, &caps, res) < 0)
        goto out;
    if (job->starttls) {
        if (!caps.starttls) {
            res->status = SMTP_NO_STARTTLS;
            snprintf(res->stage, sizeof(res->stage), "EHLO");
            quit(c);
            goto out;
        }
        if (command(c, p, "STARTTLS\r\n", "STARTTLS", r, res) < 0)
            goto out;
        if (r->code != 220) {
            /* A refused STARTTLS is what a missing one is: the message is
             * only sent encrypted, so it waits (never bounces on it). */
            rejected(res, r, "STARTTLS");
            res->status = SMTP_NO_STARTTLS;
            quit(c);
            goto out;
        }
        /* Anything sent before the handshake could be an injection. */
        if (conn_has_buffered(c)) {
            res->status = SMTP_CONN_ERROR;
            snprintf(res->err, sizeof(res->err), "data after the reply to STARTTLS");
            goto out;
        }
        char err[256] = "";
        if (job->tls_upgrade(job->tls_arg, c, err, sizeof(err)) < 0) {
            res->status = SMTP_CONN_ERROR;
            snprintf(res->stage, sizeof(res->stage), "STARTTLS");
            snprintf(res->err, sizeof(res->err), "%s", err);
            goto out;
        }
        res->tls = true;
        smtp_reply_parser_init(p, NULL);
        if (ehlo(c, p, job, &caps, res) < 0)
            goto out;
    }
    if (job->smtputf8 && !caps.smtputf8) {
        res->status = SMTP_NEED_UTF8;
        quit(c);
        goto out;
    }
    if (caps.size && caps.size_limit > 0 && job->msg->size > caps.size_limit) {
        res->status = SMTP_TOO_BIG;
        res->reply.code = 552;
        snprintf(res->err, sizeof(res->err), "message size %llu exceeds the server's limit %llu",
                 (unsigned long long)job->msg->size, (unsigned long long)caps.size_limit);
        quit(c);
        goto out;
    }
    if (envelope_commands(job, &caps, &mail, &rcpts) < 0) {
        res->status = SMTP_CONN_ERROR;
        snprintf(res->err, sizeof(res->err), "envelope too large");
        goto out;
    }

    /* MAIL and RCPTs: one write with PIPELINING, else one at a time. DATA is
     * never pipelined: it must not be sent unless every RCPT succeeded. */
    if (caps.pipelining) {
        if (buf_append(&mail, rcpts.data, rcpts.len) < 0) {
            res->status = SMTP_CONN_ERROR;
            snprintf(res->err, sizeof(res->err), "envelope too large");
            goto out;
        }
        if (conn_write(c, mail.data, mail.len) < 0) {
            conn_failed(res, c, "MAIL FROM");
            goto out;
        }
        if (conn_read_reply(c, p, r) < 0) {
            conn_failed(res, c, "MAIL FROM");
            goto out;
        }
    } else if (command(c, p, buf_cstr(&mail), "MAIL FROM", r, res) < 0) {
        goto out;
    }
    bool mail_ok = r->code / 100 == 2;
    struct smtp_reply mail_reply = *r;
    size_t refused = 0;
    struct smtp_reply first_refusal = {0}, first_temp = {0};
    bool any_temp = false;
    const char *line = buf_cstr(&rcpts);
    for (size_t i = 0; i < job->nrcpts; i++) {
        const char *eol = strstr(line, "\r\n");
        if (!caps.pipelining) {
            if (!mail_ok)
                break;
            if (conn_write(c, line, (size_t)(eol + 2 - line)) < 0) {
                conn_failed(res, c, "RCPT TO");
                goto out;
            }
        }
        line = eol + 2;
        if (conn_read_reply(c, p, r) < 0) {
            conn_failed(res, c, "RCPT TO");
            goto out;
        }
        if (r->code / 100 == 2) {
            res->accepted++;
            continue;
        }
        if (refused++ == 0)
            first_refusal = *r;
        if (r->code / 100 != 5 && !any_temp) {
            first_temp = *r;
            any_temp = true;
        }
    }
    if (!mail_ok) {
        rejected(res, &mail_reply, "MAIL FROM");
        quit(c);
        goto out;
    }
    if (res->accepted < job->nrcpts) {
        conn_write(c, "RSET\r\n", 6);
        quit(c);
        if (res->accepted > 0) {
            res->status = SMTP_RCPT_MIXED;
            res->reply = first_refusal;
            snprintf(res->stage, sizeof(res->stage), "RCPT TO");
        } else {
            /* All refused: permanent only when every refusal was. */
            rejected(res, any_temp ? &first_temp : &first_refusal, "RCPT TO");
        }
        goto out;
    }
    if (command(c, p, "DATA\r\n", "DATA", r, res) < 0)
        goto out;
    if (r->code != 354) {
        rejected(res, r, "DATA");
        quit(c);
        goto out;
    }
    int sd = send_data(c, job, res);
    if (sd == -2) {
        res->status = SMTP_LOST_AFTER_DATA;
        goto out;
    }
    if (sd < 0)
        goto out;
    if (conn_read_reply(c, p, r) < 0) {
        res->status = SMTP_LOST_AFTER_DATA;
        snprintf(res->stage, sizeof(res->stage), "end of DATA");
        snprintf(res->err, sizeof(res->err), "%s (after end of DATA)", c->err);
        goto out;
    }
    if (r->code / 100 != 2) {
        rejected(res, r, "end of DATA");
        quit(c);
        goto out;
    }
    res->status = SMTP_SENT;
    res->reply = *r;
    snprintf(res->stage, sizeof(res->stage), "end of DATA");
    quit(c);
out:
    buf_free(&mail);
    buf_free(&rcpts);
    free(p);
    free(r);
}

bool smtp_result_outcome(const struct smtp_result *res, const struct smtp_peer *peer,
                         struct outcome *out, struct attempts *at)
{
    const char *host = peer->host, *addr = peer->addr;
    char line[600], dsn[16];

    switch (res->status) {
    case SMTP_SENT:
        smtp_reply_oneline(&res->reply, line, sizeof(line));
        outcome_set(out, OUTCOME_DELIVERED, "2.0.0", "delivered via SMTP to %s[%s]:%u (%s)", host,
                    addr, (unsigned)peer->port, line);
        return false;
    case SMTP_CONN_ERROR:
        if (peer->tls_failed)
            attempts_note(at, "4.7.5", "TLS failure with %s[%s]: %s", host, addr, res->err);
        else
            attempts_note(at, "4.4.2", "%s[%s]: %s", host, addr, res->err);
        return true;
    case SMTP_LOST_AFTER_DATA:
        outcome_set(out, OUTCOME_TEMPFAIL, "4.4.2",
                    "lost connection with %s[%s] after the end of the data: %s (the message may "
                    "have been accepted; no other host is tried)",
                    host, addr, res->err);
        return false;
    case SMTP_REJECTED:
        outcome_from_reply(out, &res->reply, host, addr, res->stage);
        return false;
    case SMTP_NO_STARTTLS:
        if (strcmp(res->stage, "STARTTLS") == 0) {
            smtp_reply_oneline(&res->reply, line, sizeof(line));
            outcome_set(out, OUTCOME_TEMPFAIL, "4.7.5",
                        "STARTTLS refused by %s[%s] (%s): mail for %s is only sent encrypted",
                        host, addr, line, peer->domain);
        } else {
            outcome_set(out, OUTCOME_TEMPFAIL, "4.7.5",
                        "STARTTLS not offered by %s[%s]: mail for %s is only sent encrypted",
                        host, addr, peer->domain);
        }
        return false;
    case SMTP_RCPT_MIXED:
        snprintf(dsn, sizeof(dsn), "4.0.0");
        if (res->reply.enhanced[0] != '\0')
            snprintf(dsn, sizeof(dsn), "4%s", res->reply.enhanced + 1);
        smtp_reply_oneline(&res->reply, line, sizeof(line));
        outcome_set(out, OUTCOME_TEMPFAIL, dsn,
                    "%zu of %zu recipients refused by %s[%s] (%s); nothing was sent, all are "
                    "retried (a recipient limit of 1 gives each its own status)",
                    peer->nrcpts - res->accepted, peer->nrcpts, host, addr, line);
        return false;
    case SMTP_TOO_BIG:
        outcome_set(out, OUTCOME_BOUNCE, "5.3.4", "message too big for %s[%s]: %s", host, addr,
                    res->err);
        return false;
    case SMTP_NEED_UTF8:
        outcome_set(out, OUTCOME_BOUNCE, "5.6.7",
                    "SMTPUTF8 is required, but was not offered by host %s[%s]", host, addr);
        return false;
    }
    outcome_set(out, OUTCOME_TEMPFAIL, "4.3.0", "unknown SMTP result %d", (int)res->status);
    return false;
}
