/* message: size and From of one message; see message.h. */
#include "message.h"

#include <string.h>
#include <strings.h>

void message_reset(struct message *m, uint64_t max_size)
{
    m->max_size = max_size;
    m->size = 0;
    m->oversize = false;
    m->from_count = 0;
    m->from[0] = '\0';
}

bool message_account(struct message *m, size_t n)
{
    if (m->oversize)
        return false;
    if (n > m->max_size - (m->size < m->max_size ? m->size : m->max_size))
        m->oversize = true;
    m->size += n;
    return !m->oversize;
}

bool message_header(struct message *m, const char *name, const char *value)
{
    size_t vlen = strlen(value);
    if (!message_account(m, strlen(name) + 1 + vlen + 2))
        return false;
    if (strcasecmp(name, "From") == 0 && m->from_count++ == 0 && vlen < sizeof(m->from))
        memcpy(m->from, value, vlen + 1);
    return true;
}

void message_set_oversize(struct message *m)
{
    m->oversize = true;
}
