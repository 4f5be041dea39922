/* The milter protocol codec: framing, negotiation, strings, macros. */
#include <string.h>

#include <libmilter/mfapi.h>

#include "buf.h"
#include "mproto.h"
#include "unit.h"

static void test_framing(void)
{
    struct buf b;
    struct mpacket p;
    buf_init(&b, 1 << 20);
    CHECK_INT(mproto_put(&b, 'B', "hello", 5), 0);
    CHECK_INT(mproto_put(&b, 'E', NULL, 0), 0);
    CHECK_INT(b.len, 10 + 5);
    CHECK(memcmp(b.data, "\0\0\0\6Bhello\0\0\0\1E", 15) == 0);
    /* Every prefix of an incomplete packet asks for more. */
    for (size_t i = 0; i < 10; i++)
        CHECK_INT(mproto_next((unsigned char *)b.data, i, 100, &p), 0);
    CHECK_INT(mproto_next((unsigned char *)b.data, b.len, 100, &p), 10);
    CHECK(p.cmd == 'B' && p.len == 5 && memcmp(p.data, "hello", 5) == 0);
    CHECK_INT(mproto_next((unsigned char *)b.data + 10, 5, 100, &p), 5);
    CHECK(p.cmd == 'E' && p.len == 0);
    /* Length 0 and lengths over the limit are refused. */
    CHECK_INT(mproto_next((const unsigned char *)"\0\0\0\0B", 5, 100, &p), -1);
    CHECK_INT(mproto_next((const unsigned char *)"\0\0\1\0B", 5, 100, &p), -1);
    buf_free(&b);
}

static void test_optneg(void)
{
    struct buf b;
    struct mpacket p;
    uint32_t v, a, pr;
    buf_init(&b, 4096);
    CHECK_INT(mproto_put_optneg(&b, 6, SMFIF_ADDHDRS, 0x42, SMFIM_ENVFROM, "i {auth_authen}"), 0);
    CHECK(mproto_next((unsigned char *)b.data, b.len, 4096, &p) > 0);
    CHECK_INT(mproto_parse_optneg(&p, &v, &a, &pr), 0);
    CHECK(v == 6 && a == SMFIF_ADDHDRS && pr == 0x42);
    CHECK_INT(p.len, 12 + 4 + 16);
    CHECK(memcmp(p.data + 12, "\0\0\0\2i {auth_authen}", 20) == 0);
    struct mpacket shorty = {.cmd = 'O', .data = p.data, .len = 11};
    CHECK_INT(mproto_parse_optneg(&shorty, &v, &a, &pr), -1);
    buf_free(&b);
}

static void test_strings_and_macros(void)
{
    static const unsigned char hdr[] = "From\0 <a@b>\0";
    struct mpacket p = {.cmd = 'L', .data = hdr, .len = sizeof(hdr) - 1};
    CHECK_STR(mproto_string(&p, 0), "From");
    CHECK_STR(mproto_string(&p, 1), " <a@b>");
    CHECK(mproto_string(&p, 2) == NULL);
    /* An unterminated string is not returned. */
    p.len = 8;
    CHECK(mproto_string(&p, 1) == NULL);

    static const unsigned char mac[] = "Mi\0ABC123\0{auth_authen}\0alice\0{daemon_name}\0\0";
    struct mpacket m = {.cmd = 'D', .data = mac, .len = sizeof(mac) - 1};
    const char *name, *value;
    size_t off = 1;
    CHECK(mproto_macro(&m, &off, &name, &value));
    CHECK(strcmp(name, "i") == 0 && strcmp(value, "ABC123") == 0);
    CHECK(mproto_macro(&m, &off, &name, &value));
    CHECK(strcmp(name, "{auth_authen}") == 0 && strcmp(value, "alice") == 0);
    CHECK(mproto_macro(&m, &off, &name, &value));
    CHECK(strcmp(name, "{daemon_name}") == 0 && strcmp(value, "") == 0);
    CHECK(!mproto_macro(&m, &off, &name, &value));
    /* A name without its value ends the list. */
    static const unsigned char half[] = "Mi\0ABC";
    struct mpacket h = {.cmd = 'D', .data = half, .len = sizeof(half) - 1};
    off = 1;
    CHECK(!mproto_macro(&h, &off, &name, &value));
}

static void test_eom_packets(void)
{
    struct buf b;
    struct mpacket p;
    buf_init(&b, 4096);
    CHECK_INT(mproto_put_insheader(&b, 0, "DKIM-Signature", " v=1"), 0);
    CHECK(mproto_next((unsigned char *)b.data, b.len, 4096, &p) > 0);
    CHECK(p.cmd == 'i' && p.len == 4 + 15 + 5);
    CHECK(memcmp(p.data, "\0\0\0\0DKIM-Signature\0 v=1\0", p.len) == 0);
    buf_reset(&b);
    CHECK_INT(mproto_put_chgfrom(&b, "<>"), 0);
    CHECK(mproto_next((unsigned char *)b.data, b.len, 4096, &p) > 0);
    CHECK(p.cmd == 'e' && p.len == 3 && memcmp(p.data, "<>", 3) == 0);
    buf_free(&b);
}

int main(void)
{
    UNIT_RUN(test_framing);
    UNIT_RUN(test_optneg);
    UNIT_RUN(test_strings_and_macros);
    UNIT_RUN(test_eom_packets);
    return unit_summary();
}
