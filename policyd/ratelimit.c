/* ratelimit: per-sender GCRA state and the policy decision (see ratelimit.h). */
#include "ratelimit.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "address.h"

/* Slots looked at by each check, so refilled entries go away under load. */
#define SWEEP_PER_CHECK 2
/* When full: slots swept to find refilled entries, then entries compared to
 * find the one closest to refilled. */
#define FULL_SWEEP 256
#define FULL_SAMPLE 32

#define FLAG_LIMITED 1u /* the last message decided (inst) was refused */

struct rl_entry {
    char *key;     /* NULL: free slot */
    uint64_t tat;  /* GCRA theoretical arrival time */
    uint64_t inst; /* dedupe hash of the last message decided; 0 none */
    uint32_t hash; /* low bits of the key's hash: its home slot */
    uint32_t flags;
};

struct exempt {
    char *text;  /* lowercased */
    bool domain; /* "example.org" or "@example.org" (text without the '@') */
};

struct ratelimit {
    struct gcra gcra;
    uint64_t seed[2];
    struct exempt *exempt;
    size_t nexempt;
    struct rl_entry *slots;
    size_t mask; /* capacity - 1 (a power of two) */
    size_t count;
    size_t max_count;
    size_t max_slots;
    size_t cursor; /* sweep position */
    uint64_t evicted_full;
};

/* ---- SipHash-1-3 (Aumasson and Bernstein), keyed by the per-process seed. */

static uint64_t rl_rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1;                                                                                  \
        v1 = rl_rotl(v1, 13);                                                                      \
        v1 ^= v0;                                                                                  \
        v0 = rl_rotl(v0, 32);                                                                      \
        v2 += v3;                                                                                  \
        v3 = rl_rotl(v3, 16);                                                                      \
        v3 ^= v2;                                                                                  \
        v0 += v3;                                                                                  \
        v3 = rl_rotl(v3, 21);                                                                      \
        v3 ^= v0;                                                                                  \
        v2 += v1;                                                                                  \
        v1 = rl_rotl(v1, 17);                                                                      \
        v1 ^= v2;                                                                                  \
        v2 = rl_rotl(v2, 32);                                                                      \
    } while (0)

static uint64_t rl_siphash(uint64_t k0, uint64_t k1, const void *data, size_t len)
{
    const unsigned char *p = data;
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    uint64_t b = (uint64_t)len << 56, m;
    size_t i = 0;

    for (; i + 8 <= len; i += 8) {
        m = 0;
        for (int k = 7; k >= 0; k--)
            m = (m << 8) | p[i + (size_t)k];
        v3 ^= m;
        SIPROUND;
        v0 ^= m;
    }
    for (int k = 0; i < len; i++, k++)
        b |= (uint64_t)p[i] << (8 * k);
    v3 ^= b;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

/* ---- The table. */

static size_t rl_home(const struct ratelimit *rl, uint32_t hash)
{
    return (size_t)hash & rl->mask;
}

/* The slot holding key, or the free slot where it would go. */
static size_t rl_find(const struct ratelimit *rl, const char *key, uint32_t hash, bool *found_r)
{
    size_t i = rl_home(rl, hash);
    for (;;) {
        const struct rl_entry *e = &rl->slots[i];
        if (e->key == NULL) {
            *found_r = false;
            return i;
        }
        if (e->hash == hash && strcmp(e->key, key) == 0) {
            *found_r = true;
            return i;
        }
        i = (i + 1) & rl->mask;
    }
}

/* Empties slot i and shifts later entries of its probe run back, so lookups
 * never need tombstones. */
static void rl_delete(struct ratelimit *rl, size_t i)
{
    size_t j = i;

    free(rl->slots[i].key);
    for (;;) {
        j = (j + 1) & rl->mask;
        struct rl_entry *e = &rl->slots[j];
        if (e->key == NULL)
            break;
        size_t k = rl_home(rl, e->hash);
        /* The entry at j may move to i unless its home lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            rl->slots[i] = *e;
            i = j;
        }
    }
    memset(&rl->slots[i], 0, sizeof(rl->slots[i]));
    rl->count--;
}

static int rl_grow(struct ratelimit *rl)
{
    size_t old = rl->mask + 1, cap = old * 2;
    struct rl_entry *slots = calloc(cap, sizeof(*slots)), *prev = rl->slots;

    if (slots == NULL)
        return -1;
    rl->slots = slots;
    rl->mask = cap - 1;
    for (size_t i = 0; i < old; i++) {
        if (prev[i].key == NULL)
            continue;
        size_t j = rl_home(rl, prev[i].hash);
        while (slots[j].key != NULL)
            j = (j + 1) & rl->mask;
        slots[j] = prev[i];
    }
    free(prev);
    rl->cursor = 0;
    return 0;
}

size_t ratelimit_sweep(struct ratelimit *rl, uint64_t now, size_t budget)
{
    size_t dropped = 0;

    if (budget > rl->mask + 1)
        budget = rl->mask + 1;
    while (budget > 0) {
        size_t i = rl->cursor;
        struct rl_entry *e = &rl->slots[i];
        if (e->key != NULL && gcra_is_full(e->tat, now)) {
            /* Look at slot i again: a later entry may have moved into it.
             * Entries only ever move back into the slot just emptied, so
             * none slips behind the cursor. */
            rl_delete(rl, i);
            dropped++;
            continue;
        }
        rl->cursor = (i + 1) & rl->mask;
        budget--;
    }
    return dropped;
}

