/* Tests for policyd/ratelimit.c: the policy decision on an injected clock
 * (burst, refill, idle reset, exemptions, bounces, keys, one charge per
 * message), the sender table under churn and at its cap, the reply text,
 * and the snapshot. */
#include "ratelimit.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S 1000000000ull
#define T0 (1000 * S)

static char *exempt_items[] = {"Bot@Example.org", "exempt.example", "@partner.example"};
static const struct config_list exempt = {exempt_items, 3};

static struct ratelimit *make(uint32_t per_minute, uint32_t burst, size_t max_senders)
{
    struct ratelimit_config c = {.per_minute = per_minute,
                                 .burst = burst,
                                 .exempt = &exempt,
                                 .max_senders = max_senders,
                                 .seed = {0x0123456789abcdefull, 0xfedcba9876543210ull}};
    struct ratelimit *rl = ratelimit_new(&c);
    if (rl == NULL)
        abort();
    return rl;
}

/* One request; returns the verdict (fills *d when given). */
static enum ratelimit_verdict ask(struct ratelimit *rl, struct ratelimit_session *s,
                                  const char *sender, const char *sasl, const char *instance,
                                  uint64_t now, struct ratelimit_decision *d_r)
{
    struct ratelimit_request req = {"smtpd_access_policy", sender, sasl, instance};
    struct ratelimit_decision d;
    ratelimit_decide(rl, s, &req, now, &d);
    if (d_r != NULL)
        *d_r = d;
    return d.verdict;
}

/* Sends n one-recipient messages at now (each its own instance). */
static int pass_count(struct ratelimit *rl, const char *sender, uint64_t now, int n)
{
    static unsigned serial;
    int passed = 0;
    for (int i = 0; i < n; i++) {
        char inst[32];
        snprintf(inst, sizeof(inst), "m%u", serial++);
        passed += ask(rl, NULL, sender, NULL, inst, now, NULL) == RATELIMIT_PASS;
    }
    return passed;
}

static void test_burst_refill_idle(void)
{
    struct ratelimit *rl = make(60, 10, 0);
    struct ratelimit_decision d;

    /* Spec O19. */
    CHECK_INT(pass_count(rl, "user1@example.org", T0, 10), 10);
    CHECK_INT(ask(rl, NULL, "user1@example.org", NULL, "x1", T0, &d), RATELIMIT_LIMITED);
    CHECK_INT(d.reason, RATELIMIT_R_LIMITED);
    CHECK(d.allowed_at == T0 + S);
    CHECK_STR(d.key, "user1@example.org");
    /* Keys are independent. */
    CHECK_INT(pass_count(rl, "user3@example.org", T0, 1), 1);
    /* After one interval one more, then refused again. */
    CHECK_INT(pass_count(rl, "user1@example.org", T0 + S + S / 10, 2), 1);
    /* After B x T idle, a whole burst again. */
    CHECK_INT(pass_count(rl, "user1@example.org", T0 + 12 * S, 11), 10);
    ratelimit_free(&rl);
    CHECK(rl == NULL);
    ratelimit_free(&rl);
}

static void test_keys(void)
{
    struct ratelimit *rl = make(60, 1, 0);
    struct ratelimit_decision d;

    /* Spec O22: the sender is lowercased. */
    CHECK_INT(ask(rl, NULL, "A@Example.org", NULL, "1", T0, &d), RATELIMIT_PASS);
    CHECK_STR(d.key, "a@example.org");
    CHECK_INT(ask(rl, NULL, "a@example.org", NULL, "2", T0, NULL), RATELIMIT_LIMITED);
    /* The SASL login wins over the sender, lowercased too. */
    CHECK_INT(ask(rl, NULL, "other@example.org", "A@EXAMPLE.ORG", "3", T0, &d), RATELIMIT_LIMITED);
    CHECK_STR(d.key, "a@example.org");
    CHECK_INT(ask(rl, NULL, "a@example.org", "login", "4", T0, &d), RATELIMIT_PASS);
    CHECK_STR(d.key, "login");
    /* An empty login is no login. */
    CHECK_INT(ask(rl, NULL, "b@example.org", "", "5", T0, &d), RATELIMIT_PASS);
    CHECK_STR(d.key, "b@example.org");
    /* Long keys are cut; senders that share the prefix share the budget. */
    char big[RATELIMIT_KEY_MAX + 100];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    CHECK_INT(ask(rl, NULL, big, NULL, "6", T0, &d), RATELIMIT_PASS);
    CHECK_INT(d.key_len, RATELIMIT_KEY_MAX);
    big[RATELIMIT_KEY_MAX + 50] = 'y';
    CHECK_INT(ask(rl, NULL, big, NULL, "7", T0, NULL), RATELIMIT_LIMITED);
    ratelimit_free(&rl);
}

