/* Fuzz target: the policy request parser. The input is parsed whole and in
 * pieces (sizes from the first byte), with default and with tiny limits; the
 * whole and the piecewise parses must agree on every request and error. Each
 * request then goes through the rate-limit decision and its reply, so the
 * core sees whatever a peer can send. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "policy_proto.h"
#include "ratelimit.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* FNV-1a over everything a parse produced. */
static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001b3ull;
    return h;
}

static struct ratelimit *limiter(void)
{
    static char *items[] = {"exempt@example.org", "@partner.example", "domain.example"};
    static const struct config_list exempt = {items, 3};
    static struct ratelimit *rl;
    if (rl == NULL) {
        struct ratelimit_config c = {
            .per_minute = 60, .burst = 3, .exempt = &exempt, .max_senders = 64, .seed = {1, 2}};
        rl = ratelimit_new(&c);
    }
    return rl;
}

static uint64_t decide(struct ratelimit_session *s, const struct policy_parser *p, uint64_t now)
{
    struct ratelimit_request req = {policy_get(p, "request"), policy_get(p, "sender"),
                                    policy_get(p, "sasl_username"), policy_get(p, "instance")};
    struct ratelimit_decision d;
    char action[800], line[900];

    ratelimit_decide(limiter(), s, &req, now, &d);
    if (d.key_len > RATELIMIT_KEY_MAX || strlen(d.key) != d.key_len)
        __builtin_trap();
    if (ratelimit_action(&d, now, now, action, sizeof(action)) == 0) {
        int n = policy_reply(line, sizeof(line), action);
        if (n < 0 || memchr(line, '\n', (size_t)n - 2) != NULL)
            __builtin_trap();
    }
    return (uint64_t)d.verdict;
}

static uint64_t run(const uint8_t *data, size_t size, size_t piece, const struct policy_limits *lim,
                    bool with_core)
{
    struct policy_parser *p = policy_parser_new(lim);
    struct ratelimit_session s = {0};
    uint64_t h = 1469598103934665603ull, now = 1000000000ull;
    size_t off = 0;

    if (p == NULL)
        return 0;
    while (off < size) {
        size_t n = size - off < piece ? size - off : piece, done = 0;
        while (done < n) {
            size_t used;
            enum policy_status st =
                policy_push(p, (const char *)data + off + done, n - done, &used);
            if (used > n - done)
                __builtin_trap();
            done += used;
            if (st == POLICY_ERROR) {
                const char *e = policy_error(p);
                h = mix(h, "!", 1);
                h = mix(h, e, strlen(e));
                policy_parser_free(&p);
                return h;
            }
            if (st != POLICY_REQUEST)
                break;
            size_t count = policy_count(p);
            if (lim != NULL && count > lim->max_attrs)
                __builtin_trap();
            for (size_t i = 0; i < count; i++) {
                const char *name, *value;
                policy_attr(p, i, &name, &value);
                if (name[0] == '\0' || strchr(name, '=') != NULL || strchr(value, '\n') != NULL)
                    __builtin_trap();
                h = mix(h, name, strlen(name) + 1);
                h = mix(h, value, strlen(value) + 1);
            }
            h = mix(h, "|", 1);
            if (with_core)
                h = mix(h, &(uint64_t){decide(&s, p, now)}, 8);
            now += 100000000ull;
        }
        off += n;
    }
    h = mix(h, policy_idle(p) ? "." : "+", 1);
    policy_parser_free(&p);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct policy_limits tiny = {.max_line = 24, .max_attrs = 4, .max_request = 80};
    size_t piece;

    if (size < 1)
        return 0;
    piece = (size_t)data[0] % 64 + 1;
    data++;
    size--;
    /* The decisions depend on the table's state, so only the whole parse
     * feeds the core, once; the piecewise parses compare the parse alone. */
    (void)run(data, size, size ? size : 1, NULL, true);
    if (run(data, size, size ? size : 1, NULL, false) != run(data, size, piece, NULL, false))
        __builtin_trap();
    if (run(data, size, size ? size : 1, &tiny, false) != run(data, size, piece, &tiny, false))
        __builtin_trap();
    return 0;
}
