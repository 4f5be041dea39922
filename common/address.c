/* address: mailparse-compatible extraction of the first address of a list. */
#include "address.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

enum addr_state {
    AS_INITIAL,
    AS_QUOTED_NAME,
    AS_ESCAPED_CHAR,
    AS_AFTER_QUOTED_NAME,
    AS_BRACKETED_ADDR,
    AS_AFTER_BRACKETED_ADDR,
    AS_UNQUOTED,
    AS_TRAILER_COMMENT,
};

/* The address being collected, and the first entry's result. */
struct addr_parse {
    char cur[ADDRESS_MAX];
    size_t cur_len;
    bool cur_overflow;
    bool have_first;      /* the first entry of the list has been seen */
    bool first_is_group;  /* ... and it is a group */
    bool first_member;    /* the first group's first member has been seen */
    char *out;
    size_t outlen;
    bool found;
    bool fits;
    size_t count;         /* mailboxes in the whole list */
};

static bool addr_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void addr_reset(struct addr_parse *a)
{
    a->cur_len = 0;
    a->cur_overflow = false;
}

static void addr_add(struct addr_parse *a, char c)
{
    if (a->cur_len < sizeof(a->cur))
        a->cur[a->cur_len++] = c;
    else
        a->cur_overflow = true;
}

/* A mailbox is complete (mailparse's SingleInfo::new): it must contain '@'.
 * Returns -1 on error. trim: drop trailing whitespace (unquoted addresses). */
static int addr_push(struct addr_parse *a, bool in_group, bool trim)
{
    size_t n = a->cur_len;
    if (trim)
        while (n > 0 && addr_space(a->cur[n - 1]))
            n--;
    if (memchr(a->cur, '@', n) == NULL)
        return -1;
    a->count++;
    bool take = false;
    if (!in_group && !a->have_first) {
        a->have_first = true;
        take = true;
    } else if (in_group && a->first_is_group && !a->first_member) {
        a->first_member = true;
        take = true;
    }
    if (take) {
        a->found = true;
        a->fits = !a->cur_overflow && n < a->outlen;
        if (a->fits) {
            memcpy(a->out, a->cur, n);
            a->out[n] = '\0';
        }
    }
    addr_reset(a);
    return 0;
}

/* A group starts: it is the list's first entry if nothing came before. */
static void addr_group_start(struct addr_parse *a)
{
    if (!a->have_first) {
        a->have_first = true;
        a->first_is_group = true;
    }
    addr_reset(a);
}

/* mailparse's addrparse_inner, with the group recursion unrolled (groups do not
 * nest). Returns 0 when the whole list parses. */
static int addr_parse_list(struct addr_parse *a, const char *s, size_t len)
{
    enum addr_state st = AS_INITIAL;
    bool in_group = false;
    size_t group_chars = 0;

    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_group)
            group_chars++;
        switch (st) {
        case AS_INITIAL:
            if (addr_space(c))
                break;
            if (c == '"') {
                st = AS_QUOTED_NAME;
            } else if (c == '<') {
                st = AS_BRACKETED_ADDR;
                addr_reset(a);
            } else if (c == ';') {
                if (!in_group)
                    return -1;
                in_group = false;
            } else {
                st = AS_UNQUOTED;
                addr_reset(a);
                addr_add(a, c);
            }
            break;
        case AS_QUOTED_NAME:
            if (c == '\\')
                st = AS_ESCAPED_CHAR;
            else if (c == '"')
                st = AS_AFTER_QUOTED_NAME;
            break;
        case AS_ESCAPED_CHAR:
            st = AS_QUOTED_NAME;
            break;
        case AS_AFTER_QUOTED_NAME:
            if (c == '<') {
                st = AS_BRACKETED_ADDR;
                addr_reset(a);
            } else if (c == ':') {
                if (in_group)
                    return -1;
                addr_group_start(a);
                in_group = true;
                group_chars = 0;
                st = AS_INITIAL;
            } else if (c == '"') {
                st = AS_QUOTED_NAME;
            }
            /* whitespace and other characters extend the display name */
            break;
        case AS_BRACKETED_ADDR:
            if (c == '>') {
                if (addr_push(a, in_group, false) < 0)
                    return -1;
                st = AS_AFTER_BRACKETED_ADDR;
            } else {
                addr_add(a, c);
            }
            break;
        case AS_AFTER_BRACKETED_ADDR:
            if (addr_space(c))
                break;
            if (c == ',') {
                st = AS_INITIAL;
            } else if (c == ';') {
                in_group = false;
                st = AS_INITIAL;
            } else if (c == '(') {
                st = AS_TRAILER_COMMENT;
            } else {
                return -1;
            }
            break;
        case AS_UNQUOTED:
            if (c == '<') {
                st = AS_BRACKETED_ADDR; /* what came before was a display name */
                addr_reset(a);
            } else if (c == ',') {
                if (addr_push(a, in_group, true) < 0)
                    return -1;
                st = AS_INITIAL;
            } else if (c == ';') {
                if (addr_push(a, in_group, true) < 0)
                    return -1;
                in_group = false;
                st = AS_INITIAL;
            } else if (c == ':') {
                if (in_group)
                    return -1;
                addr_group_start(a);
                in_group = true;
                group_chars = 0;
                st = AS_INITIAL;
            } else {
                addr_add(a, c);
            }
            break;
        case AS_TRAILER_COMMENT:
            if (c == ')')
                st = AS_AFTER_BRACKETED_ADDR;
            break;
        }
    }
    /* mailparse returns an empty group, not an error, when a group's ':' is the
     * last character; otherwise an open group is unterminated. */
    if (in_group && group_chars > 0)
        return -1;
    switch (st) {
    case AS_QUOTED_NAME:
    case AS_ESCAPED_CHAR:
    case AS_AFTER_QUOTED_NAME:
    case AS_BRACKETED_ADDR:
    case AS_TRAILER_COMMENT:
        return -1;
    case AS_UNQUOTED:
        return addr_push(a, in_group, true);
    default:
        return 0;
    }
}