/* Makes room for one more entry when max_count are tracked. */
static void rl_make_room(struct ratelimit *rl, uint64_t now)
{
    size_t best = SIZE_MAX, seen = 0, i = rl->cursor;

    if (ratelimit_sweep(rl, now, FULL_SWEEP) > 0)
        return;
    for (size_t n = 0; n <= rl->mask && seen < FULL_SAMPLE; n++, i = (i + 1) & rl->mask) {
        if (rl->slots[i].key == NULL)
            continue;
        seen++;
        if (best == SIZE_MAX || rl->slots[i].tat < rl->slots[best].tat)
            best = i;
    }
    if (best != SIZE_MAX) {
        rl->cursor = (best + 1) & rl->mask;
        rl_delete(rl, best);
        rl->evicted_full++;
    }
}

/* Adds key (not present) with the given state. Returns the entry or NULL. */
static struct rl_entry *rl_insert(struct ratelimit *rl, const char *key, size_t key_len,
                                  uint32_t hash, uint64_t now)
{
    bool found;
    size_t i;
    char *copy;

    if (rl->count >= rl->max_count)
        rl_make_room(rl, now);
    if ((rl->count + 1) * 4 > (rl->mask + 1) * 3 && rl->mask + 1 < rl->max_slots)
        (void)rl_grow(rl);     /* on failure the table only gets fuller */
    if (rl->count >= rl->mask) /* keep one slot free, or lookups never end */
        return NULL;
    copy = malloc(key_len + 1);
    if (copy == NULL)
        return NULL;
    memcpy(copy, key, key_len + 1);
    i = rl_find(rl, key, hash, &found);
    rl->slots[i].key = copy;
    rl->slots[i].hash = hash;
    rl->slots[i].tat = now;
    rl->slots[i].inst = 0;
    rl->slots[i].flags = 0;
    rl->count++;
    return &rl->slots[i];
}

/* ---- Set-up. */

static size_t rl_pow2_at_least(size_t n)
{
    size_t p = 1024;
    while (p < n && p < ((size_t)1 << 40))
        p *= 2;
    return p;
}

struct ratelimit *ratelimit_new(const struct ratelimit_config *c)
{
    struct ratelimit *rl = calloc(1, sizeof(*rl));