static void test_bounces_and_exemptions(void)
{
    struct ratelimit *rl = make(60, 1, 0);
    struct ratelimit_decision d;
    struct ratelimit_stats st;

    /* Spec O21: the null sender is never limited, even with a login. */
    for (int i = 0; i < 20; i++) {
        CHECK_INT(ask(rl, NULL, "", NULL, NULL, T0, &d), RATELIMIT_PASS);
        CHECK_INT(d.reason, RATELIMIT_R_BOUNCE);
        CHECK_INT(ask(rl, NULL, NULL, NULL, NULL, T0, &d), RATELIMIT_PASS);
        CHECK_INT(ask(rl, NULL, "", "user@example.org", "i", T0, &d), RATELIMIT_PASS);
        CHECK_INT(d.reason, RATELIMIT_R_BOUNCE);
    }
    /* filtermail_ratelimit_exempt: an address, a domain, an @domain; any case. */
    const char *exempted[] = {"bot@example.org", "BOT@example.ORG", "a@exempt.example",
                              "b@Exempt.Example", "c@partner.example"};
    for (size_t k = 0; k < sizeof(exempted) / sizeof(exempted[0]); k++)
        for (int i = 0; i < 5; i++) {
            CHECK_INT(ask(rl, NULL, exempted[k], NULL, NULL, T0, &d), RATELIMIT_PASS);
            CHECKF(d.reason == RATELIMIT_R_EXEMPT, "%s", exempted[k]);
        }
    /* Not exempt: other users, subdomains, look-alikes. */
    const char *limited[] = {"bot2@example.org", "a@sub.exempt.example", "a@exempt.example.com",
                             "exempt.example@other.org", "partner.example"};
    for (size_t k = 0; k < sizeof(limited) / sizeof(limited[0]); k++) {
        CHECKF(ask(rl, NULL, limited[k], NULL, NULL, T0, NULL) == RATELIMIT_PASS, "%s", limited[k]);
        CHECKF(ask(rl, NULL, limited[k], NULL, NULL, T0, NULL) == RATELIMIT_LIMITED, "%s",
               limited[k]);
    }
    /* Exempt through the login, which is the key. */
    CHECK_INT(ask(rl, NULL, "x@y.org", "bot@example.org", NULL, T0, &d), RATELIMIT_PASS);
    CHECK_INT(d.reason, RATELIMIT_R_EXEMPT);
    /* Bounces and exempt senders take no room in the table. */
    ratelimit_stats(rl, &st);
    CHECK_INT(st.senders, 5);
    ratelimit_free(&rl);
}

static void test_not_policy(void)
{
    struct ratelimit *rl = make(60, 10, 0);
    struct ratelimit_request req = {NULL, "a@b", NULL, NULL};
    struct ratelimit_decision d;

    ratelimit_decide(rl, NULL, &req, T0, &d);
    CHECK_INT(d.verdict, RATELIMIT_INVALID);
    CHECK_INT(d.reason, RATELIMIT_R_NOT_POLICY);
    req.request = "junk";
    ratelimit_decide(rl, NULL, &req, T0, &d);
    CHECK_INT(d.verdict, RATELIMIT_INVALID);
    char out[64];
    CHECK_INT(ratelimit_action(&d, T0, 0, out, sizeof(out)), -1);
    ratelimit_free(&rl);
}

