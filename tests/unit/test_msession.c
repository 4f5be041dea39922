/* Tests for milter/msession.c, with the milter's own callbacks (filter.c):
 * milter conversations recorded from the real Postfix of the integration
 * tests (tests/data/milter/, see its README.md) are replayed through the
 * session core, fed as Postfix sent them and one byte at a time, and the
 * replies must be the bytes the milter sent then. */
#include "filter.h"
#include "mproto.h"
#include "msession.h"
#include "unit.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

static char dir[] = "/tmp/filtermail-msession-XXXXXX";
static struct filter filter;
static char ini[600];
static const struct msession_config session_cfg = {FILTER_SESSION(&filter)};

struct record {
    char dir; /* '>' from Postfix, '<' from the milter */
    const unsigned char *data;
    size_t len;
};

/* Splits a .rec file into its records; the caller frees *recs_r and the
 * returned file contents. */
static char *load(const char *name, struct record **recs_r, size_t *n_r)
{
    char path[256];
    size_t len, n = 0, cap = 64;
    snprintf(path, sizeof(path), "tests/data/milter/%s.rec", name);
    char *raw = unit_read_file(path, &len);
    struct record *r = malloc(cap * sizeof(*r));
    for (size_t o = 0; o + 5 <= len;) {
        size_t l = (size_t)(unsigned char)raw[o + 1] << 24 | (size_t)(unsigned char)raw[o + 2] << 16 |
                   (size_t)(unsigned char)raw[o + 3] << 8 | (unsigned char)raw[o + 4];
        CHECK(l <= len - o - 5 && (raw[o] == '>' || raw[o] == '<'));
        if (l > len - o - 5)
            break;
        if (n == cap)
            r = realloc(r, (cap *= 2) * sizeof(*r));
        r[n++] = (struct record){raw[o], (const unsigned char *)raw + o + 5, l};
        o += 5 + l;
    }
    *recs_r = r;
    *n_r = n;
    return raw;
}

/* Replays a conversation (chunk 0: as recorded, else that many bytes at a
 * time). Before each reply Postfix got, everything it had sent is pushed and
 * what the session answered so far must begin with what the milter had sent
 * so far; at the end the two are equal. */
static void replay(const char *name, size_t chunk)
{
    struct record *recs;
    size_t n;
    char *raw = load(name, &recs, &n);
    struct buf want, got;
    buf_init(&want, 4 * 1024 * 1024);
    buf_init(&got, 4 * 1024 * 1024);
    struct msess *s = msess_new(&session_cfg);
    int rc = MSESS_GO_ON;
    CHECK(s != NULL && n > 0);
    for (size_t i = 0; s != NULL && i < n; i++) {
        if (recs[i].dir == '<') {
            buf_append(&want, recs[i].data, recs[i].len);
            CHECKF(got.len >= want.len && memcmp(got.data, want.data, want.len) == 0,
                   "%s (chunk %zu): reply %zu differs (%zu bytes answered, %zu recorded)", name,
                   chunk, i, got.len, want.len);
            continue;
        }
        CHECKF(rc == MSESS_GO_ON, "%s: Postfix sent more after the session ended", name);
        for (size_t o = 0; o < recs[i].len && rc == MSESS_GO_ON;) {
            size_t k = chunk == 0 || recs[i].len - o < chunk ? recs[i].len - o : chunk;
            rc = msess_push(s, recs[i].data + o, k);
            o += k;
            struct buf *out = msess_output(s);
            buf_append(&got, out->data, out->len);
            buf_reset(out);
        }
    }
    CHECKF(got.len == want.len && memcmp(got.data, want.data, got.len) == 0,
           "%s (chunk %zu): %zu bytes answered, %zu recorded", name, chunk, got.len, want.len);
    CHECK(rc == MSESS_END); /* the conversations end with QUIT */
    msess_free(&s);
    buf_free(&want);
    buf_free(&got);
    free(recs);
    free(raw);
}

