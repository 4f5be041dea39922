/* Tests for milter/actions.c: each verdict's milter actions. */
#include "actions.h"
#include "unit.h"

static void test_plan(void)
{
    static const struct {
        const char *name;
        enum verdict_action action;
        enum verdict_reason reason;
        bool null_sender, signing;
        struct actions want;
    } cases[] = {
        {"accept", VERDICT_ACCEPT, REASON_NONE, false, false,
         {.status = MS_CONTINUE, .remove_rcpts = true}},
        {"accept, signed", VERDICT_ACCEPT, REASON_NONE, false, true,
         {.status = MS_CONTINUE, .remove_rcpts = true, .sign = true}},
        {"accept, return path <>", VERDICT_ACCEPT, REASON_NONE, true, false,
         {.status = MS_CONTINUE, .remove_rcpts = true, .null_sender = true}},
        {"reject 523", VERDICT_REJECT, REASON_UNENCRYPTED, true, true,
         {.status = MS_REJECT, .reply = true}},
        {"reject DKIM: kept", VERDICT_REJECT, REASON_DKIM, false, false,
         {.status = MS_REJECT, .reply = true, .keep_rejected = true}},
        {"tempfail DKIM: not kept", VERDICT_TEMPFAIL, REASON_DKIM, false, false,
         {.status = MS_TEMPFAIL, .reply = true}},
        {"discard", VERDICT_DISCARD, REASON_NONE, true, true, {.status = MS_DISCARD}},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct verdict v = {.action = cases[i].action, .reason = cases[i].reason,
                            .null_sender = cases[i].null_sender};
        struct actions a;
        actions_plan(&v, cases[i].signing, &a);
        const struct actions *w = &cases[i].want;
        CHECKF(a.status == w->status && a.reply == w->reply &&
                   a.remove_rcpts == w->remove_rcpts && a.null_sender == w->null_sender &&
                   a.sign == w->sign && a.keep_rejected == w->keep_rejected,
               "%s", cases[i].name);
    }
}

int main(void)
{
    UNIT_RUN(test_plan);
    return unit_summary();
}
