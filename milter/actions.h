/* actions: what the milter tells Postfix at end of message for a verdict
 * (verdict.h): the answer (continue, reject, tempfail, discard) and the
 * changes that come with an accept (recipients removed, the envelope sender
 * made <>, a DKIM-Signature added), and whether a DKIM-rejected message is
 * kept.
 *
 * Pure; thread-safe.
 */
#ifndef FILTERMAIL_ACTIONS_H
#define FILTERMAIL_ACTIONS_H

#include <stdbool.h>

#include "msession.h"
#include "verdict.h"

struct actions {
    enum mstatus status;    /* the answer */
    bool reply;             /* with the verdict's code, xcode and text */
    bool remove_rcpts;      /* delete the recipients the verdict marked */
    bool null_sender;       /* change the envelope sender to <> */
    bool sign;              /* add the DKIM-Signature */
    bool keep_rejected;     /* keep the message in the rejected-mail store */
};

/* The actions for v; signing says whether this message is being signed
 * (outgoing with signing on). */
void actions_plan(const struct verdict *v, bool signing, struct actions *a);

#endif
