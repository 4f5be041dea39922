/* reply: '%' doubling and the reply budget; see reply.h. */
#include "reply.h"

#include <string.h>

char *reply_escape(const char *code, const char *xcode, const char *text, char *out)
{
    size_t fixed = strlen(code) + 1 + (xcode[0] != '\0' ? strlen(xcode) + 1 : 0);
    size_t budget = fixed < REPLY_MAX ? REPLY_MAX - fixed : 0;
    size_t o = 0;
    for (const char *p = text; *p != '\0'; p++) {
        size_t need = *p == '%' ? 2 : 1;
        if (o + need > budget)
            break;
        if (*p == '%')
            out[o++] = '%';
        out[o++] = *p;
    }
    out[o] = '\0';
    return out;
}
