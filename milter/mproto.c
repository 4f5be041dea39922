/* mproto: milter protocol packets; see mproto.h. */
#include "mproto.h"

#include <string.h>

static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

long mproto_next(const unsigned char *buf, size_t len, size_t max, struct mpacket *p)
{
    if (len < 5)
        return 0;
    uint32_t n = get32(buf);
    if (n == 0 || n > max)
        return -1;
    if (len - 4 < n)
        return 0;
    p->cmd = (char)buf[4];
    p->data = buf + 5;
    p->len = n - 1;
    return (long)n + 4;
}

int mproto_put(struct buf *out, char cmd, const void *data, size_t len)
{
    unsigned char head[5];
    if (len >= MPROTO_MAX_PACKET)
        return -1;
    put32(head, (uint32_t)len + 1);
    head[4] = (unsigned char)cmd;
    if (buf_append(out, head, 5) < 0 || (len > 0 && buf_append(out, data, len) < 0))
        return -1;
    return 0;
}

int mproto_parse_optneg(const struct mpacket *p, uint32_t *version, uint32_t *actions,
                        uint32_t *protocol)
{
    if (p->cmd != 'O' || p->len < 12)
        return -1;
    *version = get32(p->data);
    *actions = get32(p->data + 4);
    *protocol = get32(p->data + 8);
    return 0;
}

int mproto_put_optneg(struct buf *out, uint32_t version, uint32_t actions, uint32_t protocol,
                      int stage, const char *symlist)
{
    unsigned char d[16 + 256];
    size_t n = 12;
    put32(d, version);
    put32(d + 4, actions);
    put32(d + 8, protocol);
    if (symlist != NULL) {
        size_t l = strlen(symlist);
        if (l + 1 > sizeof(d) - 16)
            return -1;
        put32(d + 12, (uint32_t)stage);
        memcpy(d + 16, symlist, l + 1);
        n = 16 + l + 1;
    }
    return mproto_put(out, 'O', d, n);
}

const char *mproto_string(const struct mpacket *p, size_t i)
{
    size_t off = 0;
    for (;;) {
        if (off >= p->len)
            return NULL;
        const unsigned char *z = memchr(p->data + off, '\0', p->len - off);
        if (z == NULL)
            return NULL;
        if (i-- == 0)
            return (const char *)p->data + off;
        off = (size_t)(z - p->data) + 1;
    }
}

bool mproto_macro(const struct mpacket *p, size_t *off, const char **name, const char **value)
{
    const unsigned char *z1, *z2;
    if (*off >= p->len)
        return false;
    z1 = memchr(p->data + *off, '\0', p->len - *off);
    if (z1 == NULL)
        return false;
    size_t voff = (size_t)(z1 - p->data) + 1;
    if (voff >= p->len)
        return false;
    z2 = memchr(p->data + voff, '\0', p->len - voff);
    if (z2 == NULL)
        return false;
    *name = (const char *)p->data + *off;
    *value = (const char *)p->data + voff;
    *off = (size_t)(z2 - p->data) + 1;
    return true;
}

int mproto_put_str(struct buf *out, char cmd, const char *s)
{
    return mproto_put(out, cmd, s, strlen(s) + 1);
}

int mproto_put_chgfrom(struct buf *out, const char *from)
{
    return mproto_put_str(out, 'e', from);
}

int mproto_put_insheader(struct buf *out, uint32_t idx, const char *name, const char *value)
{
    size_t nl = strlen(name), vl = strlen(value);
    unsigned char head[9];
    if (nl + vl + 6 >= MPROTO_MAX_PACKET)
        return -1;
    put32(head, (uint32_t)(1 + 4 + nl + 1 + vl + 1));
    head[4] = 'i';
    put32(head + 5, idx);
    if (buf_append(out, head, 9) < 0 || buf_append(out, name, nl + 1) < 0 ||
        buf_append(out, value, vl + 1) < 0)
        return -1;
    return 0;
}