    if (rl == NULL)
        return NULL;
    if (gcra_init(&rl->gcra, c->per_minute, c->burst) < 0)
        goto fail;
    rl->seed[0] = c->seed[0];
    rl->seed[1] = c->seed[1];
    rl->max_count = c->max_senders ? c->max_senders : RATELIMIT_DEFAULT_MAX_SENDERS;
    /* Room for max_count at a load of at most 3/4, plus the free slot. */
    rl->max_slots = rl_pow2_at_least(rl->max_count / 3 * 4 + 4);
    rl->slots = calloc(1024, sizeof(*rl->slots));
    if (rl->slots == NULL)
        goto fail;
    rl->mask = 1023;
    if (c->exempt != NULL && c->exempt->n > 0) {
        rl->exempt = calloc(c->exempt->n, sizeof(*rl->exempt));
        if (rl->exempt == NULL)
            goto fail;
        for (size_t i = 0; i < c->exempt->n; i++) {
            const char *item = c->exempt->items[i];
            struct exempt *x = &rl->exempt[rl->nexempt];
            x->domain = item[0] == '@' || strchr(item, '@') == NULL;
            x->text = strdup(item[0] == '@' ? item + 1 : item);
            if (x->text == NULL)
                goto fail;
            address_lowercase(x->text);
            rl->nexempt++;
        }
    }
    return rl;
fail:
    ratelimit_free(&rl);
    return NULL;
}

void ratelimit_free(struct ratelimit **rlp)
{
    struct ratelimit *rl;

    if (rlp == NULL || *rlp == NULL)
        return;
    rl = *rlp;
    if (rl->slots != NULL)
        for (size_t i = 0; i <= rl->mask; i++)
            free(rl->slots[i].key);
    free(rl->slots);
    for (size_t i = 0; i < rl->nexempt; i++)
        free(rl->exempt[i].text);
    free(rl->exempt);
    free(rl);
    *rlp = NULL;
}

const struct gcra *ratelimit_gcra(const struct ratelimit *rl)
{
    return &rl->gcra;
}

/* ---- Decisions. */

static bool rl_exempt(const struct ratelimit *rl, const char *key)
{
    const char *at = strrchr(key, '@');

    for (size_t i = 0; i < rl->nexempt; i++) {
        const struct exempt *x = &rl->exempt[i];
        if (x->domain ? (at != NULL && strcmp(at + 1, x->text) == 0) : strcmp(key, x->text) == 0)
            return true;
    }
    return false;
}

void ratelimit_classify(const struct ratelimit *rl, const struct ratelimit_session *s,
                        const struct ratelimit_request *req, struct ratelimit_decision *d)
{
    const char *who;
    size_t n;
    uint64_t kh;

    d->reason = RATELIMIT_R_NONE;
    d->key[0] = '\0';
    d->key_len = 0;
    d->dedupe = 0;
    d->allowed_at = 0;
    d->instance = req->instance != NULL ? req->instance : "";
    if (req->request == NULL || strcmp(req->request, "smtpd_access_policy") != 0) {
        d->verdict = RATELIMIT_INVALID;
        d->reason = RATELIMIT_R_NOT_POLICY;
        return;
    }
    if (req->sender == NULL || req->sender[0] == '\0') {
        d->verdict = RATELIMIT_PASS;
        d->reason = RATELIMIT_R_BOUNCE;
        return;
    }
    who = req->sasl_username != NULL && req->sasl_username[0] != '\0' ? req->sasl_username
                                                                      : req->sender;
    n = strlen(who);
    if (n > RATELIMIT_KEY_MAX)
        n = RATELIMIT_KEY_MAX;
    memcpy(d->key, who, n);
    d->key[n] = '\0';
    d->key_len = n;
    address_lowercase(d->key);
    if (rl_exempt(rl, d->key)) {
        d->verdict = RATELIMIT_PASS;
        d->reason = RATELIMIT_R_EXEMPT;
        return;
    }
    if (d->instance[0] != '\0') {
        kh = rl_siphash(rl->seed[0], rl->seed[1], d->key, d->key_len);
        d->dedupe =
            rl_siphash(rl->seed[0] ^ kh, rl->seed[1] + kh, d->instance, strlen(d->instance));
        if (d->dedupe == 0)
            d->dedupe = 1;
    }
    if (s != NULL && d->dedupe != 0 && s->dedupe == d->dedupe) {
        d->verdict = s->verdict;
        d->reason = RATELIMIT_R_CACHED;
        d->allowed_at = s->allowed_at;
        return;
    }
    d->verdict = RATELIMIT_CHECK;
}