/* Counts the packets of each command one direction of a recording holds,
 * and the reply codes starting with '4' and '5'. */
static void count_commands(const char *name, char d, unsigned counts[256], unsigned *r4,
                           unsigned *r5)
{
    struct record *recs;
    size_t n;
    char *raw = load(name, &recs, &n);
    struct buf all;
    buf_init(&all, 4 * 1024 * 1024);
    for (size_t i = 0; i < n; i++)
        if (recs[i].dir == d)
            buf_append(&all, recs[i].data, recs[i].len);
    struct mpacket p;
    long k;
    for (size_t o = 0; (k = mproto_next((unsigned char *)all.data + o, all.len - o,
                                        MPROTO_MAX_PACKET, &p)) > 0;
         o += (size_t)k) {
        counts[(unsigned char)p.cmd]++;
        if (p.cmd == SMFIR_REPLYCODE && p.len > 0) {
            *r4 += p.data[0] == '4';
            *r5 += p.data[0] == '5';
        }
    }
    buf_free(&all);
    free(recs);
    free(raw);
}

static const char *const recordings[] = {"outgoing-several", "incoming-abort", "tempfail",
                                         "large-bodies"};
#define NREC (sizeof(recordings) / sizeof(recordings[0]))

/* The recordings hold what they are meant to: several messages on a
 * connection, ABORT, macros, large bodies, and every reply kind the milter
 * gives (continue, reject/tempfail with a reply code, discard, removed
 * recipient, changed sender). */
static void test_recordings_cover(void)
{
    unsigned in[256] = {0}, out[256] = {0}, eoms[NREC] = {0}, r4 = 0, r5 = 0, x = 0;
    for (size_t i = 0; i < NREC; i++) {
        unsigned c[256] = {0};
        count_commands(recordings[i], '>', c, &x, &x);
        eoms[i] = c[SMFIC_BODYEOB];
        for (int k = 0; k < 256; k++)
            in[k] += c[k];
        count_commands(recordings[i], '<', out, &r4, &r5);
    }
    CHECK(eoms[0] >= 4);
    CHECK(in[SMFIC_OPTNEG] >= 3 && in[SMFIC_MACRO] >= 6 && in[SMFIC_ABORT] >= 1);
    CHECK(in[SMFIC_BODY] >= 10 && in[SMFIC_QUIT] >= 3);
    CHECK(out[SMFIC_OPTNEG] >= 3 && out[SMFIR_CONTINUE] >= 3 && out[SMFIR_REPLYCODE] >= 3);
    CHECK(out[SMFIR_DISCARD] >= 1 && out[SMFIR_DELRCPT] >= 1 && out[SMFIR_CHGFROM] >= 1);
    CHECK(r4 >= 1 && r5 >= 3); /* 451 4.3.0; 523, 500, 552 */
}

static void test_replay(void)
{
    for (size_t i = 0; i < NREC; i++)
        replay(recordings[i], 0);
}

static void test_replay_byte_by_byte(void)
{
    replay("outgoing-several", 1);
    replay("incoming-abort", 1);
    replay("tempfail", 1);
    replay("large-bodies", 4093);
}

/* A truncated or garbled stream ends the session (MSESS_ERROR), never a
 * crash; a packet over MPROTO_MAX_PACKET is refused before it is buffered. */
static void test_malformed(void)
{
    struct msess *s = msess_new(&session_cfg);
    static const unsigned char zero_len[] = {0, 0, 0, 0, 'O'};
    CHECK_INT(msess_push(s, zero_len, sizeof(zero_len)), MSESS_ERROR);
    msess_free(&s);
    s = msess_new(&session_cfg);
    static const unsigned char huge[] = {0x7f, 0, 0, 0, 'B'};
    CHECK_INT(msess_push(s, huge, sizeof(huge)), MSESS_ERROR);
    msess_free(&s);
    s = msess_new(&session_cfg);
    static const unsigned char unknown[] = {0, 0, 0, 1, '#'};
    CHECK_INT(msess_push(s, unknown, sizeof(unknown)), MSESS_ERROR);
    CHECK(s == NULL || msess_between_packets(s));
    msess_free(&s);
}

