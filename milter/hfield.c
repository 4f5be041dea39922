/* hfield: header fields rebuilt; see hfield.h. */
#include "hfield.h"

#include <string.h>

int hfield_build(struct buf *f, const char *name, const char *value, bool leadspc)
{
    buf_reset(f);
    int bad = buf_append(f, name, strlen(name));
    bad |= leadspc ? buf_putc(f, ':') : buf_puts(f, ": ");
    for (const char *p = value; *p != '\0' && bad == 0;) {
        const char *nl = strchr(p, '\n');
        if (nl == NULL) {
            bad |= buf_puts(f, p);
            break;
        }
        size_t seg = (size_t)(nl - p);
        if (seg > 0 && p[seg - 1] == '\r')
            seg--;
        bad |= buf_append(f, p, seg);
        bad |= buf_puts(f, "\r\n");
        p = nl + 1;
    }
    if (bad == 0)
        bad = buf_puts(f, "\r\n") < 0;
    return bad != 0 ? -1 : 0;
}