/* Postfix asks once per RCPT; a message costs one unit. */
static void test_one_charge_per_message(void)
{
    struct ratelimit *rl = make(60, 10, 0);
    struct ratelimit_session s = {0}, s2 = {0};
    struct ratelimit_decision d;

    /* A 50-recipient message, then nine one-recipient ones: all ten pass. */
    for (int r = 0; r < 50; r++) {
        CHECK_INT(ask(rl, &s, "a@x.org", "a@x.org", "inst-big", T0, &d), RATELIMIT_PASS);
        CHECK_INT(d.reason, r == 0 ? RATELIMIT_R_ALLOWED : RATELIMIT_R_CACHED);
    }
    for (int m = 0; m < 9; m++)
        for (int r = 0; r < 3; r++) {
            char inst[16];
            snprintf(inst, sizeof(inst), "inst%d", m);
            CHECK_INT(ask(rl, &s, "a@x.org", "a@x.org", inst, T0, NULL), RATELIMIT_PASS);
        }
    /* The eleventh message is refused for every one of its recipients, even
     * when time passes between them (no partial delivery). */
    for (int r = 0; r < 5; r++) {
        CHECK_INT(ask(rl, &s, "a@x.org", "a@x.org", "inst-11", T0 + (uint64_t)r * S, &d),
                  RATELIMIT_LIMITED);
        CHECK(d.allowed_at == T0 + S);
    }
    /* The session remembers only the last message; the table remembers it
     * per sender, so a reconnect in the middle of a message is no charge. */
    CHECK_INT(ask(rl, &s2, "a@x.org", "a@x.org", "inst-11", T0 + 5 * S, &d), RATELIMIT_LIMITED);
    CHECK_INT(d.reason, RATELIMIT_R_CACHED);
    CHECK_INT(ask(rl, &s2, "a@x.org", "a@x.org", "inst-new", T0 + 5 * S, &d), RATELIMIT_PASS);
    CHECK_INT(ask(rl, NULL, "a@x.org", "a@x.org", "inst-new", T0 + 5 * S, &d), RATELIMIT_PASS);
    CHECK_INT(d.reason, RATELIMIT_R_CACHED);
    /* The same instance string for another sender is another message. */
    CHECK_INT(ask(rl, &s2, "b@x.org", NULL, "inst-new", T0 + 5 * S, &d), RATELIMIT_PASS);
    CHECK_INT(d.reason, RATELIMIT_R_ALLOWED);
    /* Without an instance (check at MAIL with smtpd_delay_reject=no) every
     * request is a message. */
    for (int i = 0; i < 10; i++)
        CHECK_INT(ask(rl, &s, "c@x.org", NULL, "", T0, NULL), RATELIMIT_PASS);
    CHECK_INT(ask(rl, &s, "c@x.org", NULL, NULL, T0, NULL), RATELIMIT_LIMITED);
    ratelimit_free(&rl);
}

static void test_action_text(void)
{
    struct ratelimit *rl = make(60, 1, 0);
    struct ratelimit_decision d;
    char out[800];
    /* 2026-01-02T03:04:05.678Z */
    uint64_t wall = 1767323045678000000ull;

    CHECK_INT(ask(rl, NULL, "user1@example.org", NULL, "1", T0, &d), RATELIMIT_PASS);
    CHECK_INT(ratelimit_action(&d, T0, wall, out, sizeof(out)), 0);
    CHECK_STR(out, "DUNNO");
    CHECK_INT(ask(rl, NULL, "user1@example.org", NULL, "2", T0 + S / 4, &d), RATELIMIT_LIMITED);
    CHECK_INT(ratelimit_action(&d, T0 + S / 4, wall, out, sizeof(out)), 0);
    CHECK_STR(out, "450 4.7.1: Too much mail from <user1@example.org>, rate-limited until "
                   "2026-01-02T03:04:06.428Z");
    CHECK_INT(ratelimit_action(&d, T0 + S / 4, wall, out, 40), -1);
    /* Nothing from the key can break the reply line. */
    CHECK_INT(ask(rl, NULL, "w\x01\xc3\xa4@x", NULL, "3", T0, &d), RATELIMIT_PASS);
    CHECK_INT(ask(rl, NULL, "w\x01\xc3\xa4@x", NULL, "4", T0, &d), RATELIMIT_LIMITED);
    CHECK_INT(ratelimit_action(&d, T0, wall, out, sizeof(out)), 0);
    CHECK(strstr(out, "<w???@x>") != NULL);
    CHECK_INT(ratelimit_format_until(&d, T0, wall, out, sizeof(out)), 0);
    CHECK_STR(out, "2026-01-02T03:04:06.678Z");
    ratelimit_free(&rl);
}

/* The table against a model (one TAT per key, no table): random senders,
 * times and sweeps must give the same verdicts, whatever the probing,
 * deletion and growth do. */
static void test_table_matches_model(void)
{
    enum { KEYS = 3000, OPS = 60000 };
    struct ratelimit *rl = make(600, 3, 0);
    struct gcra g;
    uint64_t *tat = calloc(KEYS, sizeof(*tat)), now = T0, rng = 42;
    struct ratelimit_stats st;
    int mismatches = 0;

    gcra_init(&g, 600, 3);
    for (int op = 0; op < OPS; op++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        unsigned k = (unsigned)(rng >> 33) % KEYS;
        char key[32], inst[32];
        now += (rng >> 20) % (S / 50);
        snprintf(key, sizeof(key), "user%u@example.org", k);
        snprintf(inst, sizeof(inst), "%d", op);
        uint64_t t = tat[k] > now ? tat[k] : now;
        bool want = gcra_step(&g, &t, now, NULL);
        if (want)
            tat[k] = t;
        enum ratelimit_verdict v = ask(rl, NULL, key, NULL, inst, now, NULL);
        if (v != (want ? RATELIMIT_PASS : RATELIMIT_LIMITED))
            mismatches++;
        if (op % 997 == 0)
            ratelimit_sweep(rl, now, 5000);
    }
    CHECK_INT(mismatches, 0);
    /* Everything refills: a full sweep empties the table. */
    now += 10 * S;
    ratelimit_stats(rl, &st);
    CHECK(st.senders > 0);
    ratelimit_sweep(rl, now, st.slots);
    ratelimit_stats(rl, &st);
    CHECK_INT(st.senders, 0);
    free(tat);
    ratelimit_free(&rl);
}