void ratelimit_check(struct ratelimit *rl, struct ratelimit_decision *d, uint64_t now)
{
    uint32_t hash;
    bool found;
    size_t i;
    struct rl_entry *e;
    uint64_t allowed_at;

    if (d->verdict != RATELIMIT_CHECK)
        return;
    ratelimit_sweep(rl, now, SWEEP_PER_CHECK);
    hash = (uint32_t)rl_siphash(rl->seed[0], rl->seed[1], d->key, d->key_len);
    i = rl_find(rl, d->key, hash, &found);
    if (found) {
        e = &rl->slots[i];
        if (d->dedupe != 0 && e->inst == d->dedupe) {
            d->reason = RATELIMIT_R_CACHED;
            if (e->flags & FLAG_LIMITED) {
                d->verdict = RATELIMIT_LIMITED;
                d->allowed_at = e->tat > rl->gcra.tolerance ? e->tat - rl->gcra.tolerance : 0;
            } else {
                d->verdict = RATELIMIT_PASS;
            }
            return;
        }
    } else {
        e = rl_insert(rl, d->key, d->key_len, hash, now);
        if (e == NULL) {
            /* Out of memory: a new sender has a full burst, so its first
             * message passes whatever the table holds. */
            d->verdict = RATELIMIT_PASS;
            d->reason = RATELIMIT_R_ALLOWED;
            return;
        }
    }
    e->inst = d->dedupe;
    if (gcra_step(&rl->gcra, &e->tat, now, &allowed_at)) {
        e->flags &= ~FLAG_LIMITED;
        d->verdict = RATELIMIT_PASS;
        d->reason = RATELIMIT_R_ALLOWED;
    } else {
        e->flags |= FLAG_LIMITED;
        d->verdict = RATELIMIT_LIMITED;
        d->reason = RATELIMIT_R_LIMITED;
        d->allowed_at = allowed_at;
    }
}

void ratelimit_session_note(struct ratelimit_session *s, const struct ratelimit_decision *d)
{
    if (d->dedupe == 0 || (d->verdict != RATELIMIT_PASS && d->verdict != RATELIMIT_LIMITED))
        return;
    s->dedupe = d->dedupe;
    s->verdict = d->verdict;
    s->allowed_at = d->allowed_at;
}

void ratelimit_decide(struct ratelimit *rl, struct ratelimit_session *s,
                      const struct ratelimit_request *req, uint64_t now,
                      struct ratelimit_decision *d)
{
    ratelimit_classify(rl, s, req, d);
    ratelimit_check(rl, d, now);
    if (s != NULL)
        ratelimit_session_note(s, d);
}

int ratelimit_format_until(const struct ratelimit_decision *d, uint64_t now_mono, uint64_t now_wall,
                           char *out, size_t outlen)
{
    uint64_t until = now_wall;
    char when[40];
    struct tm tm;
    time_t secs;
    int n;

    if (d->allowed_at > now_mono)
        until += d->allowed_at - now_mono;
    secs = (time_t)(until / 1000000000u);
    if (gmtime_r(&secs, &tm) == NULL || strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm) == 0)
        return -1;
    n = snprintf(out, outlen, "%s.%03uZ", when, (unsigned)(until / 1000000u % 1000u));
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

