/* filter: what the milter decides, as session callbacks (msession.h): the
 * E2EE gate (verdict.c over common/mime.c and the mailbox flags), DKIM
 * verification of incoming and signing of outgoing mail, the rejected-mail
 * store; and their set-up.
 *
 * The callbacks' context (msession_config.ctx) is a struct filter, shared by
 * all sessions and not changed after set-up; the configuration it holds is
 * replaced whole on reload: each message takes a reference to the one
 * current at MAIL and lets it go at its end (config_live, config.h).
 */
#ifndef FILTERMAIL_FILTER_H
#define FILTERMAIL_FILTER_H

#include <stddef.h>

#include <libmilter/mfapi.h>
#include <libmilter/mfdef.h>

#include "config.h"
#include "dkimcheck.h"
#include "dkimsign.h"
#include "dns.h"
#include "msession.h"
#include "rejected.h"

struct filter {
    struct config_live *config;  /* the running configuration */
    struct dns_resolver *dns;
    struct dkimcheck *checker;   /* verification of incoming mail; NULL: off */
    struct dkimsign *signer;     /* signing of outgoing mail; NULL: off */
    struct rejected_store *rejected; /* NULL: DKIM-rejected mail is not kept */
};

/* What the milter asks of Postfix: every stage it does not need skipped, no
 * reply to MAIL, RCPT, headers and body chunks (a message costs Postfix one
 * round trip, at end of message), header values with their leading space. */
#define FILTER_PROTOCOL                                                                            \
    (SMFIP_NOCONNECT | SMFIP_NOHELO | SMFIP_NOUNKNOWN | SMFIP_NODATA | SMFIP_NOEOH |               \
     SMFIP_NR_MAIL | SMFIP_NR_RCPT | SMFIP_NR_HDR | SMFIP_NR_BODY | SMFIP_HDR_LEADSPC)
#define FILTER_ACTIONS (SMFIF_DELRCPT | SMFIF_CHGFROM | SMFIF_SETSYMLIST | SMFIF_ADDHDRS)
/* The macros wanted at MAIL FROM: {daemon_name} there is smtpd's
 * per-service value; at end of message cleanup would use main.cf's. */
#define FILTER_MACRO_STAGE SMFIM_ENVFROM
#define FILTER_MACROS "i {auth_authen} {daemon_name}"

extern const struct mserver_callbacks filter_callbacks;

/* The fields of a struct msession_config (or mserver_config) that make a
 * session this filter's, f its struct filter: {FILTER_SESSION(&f), ...}. */
#define FILTER_SESSION(f)                                                                          \
    .actions = FILTER_ACTIONS, .protocol = FILTER_PROTOCOL, .symlist_stage = FILTER_MACRO_STAGE,   \
    .symlist = FILTER_MACROS, .cb = &filter_callbacks, .ctx = (f)

/* The signer, resolver, verifier and rejected store that cfg asks for
 * (FILTERMAIL_SKIP_DKIM=1 or true in the environment turns verification
 * off). Runs as root, before privileges are dropped: the signing key is
 * readable by root only, the resolver reads its files now and starts no
 * thread. Returns 0, or -1 with a message in err. */
int filter_open(struct filter *f, const struct config *cfg, char *err, size_t errlen);
/* Starts the resolver's threads, after privileges are dropped. */
int filter_start(struct filter *f, char *err, size_t errlen);
/* Frees what filter_open made and stops the resolver's threads, so that no
 * thread runs under the exit handlers. Only once no session uses f (after
 * mserver_close returned 0). */
void filter_close(struct filter *f);

#endif