static void setup(void)
{
    static const struct {
        const char *addr;
        bool enforce, disabled;
    } users[] = {
        {"one@example.org", true, false},
        {"two@example.org", true, false},
        {"open@example.org", false, false},
        {"disabled@example.org", true, true},
        {"broken@example.org", false, false},
    };
    char p[512], err[512];
    if (mkdtemp(dir) == NULL)
        abort();
    for (size_t i = 0; i < sizeof(users) / sizeof(users[0]); i++) {
        snprintf(p, sizeof(p), "%s/%s", dir, users[i].addr);
        mkdir(p, 0755);
        if (users[i].enforce) {
            snprintf(p, sizeof(p), "%s/%s/enforceE2EEincoming", dir, users[i].addr);
            fclose(fopen(p, "w"));
        }
        if (users[i].disabled) {
            snprintf(p, sizeof(p), "%s/%s/DISABLED", dir, users[i].addr);
            fclose(fopen(p, "w"));
        }
    }
    /* A flag that is a symlink: the lookup fails (ELOOP), a 451. */
    snprintf(p, sizeof(p), "%s/broken@example.org/enforceE2EEincoming", dir);
    if (symlink("/etc/hostname", p) < 0)
        abort();
    /* As tests/integration/record_milter.py's relay. */
    snprintf(p, sizeof(p), "%s/chatmail.ini", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "[params]\nmail_domain = example.org\nmailboxes_dir = %s\n"
               "max_message_size = 200000\nfiltermail_outgoing_daemon_names = ORIGINATING\n"
               "filtermail_dkim_sign = no\n",
            dir);
    fclose(f);
    struct config *c;
    if (config_load(p, &c, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    snprintf(ini, sizeof(ini), "%s", p);
    filter.config = config_live_new(c);
}

/* A reload replaces the configuration whole; the replaced one lives only as
 * long as a message still uses it (the milter used to keep every replaced
 * configuration until it exited). */
static void test_reload_frees_replaced(void)
{
    char err[256];
    for (int round = 0; round < 3; round++) {
        const struct config *old = config_live_get(filter.config);
        struct config *n;
        CHECK(config_load(ini, &n, err, sizeof(err)) == 0);
        /* A message in progress across the reload keeps the old one. */
        struct msess *s = msess_new(&session_cfg);
        struct record *recs;
        size_t nrec;
        char *raw = load("incoming-abort", &recs, &nrec);
        /* Up to the first MAIL: negotiation and macros, then MAIL. */
        for (size_t i = 0; i < nrec && i < 3; i++)
            if (recs[i].dir == '>')
                msess_push(s, recs[i].data, recs[i].len);
        config_live_set(filter.config, n);
        unsigned held = atomic_load(&old->refs);
        CHECKF(held == 2, "round %d: %u references during the message, want ours and its",
               round, held);
        msess_free(&s); /* the connection ends: the message lets go */
        CHECKF(atomic_load(&old->refs) == 1, "round %d: %u references left, %u before", round,
               atomic_load(&old->refs), held);
        config_release(&old); /* the last one: freed (LeakSanitizer checks) */
        free(recs);
        free(raw);
    }
}

int main(void)
{
    unsetenv("RUST_LOG");
    log_init("test_msession", "error");
    setup();
    UNIT_RUN(test_recordings_cover);
    UNIT_RUN(test_replay);
    UNIT_RUN(test_replay_byte_by_byte);
    UNIT_RUN(test_malformed);
    UNIT_RUN(test_reload_frees_replaced);
    config_live_free(&filter.config);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cannot remove %s\n", dir);
    return unit_summary();
}
