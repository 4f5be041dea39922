/* Fuzz target: a handoff request (what filtermail-deliverd reads from its
 * socket) parses, stays incomplete or is refused with a message; what parses
 * has 1 to HANDOFF_MAX_RCPTS recipients without CR or LF, formats back and
 * parses to the same request. A reply line parses only into a valid
 * outcome. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handoff.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[200] = "";
    struct handoff_request *req = malloc(sizeof(*req)), *back = malloc(sizeof(*back));
    char *copy = malloc(size + 1);
    struct outcome o;

    memcpy(copy, data, size);
    if (handoff_reply_parse(copy, size, &o) == 0 && !dsn_valid(o.dsn))
        __builtin_trap();
    enum handoff_parse p = handoff_request_parse(copy, size, req, err, sizeof(err));
    if (p == HANDOFF_BAD && err[0] == '\0')
        __builtin_trap();
    if (p == HANDOFF_OK) {
        if (req->nrcpts < 1 || req->nrcpts > HANDOFF_MAX_RCPTS)
            __builtin_trap();
        struct buf b;
        buf_init(&b, HANDOFF_REQUEST_MAX);
        if (handoff_request_format(req->queue_id, req->sender, req->rcpts, req->nrcpts, &b) < 0 ||
            handoff_request_parse(b.data, b.len, back, err, sizeof(err)) != HANDOFF_OK ||
            back->nrcpts != req->nrcpts || strcmp(back->sender, req->sender) != 0 ||
            strcmp(back->queue_id, req->queue_id) != 0)
            __builtin_trap();
        for (size_t i = 0; i < req->nrcpts; i++)
            if (strcmp(back->rcpts[i], req->rcpts[i]) != 0 || strpbrk(req->rcpts[i], "\r\n"))
                __builtin_trap();
        buf_free(&b);
    }
    free(copy);
    free(req);
    free(back);
    return 0;
}
