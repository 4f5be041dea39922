/* Tests for milter/message.c: size accounting against max_message_size and
 * From capture. */
#include "message.h"
#include "unit.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void test_size(void)
{
    struct message m;
    message_reset(&m, 100);
    /* "Subject: hi" as in the message: 7 + 1 + 3 + 2 = 13 bytes. */
    CHECK(message_header(&m, "Subject", " hi"));
    CHECK_INT(m.size, 13);
    CHECK(message_account(&m, 87)); /* exactly max_message_size: fine */
    CHECK(!m.oversize);
    CHECK(!message_account(&m, 1)); /* one byte more */
    CHECK(m.oversize);
    CHECK(!message_account(&m, 0)); /* and it stays so */
    CHECK(!message_header(&m, "From", " <a@b>"));
    CHECK_INT(m.from_count, 0); /* past the limit nothing is noted */
    /* Huge counts do not wrap. */
    message_reset(&m, UINT64_MAX - 1);
    CHECK(message_account(&m, (size_t)(UINT64_MAX / 2)));
    CHECK(message_account(&m, (size_t)(UINT64_MAX / 2))); /* exactly the maximum */
    CHECK(!message_account(&m, (size_t)-1));
    CHECK(m.oversize);
    /* Reset starts over. */
    message_reset(&m, 10);
    CHECK(!m.oversize && m.size == 0 && m.from[0] == '\0');
    message_set_oversize(&m);
    CHECK(!message_account(&m, 1));
}

static void test_from(void)
{
    struct message m;
    message_reset(&m, 1000000);
    CHECK(message_header(&m, "To", " <x@y>"));
    CHECK(message_header(&m, "from", " Alice <alice@example.org>"));
    CHECK(message_header(&m, "FROM", " <mallory@example.net>"));
    CHECK_INT(m.from_count, 2);
    CHECK_STR(m.from, " Alice <alice@example.org>"); /* the first one */
    /* A From longer than MESSAGE_MAX_FROM is counted but kept as "". */
    message_reset(&m, 1000000);
    char *v = malloc(MESSAGE_MAX_FROM + 1);
    memset(v, 'a', MESSAGE_MAX_FROM);
    v[MESSAGE_MAX_FROM] = '\0';
    CHECK(message_header(&m, "From", v));
    CHECK_INT(m.from_count, 1);
    CHECK_STR(m.from, "");
    v[MESSAGE_MAX_FROM - 1] = '\0'; /* the longest kept */
    message_reset(&m, 1000000);
    CHECK(message_header(&m, "From", v));
    CHECK_INT(strlen(m.from), MESSAGE_MAX_FROM - 1);
    free(v);
}

int main(void)
{
    UNIT_RUN(test_size);
    UNIT_RUN(test_from);
    return unit_summary();
}