int ratelimit_action(const struct ratelimit_decision *d, uint64_t now_mono, uint64_t now_wall,
                     char *out, size_t outlen)
{
    char key[RATELIMIT_KEY_MAX + 1], when[48];
    int n;

    if (d->verdict == RATELIMIT_PASS) {
        n = snprintf(out, outlen, "DUNNO");
        return n < 0 || (size_t)n >= outlen ? -1 : 0;
    }
    if (d->verdict != RATELIMIT_LIMITED)
        return -1;
    for (size_t i = 0; i <= d->key_len; i++) {
        unsigned char c = (unsigned char)d->key[i];
        key[i] = (c == '\0' || (c >= 0x20 && c < 0x7f)) ? (char)c : '?';
    }
    if (ratelimit_format_until(d, now_mono, now_wall, when, sizeof(when)) < 0)
        return -1;
    /* Upstream's text, "4.7.1:" included, after an explicit code. Postfix
     * sends the client "450 4.7.1 <sender>: Sender address rejected: " and
     * then this text, so the relay's tests that look for "4.7.1: Too much
     * mail from" keep passing. */
    n = snprintf(out, outlen, "450 4.7.1: Too much mail from <%s>, rate-limited until %s", key,
                 when);
    return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

const char *ratelimit_reason_name(enum ratelimit_reason r)
{
    switch (r) {
    case RATELIMIT_R_BOUNCE:
        return "bounce";
    case RATELIMIT_R_EXEMPT:
        return "exempt";
    case RATELIMIT_R_CACHED:
        return "same message";
    case RATELIMIT_R_ALLOWED:
        return "allowed";
    case RATELIMIT_R_LIMITED:
        return "limited";
    case RATELIMIT_R_NOT_POLICY:
        return "not a policy request";
    case RATELIMIT_R_NONE:
    default:
        return "none";
    }
}

void ratelimit_stats(const struct ratelimit *rl, struct ratelimit_stats *st)
{
    st->senders = rl->count;
    st->slots = rl->mask + 1;
    st->evicted_full = rl->evicted_full;
}

/* ---- Snapshot. */

#define SNAPSHOT_MAGIC "filtermail-ratelimit-state 1"

long ratelimit_save(const struct ratelimit *rl, FILE *f, uint64_t now_mono, uint64_t now_wall)
{
    long n = 0;

    if (fprintf(f, SNAPSHOT_MAGIC "\nsaved %" PRIu64 "\n", now_wall) < 0)
        return -1;
    for (size_t i = 0; i <= rl->mask; i++) {
        const struct rl_entry *e = &rl->slots[i];
        if (e->key == NULL || gcra_is_full(e->tat, now_mono) || strchr(e->key, '\n') != NULL)
            continue;
        if (fprintf(f, "%" PRIu64 " %s\n", e->tat - now_mono, e->key) < 0)
            return -1;
        n++;
    }
    if (fprintf(f, "end %ld\n", n) < 0)
        return -1;
    return n;
}

static void rl_clear(struct ratelimit *rl)
{
    for (size_t i = 0; i <= rl->mask; i++) {
        free(rl->slots[i].key);
        rl->slots[i].key = NULL;
    }
    memset(rl->slots, 0, (rl->mask + 1) * sizeof(*rl->slots));
    rl->count = 0;
    rl->cursor = 0;
}

/* Parses a decimal u64 at *p (no sign, no leading spaces) and advances. */
static int rl_u64(const char **p, uint64_t *v_r)
{
    const char *s = *p;
    uint64_t v = 0;

    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++)
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return -1;
    *p = s;
    *v_r = v;
    return 0;
}

static long rl_load_fail(struct ratelimit *rl, char *err, size_t errlen, long line, const char *why)
{
    snprintf(err, errlen, "line %ld: %s", line, why);
    rl_clear(rl);
    return -1;
}