static void test_cap(void)
{
    struct ratelimit *rl = make(1, 10, 100); /* slow: nothing refills */
    struct ratelimit_stats st;
    char key[32];

    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "u%d@x", i);
        CHECK_INT(ask(rl, NULL, key, NULL, NULL, T0 + (uint64_t)i, NULL), RATELIMIT_PASS);
    }
    ratelimit_stats(rl, &st);
    CHECK_INT(st.senders, 100);
    CHECK(st.evicted_full == 900);
    /* The newest are still tracked. */
    snprintf(key, sizeof(key), "u%d@x", 999);
    CHECK_INT(pass_count(rl, key, T0 + 2000, 10), 9);
    /* Refilled entries are swept before live ones are evicted. */
    struct ratelimit *r2 = make(60, 1, 100);
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "old%d@x", i);
        ask(r2, NULL, key, NULL, NULL, T0, NULL);
    }
    for (int i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "new%d@x", i);
        ask(r2, NULL, key, NULL, NULL, T0 + 2 * S, NULL);
    }
    ratelimit_stats(r2, &st);
    CHECK_INT(st.senders, 100);
    CHECK(st.evicted_full == 0);
    ratelimit_free(&r2);
    ratelimit_free(&rl);
}

static char *save(struct ratelimit *rl, uint64_t mono, uint64_t wall, long *n_r)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    *n_r = ratelimit_save(rl, f, mono, wall);
    fclose(f);
    return text;
}

static long load(struct ratelimit *rl, const char *text, uint64_t mono, uint64_t wall, char *err)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    long n = ratelimit_load(rl, f, mono, wall, err, 128);
    fclose(f);
    return n;
}

static void test_snapshot(void)
{
    struct ratelimit *rl = make(60, 10, 0), *r2;
    char err[128], *text;
    long n;
    uint64_t wall = 1767323045000000000ull;

    CHECK_INT(pass_count(rl, "a@x.org", T0, 10), 10);
    CHECK_INT(pass_count(rl, "b c@x.org", T0, 4), 4);           /* a space in the key */
    CHECK_INT(pass_count(rl, "gone@x.org", T0 - 20 * S, 1), 1); /* refilled by T0 */
    text = save(rl, T0, wall, &n);
    CHECK_INT(n, 2);
    CHECK(strncmp(text, "filtermail-ratelimit-state 1\nsaved 1767323045000000000\n", 55) == 0);
    CHECK(strstr(text, "10000000000 a@x.org\n") != NULL);
    CHECK(strstr(text, "4000000000 b c@x.org\n") != NULL);
    CHECK(strstr(text, "gone") == NULL);
    CHECK(strstr(text, "\nend 2\n") != NULL);

    /* Restored after a reboot (another monotonic clock), no time lost. */
    r2 = make(60, 10, 0);
    CHECK_INT(load(r2, text, 7 * S, wall, err), 2);
    CHECK_INT(pass_count(r2, "a@x.org", 7 * S, 1), 0);
    CHECK_INT(pass_count(r2, "b c@x.org", 7 * S, 7), 6);
    CHECK_INT(pass_count(r2, "new@x.org", 7 * S, 11), 10);
    ratelimit_free(&r2);
    /* Three seconds of wall time passed while it was down. */
    r2 = make(60, 10, 0);
    CHECK_INT(load(r2, text, 7 * S, wall + 3 * S, err), 2);
    CHECK_INT(pass_count(r2, "a@x.org", 7 * S, 4), 3);
    ratelimit_free(&r2);
    /* A wall clock set back gives no extra time. */
    r2 = make(60, 10, 0);
    CHECK_INT(load(r2, text, 7 * S, wall - 3600 * S, err), 2);
    CHECK_INT(pass_count(r2, "a@x.org", 7 * S, 1), 0);
    ratelimit_free(&r2);
    /* Long down: everything refilled, nothing loaded. */
    r2 = make(60, 10, 0);
    CHECK_INT(load(r2, text, 7 * S, wall + 60 * S, err), 0);
    ratelimit_free(&r2);
    /* A smaller budget now: the debt is cut to the new T + tau. */
    r2 = make(60, 2, 0);
    CHECK_INT(load(r2, text, 7 * S, wall, err), 2);
    CHECK_INT(pass_count(r2, "a@x.org", 7 * S + S, 1), 1);
    ratelimit_free(&r2);
    free(text);
    ratelimit_free(&rl);
}

