/* Fuzz target: the /mxdeliv envelope headers (mxdeliv/request.c). The input
 * is a list of headers, "name:value" separated by LF bytes (the value may
 * hold any byte but LF). Whatever is accepted must be safe between the angle
 * brackets of an SMTP command; a refusal must carry a 5xx/4xx reply. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_address(const char *a, int allow_empty)
{
    size_t n = strlen(a);
    if (n > REQUEST_ADDRESS_MAX || (n == 0 && !allow_empty))
        __builtin_trap();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)a[i];
        if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
            __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct request_envelope e;
    const char *p = (const char *)data, *end = p + size;
    char name[64];

    request_envelope_init(&e);
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl != NULL ? nl : end;
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (colon != NULL && (size_t)(colon - p) < sizeof(name)) {
            memcpy(name, p, (size_t)(colon - p));
            name[colon - p] = '\0';
            int rc = request_envelope_header(&e, name, colon + 1, (size_t)(line_end - colon - 1));
            if (rc != 0 && (e.error == NULL || request_reply_code(e.error) < 400))
                __builtin_trap();
        }
        p = line_end + (nl != NULL);
    }
    check_address(e.sender, 1);
    for (size_t i = 0; i < e.nrcpts; i++)
        check_address(e.rcpts[i], 0);
    if (e.nrcpts > REQUEST_MAX_RCPTS)
        __builtin_trap();
    request_envelope_free(&e);
    return 0;
}