/* Skips any number of leading copies of prefix (already lowercased input). */
static size_t addr_skip_prefixes(const char *s, size_t len, size_t i, const char *prefix)
{
    size_t n = strlen(prefix);
    while (len - i >= n && memcmp(s + i, prefix, n) == 0)
        i += n;
    return i;
}

int address_extract(const char *in, size_t len, char *out, size_t outlen)
{
    char low[ADDRESS_MAX * 4];
    struct addr_parse a;
    size_t i, end;

    /* A NUL would silently cut the result as a C string ("a@b\0@c"): no
     * address can contain one, so such input has none. */
    if (outlen == 0 || len > sizeof(low) || memchr(in, '\0', len) != NULL)
        return -1;
    for (i = 0; i < len; i++) {
        char c = in[i];
        low[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    i = addr_skip_prefixes(low, len, 0, "mail from:");
    i = addr_skip_prefixes(low, len, i, "rcpt to:");
    end = len;
    const char *gt = memchr(low + i, '>', len - i);
    if (gt != NULL)
        end = (size_t)(gt - low) + 1;

    memset(&a, 0, sizeof(a));
    a.out = out;
    a.outlen = outlen;
    if (addr_parse_list(&a, low + i, end - i) < 0)
        return -1;
    if (!a.found || !a.fits)
        return -1;
    return 0;
}

int address_count(const char *in, size_t len)
{
    char out[ADDRESS_MAX];
    struct addr_parse a;

    if (len > ADDRESS_MAX * 4 || memchr(in, '\0', len) != NULL)
        return -1;
    memset(&a, 0, sizeof(a));
    a.out = out;
    a.outlen = sizeof(out);
    if (addr_parse_list(&a, in, len) < 0)
        return -1;
    return (int)a.count;
}

int address_domain(const char *addr, enum address_domain_kind *kind_r, const char **domain_r,
                   size_t *domain_len_r)
{
    const char *at = strchr(addr, '@');
    const char *d;
    size_t n;

    if (at == NULL || strchr(at + 1, '@') != NULL)
        return -1;
    d = at + 1;
    n = strlen(d);
    if (n >= 2 && d[0] == '[' && d[n - 1] == ']') {
        d++;
        n -= 2;
        if (n >= 5 && strncasecmp(d, "ipv6:", 5) == 0) {
            d += 5;
            n -= 5;
        }
        *kind_r = ADDRESS_DOMAIN_LITERAL;
    } else {
        *kind_r = ADDRESS_DOMAIN_NAME;
    }
    *domain_r = d;
    *domain_len_r = n;
    return 0;
}

bool address_valid_mailbox(const char *addr)
{
    return addr[0] != '\0' && strchr(addr, '@') != NULL && strchr(addr, '/') == NULL;
}

void address_lowercase(char *s)
{
    for (; *s != '\0'; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

void address_strip_brackets(const char *in, char *out, size_t outlen)
{
    size_t n = strlen(in);
    if (outlen == 0)
        return;
    if (n >= 2 && in[0] == '<' && in[n - 1] == '>') {
        in++;
        n -= 2;
    }
    if (n >= outlen)
        n = outlen - 1;
    memcpy(out, in, n);
    out[n] = '\0';
}

void address_envelope(const char *path, char *out, size_t outlen)
{
    char plain[ADDRESS_MAX];
    address_strip_brackets(path, plain, sizeof(plain));
    if (plain[0] == '\0') {
        out[0] = '\0';
        return;
    }
    if (address_extract(path, strlen(path), out, outlen) == 0)
        return;
    snprintf(out, outlen, "%s", plain);
    address_lowercase(out);
}

void address_from_domain(const char *from_value, char *out, size_t outlen)
{
    char addr[ADDRESS_MAX];
    enum address_domain_kind kind;
    const char *d;
    size_t dlen;

    out[0] = '\0';
    if (from_value[0] == '\0' ||
        address_extract(from_value, strlen(from_value), addr, sizeof(addr)) < 0 ||
        address_domain(addr, &kind, &d, &dlen) < 0 || kind != ADDRESS_DOMAIN_NAME ||
        dlen >= outlen)
        return;
    memcpy(out, d, dlen);
    out[dlen] = '\0';
    address_lowercase(out);
}

bool address_path_ok(const char *v, size_t len)
{
    if (len == 0 || len > ADDRESS_PATH_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)v[i];
        if (c < 0x21 || c > 0x7e || c == '<' || c == '>')
            return false;
    }
    return true;
}

bool address_path_safe(const char *a, size_t max, size_t *len_r, bool *utf8_r)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)a; *p != '\0'; p++, n++) {
        if (*p < 0x20 || *p == 0x7f)
            return false;
        if (*p >= 0x80)
            *utf8_r = true;
    }
    *len_r = n;
    return n <= max;
}

bool address_domain_name_ok(const char *s)
{
    size_t label = 0, total = 0;
    if (*s == '\0' || *s == '.')
        return false;
    for (const char *p = s; *p != '\0'; p++, total++) {
        char c = *p;
        if (c == '.') {
            if (label == 0)
                return false;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'))
            return false;
        if (++label > 63)
            return false;
    }
    return label > 0 && total <= 253;
}