/* A reload with new limits keeps every sender's state, cut to the new
 * limits; the old limiter is untouched. */
static void test_rebuild(void)
{
    struct ratelimit *rl = make(60, 10, 0), *n;
    uint64_t wall = 1767323045000000000ull;
    struct ratelimit_config c = {.per_minute = 60, .burst = 2, .exempt = NULL};

    CHECK_INT(pass_count(rl, "a@x.org", T0, 10), 10);
    CHECK_INT(pass_count(rl, "b@x.org", T0, 1), 1);
    n = ratelimit_rebuild(rl, &c, T0, wall);
    CHECK(n != NULL);
    if (n == NULL)
        return;
    /* a used its whole burst: still limited under the new limits, and free
     * again after one interval; b had used one of two. */
    CHECK_INT(pass_count(n, "a@x.org", T0, 1), 0);
    CHECK_INT(pass_count(n, "a@x.org", T0 + S + S / 10, 1), 1);
    CHECK_INT(pass_count(n, "b@x.org", T0, 3), 1);
    /* The exemption of the old limits is gone with them. */
    CHECK_INT(pass_count(n, "bot@example.org", T0, 3), 2);
    CHECK_INT(pass_count(rl, "bot@example.org", T0, 30), 30);
    CHECK_INT(pass_count(rl, "a@x.org", T0, 1), 0);
    ratelimit_free(&n);
    ratelimit_free(&rl);
}

static void test_snapshot_malformed(void)
{
    static const char *bad[] = {
        "",
        "filtermail-ratelimit-state 2\nsaved 1\nend 0\n",
        "filtermail-ratelimit-state 1\n",
        "filtermail-ratelimit-state 1\nsaved x\nend 0\n",
        "filtermail-ratelimit-state 1\nsaved 1\n5 a@b\n",        /* cut short */
        "filtermail-ratelimit-state 1\nsaved 1\n5 a@b\nend 2\n", /* count */
        "filtermail-ratelimit-state 1\nsaved 1\n5 a@b\nend 1",   /* no LF */
        "filtermail-ratelimit-state 1\nsaved 1\n5a@b\nend 1\n",
        "filtermail-ratelimit-state 1\nsaved 1\n5 \nend 1\n",
        "filtermail-ratelimit-state 1\nsaved 1\n-5 a@b\nend 1\n",
        "filtermail-ratelimit-state 1\nsaved 1\n99999999999999999999 a@b\nend 1\n",
        "filtermail-ratelimit-state 1\nsaved 1\nend 0\n5 a@b\n",
    };
    char err[128], line[RATELIMIT_KEY_MAX + 200];
    struct ratelimit_stats st;

    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct ratelimit *rl = make(60, 10, 0);
        err[0] = '\0';
        CHECKF(load(rl, bad[i], T0, 1, err) == -1, "case %zu", i);
        CHECKF(err[0] != '\0', "case %zu: no message", i);
        ratelimit_stats(rl, &st);
        CHECKF(st.senders == 0, "case %zu: %zu senders loaded", i, st.senders);
        ratelimit_free(&rl);
    }
    /* An overlong key line. */
    struct ratelimit *rl = make(60, 10, 0);
    int n = snprintf(line, sizeof(line), "filtermail-ratelimit-state 1\nsaved 1\n5 ");
    memset(line + n, 'k', RATELIMIT_KEY_MAX + 1);
    strcpy(line + n + RATELIMIT_KEY_MAX + 1, "\nend 1\n");
    CHECK_INT(load(rl, line, T0, 1, err), -1);
    ratelimit_free(&rl);
}

int main(void)
{
    UNIT_RUN(test_burst_refill_idle);
    UNIT_RUN(test_keys);
    UNIT_RUN(test_bounces_and_exemptions);
    UNIT_RUN(test_not_policy);
    UNIT_RUN(test_one_charge_per_message);
    UNIT_RUN(test_action_text);
    UNIT_RUN(test_table_matches_model);
    UNIT_RUN(test_cap);
    UNIT_RUN(test_snapshot);
    UNIT_RUN(test_snapshot_malformed);
    UNIT_RUN(test_rebuild);
    return unit_summary();
}
