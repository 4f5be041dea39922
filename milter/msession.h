/* msession: one milter session (a Postfix connection) as a pure core: bytes
 * from the MTA in, reply bytes out, the callbacks run in between; no socket,
 * no clock. The server loop (mserver.c) reads into the session's buffer and
 * sends what it produced; tests replay recorded Postfix conversations
 * through it (tests/unit/test_msession.c, tests/data/milter/).
 *
 * Also the API the callbacks use (the counterparts of libmilter's
 * smfi_getsymval, smfi_setreply, smfi_delrcpt, smfi_chgfrom and
 * smfi_insheader). A session is used by one thread at a time.
 */
#ifndef FILTERMAIL_MSESSION_H
#define FILTERMAIL_MSESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

struct msess;

/* What a callback answers. MS_NOREPLY for commands negotiated without reply. */
enum mstatus {
    MS_CONTINUE,
    MS_ACCEPT,
    MS_REJECT,   /* with the reply set by msess_setreply, else Postfix's default 5xx */
    MS_TEMPFAIL, /* likewise 4xx */
    MS_DISCARD,
    MS_NOREPLY,
};

struct mserver_callbacks {
    /* Start of a connection (after negotiation); may set the private data. */
    enum mstatus (*connect)(struct msess *s);
    enum mstatus (*envfrom)(struct msess *s, const char *sender);
    enum mstatus (*envrcpt)(struct msess *s, const char *rcpt);
    enum mstatus (*header)(struct msess *s, const char *name, const char *value);
    enum mstatus (*body)(struct msess *s, const unsigned char *data, size_t len);
    enum mstatus (*eom)(struct msess *s);
    void (*abort)(struct msess *s);
    /* End of a connection: free the private data. */
    void (*close)(struct msess *s);
};

/* What the milter offers; borrowed, must outlive the sessions. */
struct msession_config {
    uint32_t actions;          /* SMFIF_* wanted */
    uint32_t protocol;         /* SMFIP_* wanted (skips and no-reply flags) */
    int symlist_stage;         /* SMFIM_* stage of symlist */
    const char *symlist;       /* macros wanted at that stage, or NULL */
    const struct mserver_callbacks *cb;
    void *ctx;                 /* for the callbacks: msess_ctx() */
};

/* Results of msess_received. */
enum { MSESS_GO_ON = 0, MSESS_END = 1, MSESS_ERROR = -1 };

/* A new session, before option negotiation; NULL when out of memory. */
struct msess *msess_new(const struct msession_config *cfg);
/* Ends the session (the close callback runs when it had connected), frees,
 * sets *s to NULL. */
void msess_free(struct msess **s);

/* Where to put received bytes: returns the buffer and sets *room_r (> 0).
 * NULL when the packet being received is larger than MPROTO_MAX_PACKET or
 * memory is short: the connection must be closed. */
unsigned char *msess_inbuf(struct msess *s, size_t *room_r);
/* Bytes still missing of the packet being received (0 when none is started
 * or its length is not known yet). */
size_t msess_missing(const struct msess *s);
/* n bytes were written at msess_inbuf: handles every complete packet.
 * MSESS_GO_ON; MSESS_END when the MTA quit or the session must close after
 * its output is sent; MSESS_ERROR on a malformed packet (logged). */
int msess_received(struct msess *s, size_t n);
/* msess_inbuf + copy + msess_received, for tests and small inputs. */
int msess_push(struct msess *s, const void *data, size_t len);
/* The replies produced so far; the caller sends them and resets the buffer. */
struct buf *msess_output(struct msess *s);
/* True when no byte of a next packet has arrived. */
bool msess_between_packets(const struct msess *s);
/* True from MAIL to the end of that message (or ABORT). */
bool msess_in_txn(const struct msess *s);

/* The callbacks' API. */
void *msess_ctx(const struct msess *s); /* msession_config.ctx */
void *msess_getpriv(struct msess *s);
void msess_setpriv(struct msess *s, void *priv);
uint32_t msess_protocol(const struct msess *s); /* the negotiated SMFIP_* flags */
const char *msess_getsymval(struct msess *s, const char *name);
/* At end of message only. Return 0, or -1 when out of memory. */
int msess_setreply(struct msess *s, const char *code, const char *xcode, const char *text);
int msess_delrcpt(struct msess *s, const char *rcpt);
int msess_chgfrom(struct msess *s, const char *from);
int msess_insheader(struct msess *s, uint32_t idx, const char *name, const char *value);

#endif
