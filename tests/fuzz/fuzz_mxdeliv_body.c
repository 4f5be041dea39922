/* Fuzz target: the /mxdeliv body check (mxdeliv/request.c). The input is
 * checked whole and in pieces (sizes from the first byte), with a limit from
 * the second. The final status must not depend on the pieces; what is passed
 * on must be a prefix of the input, all of it when the body is valid, and
 * must never hold anything an SMTP server could take for an end of data. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static enum request_body_status run(const char *in, size_t len, size_t piece, uint64_t max,
                                    char *fwd, size_t *fwd_len)
{
    struct request_body b;
    struct request_body_out out;
    size_t off = 0;

    *fwd_len = 0;
    request_body_init(&b, max);
    while (off < len) {
        size_t n = len - off < piece ? len - off : piece;
        enum request_body_status st = request_body_push(&b, in + off, n, &out);
        if (out.held_len > 1 || out.len > n)
            __builtin_trap();
        if (st != REQUEST_BODY_OK && (out.held_len != 0 || out.len != 0))
            __builtin_trap();
        if (out.held_len > 0)
            memcpy(fwd + *fwd_len, out.held, out.held_len);
        *fwd_len += out.held_len;
        memcpy(fwd + *fwd_len, in + off, out.len);
        *fwd_len += out.len;
        off += n;
    }
    if (b.size != len)
        __builtin_trap();
    return request_body_finish(&b);
}

/* Postfix (3.7, smtpd_forbid_bare_newline off) ends DATA at a line "."
 * ended by CRLF or by a bare LF. */
static int has_end_of_data(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '.' || (i > 0 && p[i - 1] != '\n'))
            continue;
        if (i + 1 < n && p[i + 1] == '\n')
            return 1;
        if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
            return 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t piece, whole_len, part_len;
    uint64_t max;
    char *whole, *part;
    enum request_body_status a, b;

    if (size < 2)
        return 0;
    piece = (size_t)data[0] % 16 + 1;
    max = data[1] == 0xff ? UINT64_MAX : (uint64_t)data[1] * 4;
    data += 2;
    size -= 2;
    whole = malloc(size + 1);
    part = malloc(size + 1);
    if (whole == NULL || part == NULL)
        abort();
    a = run((const char *)data, size, size ? size : 1, max, whole, &whole_len);
    b = run((const char *)data, size, piece, max, part, &part_len);
    if (a != b)
        __builtin_trap();
    if (memcmp(whole, data, whole_len) != 0 || memcmp(part, data, part_len) != 0)
        __builtin_trap();
    if (a == REQUEST_BODY_OK && (whole_len != size || part_len != size))
        __builtin_trap();
    if (has_end_of_data(whole, whole_len) || has_end_of_data(part, part_len))
        __builtin_trap();
    /* A valid body is one Postfix reads back exactly: it ends in CRLF. */
    if (a == REQUEST_BODY_OK && (size < 2 || data[size - 2] != '\r' || data[size - 1] != '\n'))
        __builtin_trap();
    free(whole);
    free(part);
    return 0;
}
