/* Tests for pipe-transport/deliver.c's pure parts: the EHLO name, and the
 * log line operators' mtail rules read (packaging/mtail/filtermail.mtail). */
#include "deliver.h"
#include "unit.h"

#include <string.h>

static void test_helo_name(void)
{
    static const struct {
        const char *domain, *want;
    } cases[] = {
        {"relay.example.org", "relay.example.org"},
        {"192.0.2.1", "[192.0.2.1]"},
        {"2001:db8::1", "[IPv6:2001:db8::1]"},
    };
    char out[300];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        deliver_helo_name(cases[i].domain, out, sizeof(out));
        CHECK_STR(out, cases[i].want);
    }
}

static void test_summary(void)
{
    const char *one[] = {"bob@example.org"}, *two[] = {"bob@example.org", "eve@example.org"};
    struct envelope e1 = {.rcpts = one, .nrcpts = 1}, e2 = {.rcpts = two, .nrcpts = 2};
    struct deliver_report https = {.relay = "mx.example.org[192.0.2.1]:443", .channel = "https"};
    struct deliver_report smtp = {.relay = "mx.example.org[192.0.2.1]:25", .channel = "smtp",
                                  .tls = "TLSv1.3 TLS_AES_256_GCM_SHA384, verified, resumed"};
    struct deliver_report none = {.relay = "none"};
    struct outcome sent, bounced, deferred;
    char line[2048];

    outcome_set(&sent, OUTCOME_DELIVERED, "2.0.0", "delivered via HTTPS to mx (200)");
    outcome_set(&bounced, OUTCOME_BOUNCE, "5.1.1", "host mx said: 550 5.1.1 unknown");
    outcome_set(&deferred, OUTCOME_TEMPFAIL, "4.4.3", "DNS resolution failed for example.org");

    deliver_summary(&e1, &https, 0.0123, 2048, &sent, line, sizeof(line));
    CHECK_STR(line, "to=<bob@example.org>, relay=mx.example.org[192.0.2.1]:443/https, "
                    "delay=0.012, size=2048, status=sent (delivered via HTTPS to mx (200))");
    deliver_summary(&e2, &smtp, 1.5, 10, &bounced, line, sizeof(line));
    CHECK_STR(line, "to=<bob@example.org> and others, relay=mx.example.org[192.0.2.1]:25/smtp, "
                    "tls=TLSv1.3 TLS_AES_256_GCM_SHA384, verified, resumed, delay=1.500, "
                    "size=10, status=bounced (5.1.1 host mx said: 550 5.1.1 unknown)");
    deliver_summary(&e1, &none, 0, 0, &deferred, line, sizeof(line));
    CHECK_STR(line, "to=<bob@example.org>, relay=none, delay=0.000, size=0, status=deferred "
                    "(4.4.3 DNS resolution failed for example.org)");
    deliver_summary(&e1, &none, 0, 0, &deferred, line, 10);
    CHECK_STR(line, "to=<bob@e");
}

int main(void)
{
    UNIT_RUN(test_helo_name);
    UNIT_RUN(test_summary);
    return unit_summary();
}
