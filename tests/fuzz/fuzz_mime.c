/* Fuzz target: the streaming MIME analyser (mime.c) agrees with the literal
 * transcription of mailparse and upstream's checks (ref_mime.c): parse error,
 * top mimetype, multipart, part count, From count, the decoded header values,
 * encrypted (both directions) and securejoin. mime.c is fed whole, byte by
 * byte and in chunks derived from the input; all must agree. The first byte
 * picks default limits or tiny ones (so depth, part, field and length limits
 * are reached), the direction and the chunking. NUL bytes are replaced by
 * 0x01: the reference keeps parameter values as C strings. Aborts on any
 * disagreement. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mime.h"
#include "ref_mime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_mime: mismatch: %s\n", what);
    abort();
}

static bool same_str(const char *a, const char *b)
{
    return (a == NULL) == (b == NULL) && (a == NULL || strcmp(a, b) == 0);
}

static void compare(const struct mime_result *s, const struct ref_mime_result *r)
{
    const struct mime_header *h[5] = {&s->from, &s->subject, &s->secure_join, &s->auto_submitted,
                                      &s->content_type};

    if (!same_str(s->parse_error, r->parse_error))
        fail("parse_error");
    if (s->parse_error != NULL)
        return;
    if (s->internal_error)
        fail("internal_error");
    if (strcmp(s->mimetype, r->mimetype) != 0)
        fail("mimetype");
    if (s->multipart != r->multipart)
        fail("multipart");
    if (s->nparts != r->nparts)
        fail("nparts");
    if (s->from_count != r->from_count)
        fail("from_count");
    for (int i = 0; i < 5; i++) {
        if ((h[i]->value == NULL) != (r->values[i] == NULL))
            fail("header presence");
        if (h[i]->value == NULL)
            continue;
        if (h[i]->len != r->value_lens[i] || memcmp(h[i]->value, r->values[i], h[i]->len) != 0)
            fail("header value");
        if (h[i]->truncated != r->value_trunc[i])
            fail("header truncated");
    }
    if (s->encrypted != r->encrypted)
        fail("encrypted");
    if (s->securejoin != r->securejoin)
        fail("securejoin");
}

static void same(const struct mime_result *a, const struct mime_result *b)
{
    if (!same_str(a->parse_error, b->parse_error) || a->encrypted != b->encrypted ||
        a->securejoin != b->securejoin || a->nparts != b->nparts || a->multipart != b->multipart ||
        a->from_count != b->from_count || strcmp(a->mimetype, b->mimetype) != 0)
        fail("chunking changed the result");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mime_limits lim;
    struct mime_parser *p;
    struct mime_result whole, bytes, chunks;
    struct ref_mime_result ref;
    char *msg;
    size_t n;
    uint32_t seed;
    enum armor_direction dir;

    if (size < 1)
        return 0;
    mime_limits_default(&lim);
    if (data[0] & 1) {
        lim.max_header_value = 40;
        lim.max_header_fields = 8;
        lim.max_part_header = 30;
        lim.max_boundary = 10;
        lim.max_depth = 3;
        lim.max_parts = 5;
    }
    dir = (data[0] & 2) ? ARMOR_INCOMING : ARMOR_OUTGOING;
    seed = (uint32_t)size * 2654435761u ^ data[0];
    n = size - 1;
    msg = malloc(n + 1);
    if (msg == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        msg[i] = data[i + 1] == 0 ? 1 : (char)data[i + 1];

    p = mime_parser_new(&lim, dir);
    if (p == NULL) {
        free(msg);
        return 0;
    }
    mime_push(p, msg, n);
    mime_finish(p, &whole);
    ref_mime_check(msg, n, &lim, dir == ARMOR_OUTGOING, &ref);
    compare(&whole, &ref);
    ref_mime_free(&ref);

    mime_parser_reset(p, dir);
    for (size_t i = 0; i < n; i++)
        mime_push(p, msg + i, 1);
    mime_finish(p, &bytes);
    same(&whole, &bytes);

    mime_parser_reset(p, dir);
    for (size_t i = 0; i < n;) {
        seed = seed * 1103515245u + 12345u;
        size_t take = 1 + (seed >> 16) % ((data[0] & 4) ? 300 : 13);
        if (take > n - i)
            take = n - i;
        mime_push(p, msg + i, take);
        i += take;
    }
    mime_finish(p, &chunks);
    same(&whole, &chunks);
    mime_parser_free(&p);
    free(msg);
    return 0;
}