long ratelimit_load(struct ratelimit *rl, FILE *f, uint64_t now_mono, uint64_t now_wall, char *err,
                    size_t errlen)
{
    char line[RATELIMIT_KEY_MAX + 64];
    uint64_t saved = 0, elapsed, debt, max_debt = gcra_max_debt(&rl->gcra), end_count;
    long lineno = 0, loaded = 0, listed = 0;
    bool ended = false;

    while (fgets(line, sizeof(line), f) != NULL) {
        size_t n = strlen(line);
        const char *p = line;

        lineno++;
        if (n == 0 || line[n - 1] != '\n')
            return rl_load_fail(rl, err, errlen, lineno, "line too long or unterminated");
        line[--n] = '\0';
        if (ended)
            return rl_load_fail(rl, err, errlen, lineno, "text after the end line");
        if (lineno == 1) {
            if (strcmp(line, SNAPSHOT_MAGIC) != 0)
                return rl_load_fail(rl, err, errlen, lineno, "not a filtermail rate-limit state");
            continue;
        }
        if (lineno == 2) {
            p = line + 6;
            if (strncmp(line, "saved ", 6) != 0 || rl_u64(&p, &saved) < 0 || *p != '\0')
                return rl_load_fail(rl, err, errlen, lineno, "bad saved line");
            continue;
        }
        if (strncmp(line, "end ", 4) == 0) {
            p = line + 4;
            if (rl_u64(&p, &end_count) < 0 || *p != '\0' || end_count != (uint64_t)listed)
                return rl_load_fail(rl, err, errlen, lineno, "bad end line (file cut short?)");
            ended = true;
            continue;
        }
        if (rl_u64(&p, &debt) < 0 || *p != ' ' || p[1] == '\0' || strlen(p + 1) > RATELIMIT_KEY_MAX)
            return rl_load_fail(rl, err, errlen, lineno, "bad sender line");
        listed++;
        p++;
        elapsed = now_wall > saved ? now_wall - saved : 0;
        if (debt > max_debt)
            debt = max_debt;
        if (debt <= elapsed)
            continue;
        debt -= elapsed;

        uint32_t hash = (uint32_t)rl_siphash(rl->seed[0], rl->seed[1], p, strlen(p));
        bool found;
        size_t i = rl_find(rl, p, hash, &found);
        struct rl_entry *e = found ? &rl->slots[i] : rl_insert(rl, p, strlen(p), hash, now_mono);
        if (e == NULL)
            return rl_load_fail(rl, err, errlen, lineno, "out of memory");
        e->tat = now_mono + debt;
        if (!found)
            loaded++;
    }
    if (ferror(f))
        return rl_load_fail(rl, err, errlen, lineno, strerror(errno));
    if (lineno < 2)
        return rl_load_fail(rl, err, errlen, lineno, "empty or cut short");
    if (!ended)
        return rl_load_fail(rl, err, errlen, lineno, "no end line (file cut short?)");
    return loaded;
}

struct ratelimit *ratelimit_rebuild(const struct ratelimit *old, const struct ratelimit_config *c,
                                    uint64_t now_mono, uint64_t now_wall)
{
    char *buf = NULL, err[128];
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    struct ratelimit *n = NULL;

    if (f == NULL)
        return NULL;
    if (ratelimit_save(old, f, now_mono, now_wall) < 0) {
        fclose(f);
        free(buf);
        return NULL;
    }
    if (fclose(f) != 0) {
        free(buf);
        return NULL;
    }
    n = ratelimit_new(c);
    f = n != NULL ? fmemopen(buf, len, "r") : NULL;
    if (f == NULL || ratelimit_load(n, f, now_mono, now_wall, err, sizeof(err)) < 0)
        ratelimit_free(&n);
    if (f != NULL)
        fclose(f);
    free(buf);
    return n;
}
