/* actions: a verdict as milter actions; see actions.h. */
#include "actions.h"

#include <string.h>

void actions_plan(const struct verdict *v, bool signing, struct actions *a)
{
    memset(a, 0, sizeof(*a));
    switch (v->action) {
    case VERDICT_ACCEPT:
        /* Modifications only with an accept: a refused message has none. */
        a->status = MS_CONTINUE;
        a->remove_rcpts = true;
        a->null_sender = v->null_sender;
        a->sign = signing;
        break;
    case VERDICT_REJECT:
        a->status = MS_REJECT;
        a->reply = true;
        a->keep_rejected = v->reason == REASON_DKIM; /* spec 6.7 */
        break;
    case VERDICT_TEMPFAIL:
        a->status = MS_TEMPFAIL;
        a->reply = true;
        break;
    case VERDICT_DISCARD:
    default:
        a->status = MS_DISCARD;
        break;
    }
}
