/* config: chatmail.ini with upstream's (serini) syntax.
 *
 * Written by hand rather than with libinih: Debian builds libinih with ';'
 * inline comments, multi-line continuation of indented lines and a 200-byte
 * line limit, each of which would silently change values of an existing
 * chatmail.ini that upstream filtermail reads correctly.
 */
#include "config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "array.h"
#include "buf.h"
#include "fileio.h"
#include "listener.h"

#define CONFIG_MAX_KEYS 1000

enum config_type {
    CT_STRING,      /* non-empty text */
    CT_OPTSTRING,   /* text, empty meaning "off" */
    CT_HOST_IP,     /* an IPv4 or IPv6 address */
    CT_PORT,        /* 1-65535 */
    CT_U64,         /* a number */
    CT_U32_NONZERO, /* a number above 0 */
    CT_BOOL,        /* yes/no, true/false, 1/0, on/off */
    CT_LIST,        /* space-separated items */
    CT_LEVEL,       /* a log level */
    CT_FALLBACK,    /* local or defer */
    CT_LOG_SINK,    /* syslog, stderr or an absolute file path */
    CT_SOCKET,      /* a listening socket address (listener.h) */
};

struct config_key {
    const char *name;
    enum config_type type;
    size_t offset;
    const char *def; /* NULL: required (mail_domain) or computed (mailboxes_dir) */
    unsigned fixed;  /* the daemons (CONFIG_PROG_*) that read it only at start-up */
};

#define K(name, type, field, def) {name, type, offsetof(struct config, field), def, 0}
/* A key that the daemons in `fixed` read only at start-up (config_reload). */
#define KF(name, type, field, def, fixed)                                                          \
    {name, type, offsetof(struct config, field), def, fixed}
#define MILTER CONFIG_PROG_MILTER
#define POLICYD CONFIG_PROG_POLICYD
#define MXDELIV CONFIG_PROG_MXDELIV

static const struct config_key config_keys[] = {
    KF("mail_domain", CT_STRING, mail_domain, NULL, MILTER),
    K("mailboxes_dir", CT_STRING, mailboxes_dir, NULL),
    KF("filtermail_host", CT_HOST_IP, filtermail_host, "127.0.0.1", MXDELIV),
    K("filtermail_smtp_port", CT_PORT, filtermail_smtp_port, "10080"),
    K("filtermail_smtp_port_incoming", CT_PORT, filtermail_smtp_port_incoming, "10081"),
    KF("filtermail_http_port_incoming", CT_PORT, filtermail_http_port_incoming, "10082", MXDELIV),
    K("filtermail_lmtp_port_transport", CT_PORT, filtermail_lmtp_port_transport, "10083"),
    KF("postfix_host", CT_STRING, postfix_host, "127.0.0.1", MXDELIV),
    K("postfix_reinject_port", CT_PORT, postfix_reinject_port, "10025"),
    KF("postfix_reinject_port_incoming", CT_PORT, postfix_reinject_port_incoming, "10026", MXDELIV),
    K("max_message_size", CT_U64, max_message_size, "31457280"),
    K("max_user_send_per_minute", CT_U32_NONZERO, max_user_send_per_minute, "60"),
    K("max_user_send_burst_size", CT_U32_NONZERO, max_user_send_burst_size, "10"),
    K("passthrough_senders", CT_LIST, passthrough_senders, ""),
    K("passthrough_recipients", CT_LIST, passthrough_recipients, ""),
    KF("filtermail_milter_socket", CT_SOCKET, milter_socket,
      "unix:/var/spool/postfix/filtermail/milter.sock", MILTER),
    KF("filtermail_milter_timeout", CT_U32_NONZERO, milter_timeout, "600", MILTER),
    K("filtermail_outgoing_daemon_names", CT_LIST, outgoing_daemon_names, "ORIGINATING"),
    KF("filtermail_user", CT_STRING, user, "filtermail", MILTER | POLICYD | MXDELIV),
    KF("filtermail_socket_group", CT_STRING, socket_group, "postfix", MILTER | POLICYD),
    KF("filtermail_log_level", CT_LEVEL, log_level, "info", MILTER | POLICYD | MXDELIV),
    KF("filtermail_dkim_sign", CT_BOOL, dkim_sign, "yes", MILTER),
    KF("filtermail_dkim_selector", CT_STRING, dkim_selector, "opendkim", MILTER),
    KF("filtermail_dkim_key", CT_STRING, dkim_key, "/etc/dkimkeys/opendkim.private", MILTER),
    KF("filtermail_rejected_dir", CT_OPTSTRING, rejected_dir, "/var/lib/filtermail/rejected", MILTER),
    KF("filtermail_rejected_max_files", CT_U32_NONZERO, rejected_max_files, "100", MILTER),
    KF("filtermail_rejected_max_bytes", CT_U64, rejected_max_bytes, "104857600", MILTER),
    KF("filtermail_unbound_config", CT_OPTSTRING, unbound_config, "", MILTER),
    KF("filtermail_trust_anchor", CT_STRING, trust_anchor, "/usr/share/dns/root.key", MILTER),
    KF("filtermail_dns_timeout", CT_U32_NONZERO, dns_timeout, "10", MILTER),
    KF("filtermail_policy_socket", CT_SOCKET, policy_socket,
      "unix:/var/spool/postfix/filtermail/policy.sock", POLICYD),
    K("filtermail_ratelimit_exempt", CT_LIST, ratelimit_exempt, ""),
    KF("filtermail_ratelimit_redis", CT_OPTSTRING, ratelimit_redis, "", POLICYD),
    KF("filtermail_ratelimit_redis_fallback", CT_FALLBACK, ratelimit_redis_fallback, "local", POLICYD),
    KF("filtermail_ratelimit_state", CT_OPTSTRING, ratelimit_state,
      "/var/lib/filtermail/ratelimit.state", POLICYD),
    K("filtermail_transport_smtp_port", CT_PORT, transport_smtp_port, "25"),
    K("filtermail_transport_https_port", CT_PORT, transport_https_port, "443"),
    K("filtermail_tls_ca_file", CT_OPTSTRING, tls_ca_file, ""),
    K("filtermail_transport_state", CT_OPTSTRING, transport_state,
      "/var/lib/filtermail/transport"),
    K("filtermail_transport_tls_policy", CT_OPTSTRING, transport_tls_policy, ""),
    K("filtermail_transport_log", CT_LOG_SINK, transport_log, "syslog"),
    K("filtermail_transport_socket", CT_SOCKET, transport_socket,
      "unix:/run/filtermail-deliverd/deliverd.sock"),
    K("filtermail_transport_connect_timeout", CT_U32_NONZERO, transport_connect_timeout, "30"),
    K("filtermail_transport_io_timeout", CT_U32_NONZERO, transport_io_timeout, "120"),
    K("filtermail_transport_https_timeout", CT_U32_NONZERO, transport_https_timeout, "60"),
    K("filtermail_transport_deadline", CT_U32_NONZERO, transport_deadline, "600"),
    K("filtermail_transport_down_time", CT_U32_NONZERO, transport_down_time, "300"),
    K("filtermail_transport_destination_concurrency", CT_U32_NONZERO,
      transport_destination_concurrency, "20"),
};

#define NKEYS (sizeof(config_keys) / sizeof(config_keys[0]))

/* The [params] pairs as read, before typing. */
struct config_pair {
    char *key;
    char *value;
};

struct config_reader {
    struct config_pair *pairs;
    size_t n, cap;
    char *err;
    size_t errlen;
    const char *origin;
};

static int config_error(struct config_reader *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int config_error(struct config_reader *r, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(r->err, r->errlen, "%s: ", r->origin);
    if (n < 0 || (size_t)n >= r->errlen)
        return -1;
    va_start(ap, fmt);
    vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* True when s[0..len) is well-formed UTF-8 (no overlongs, no surrogates). */
static bool config_valid_utf8(const unsigned char *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        size_t n;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n > len - i - 1)
            return false;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += n + 1;
    }
    return true;
}

static bool config_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f';
}

/* Trims [*s, *e) of surrounding whitespace. */
static void config_trim(const char **s, const char **e)
{
    while (*s < *e && config_space(**s))
        (*s)++;
    while (*e > *s && config_space((*e)[-1]))
        (*e)--;
}

static char *config_strndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

/* Copies a value with serini's escapes undone. */
static char *config_unescape(const char *s, size_t n)
{
    char *out = malloc(n + 1), *o = out;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '\\' && i + 1 < n) {
            char c = s[i + 1], r;
            switch (c) {
            case '\\':
                r = '\\';
                break;
            case 'n':
                r = '\n';
                break;
            case 'r':
                r = '\r';
                break;
            case 't':
                r = '\t';
                break;
            case '"':
                r = '"';
                break;
            case ';':
                r = ';';
                break;
            case '#':
                r = '#';
                break;
            default:
                *o++ = '\\';
                continue;
            }
            *o++ = r;
            i++;
        } else {
            *o++ = s[i];
        }
    }
    *o = '\0';
    return out;
}

static void config_clear_pairs(struct config_reader *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->pairs[i].key);
        free(r->pairs[i].value);
    }
    r->n = 0;
}

/* Records key = value of [params]; a repeated key keeps its last value. */
static int config_set_pair(struct config_reader *r, const char *k, size_t kn, const char *v,
                           size_t vn)
{
    char *value = config_unescape(v, vn);
    if (value == NULL)
        return config_error(r, "out of memory");
    for (size_t i = 0; i < r->n; i++) {
        if (strlen(r->pairs[i].key) == kn && memcmp(r->pairs[i].key, k, kn) == 0) {
            free(r->pairs[i].value);
            r->pairs[i].value = value;
            return 0;
        }
    }
    if (r->n == CONFIG_MAX_KEYS) {
        free(value);
        return config_error(r, "more than %d keys in [params]", CONFIG_MAX_KEYS);
    }
    struct config_pair *p =
        array_grow(r->pairs, sizeof(*r->pairs), r->cap, r->n + 1, CONFIG_MAX_KEYS, &r->cap);
    if (p == NULL) {
        free(value);
        return config_error(r, "out of memory");
    }
    r->pairs = p;
    r->pairs[r->n].key = config_strndup(k, kn);
    if (r->pairs[r->n].key == NULL) {
        free(value);
        return config_error(r, "out of memory");
    }
    r->pairs[r->n].value = value;
    r->n++;
    return 0;
}

/* Reads every line; fills r->pairs with the [params] section. Sets *seen_params. */
static int config_scan(struct config_reader *r, const char *text, size_t len, bool *seen_params)
{
    const char *p = text, *end = text + len;
    bool in_params = false;

    *seen_params = false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *s = p, *e = nl != NULL ? nl : end;
        p = nl != NULL ? nl + 1 : end;

        config_trim(&s, &e);
        if (s == e || *s == ';' || *s == '#')
            continue;
        if (*s == '[' && e[-1] == ']' && e - s >= 2) {
            /* The name between the brackets is not trimmed, as upstream. */
            in_params = (e - s - 2 == 6 && memcmp(s + 1, "params", 6) == 0);
            if (in_params) {
                *seen_params = true;
                config_clear_pairs(r);
            }
            continue;
        }
        const char *eq = memchr(s, '=', (size_t)(e - s));
        if (eq == NULL || !in_params)
            continue;
        const char *ks = s, *ke = eq, *vs = eq + 1, *ve = e;
        config_trim(&ks, &ke);
        config_trim(&vs, &ve);
        if (config_set_pair(r, ks, (size_t)(ke - ks), vs, (size_t)(ve - vs)) < 0)
            return -1;
    }
    return 0;
}

/* Parses a plain decimal (a leading '+' allowed, as upstream) up to max. */
static int config_number(const char *s, uint64_t max, uint64_t *v_r)
{
    uint64_t v = 0;
    if (*s == '+')
        s++;
    if (*s == '\0')
        return -1;
    for (; *s != '\0'; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, (uint64_t)(*s - '0'), &v))
            return -1;
    }
    if (v > max)
        return -1;
    *v_r = v;
    return 0;
}

static int config_split_list(const char *s, struct config_list *l)
{
    const char *p = s;
    size_t n = 0;

    l->items = NULL;
    l->n = 0;
    /* Split on spaces and tabs, ignoring empty items. */
    for (const char *q = s; *q != '\0'; q++)
        if (*q != ' ' && *q != '\t' && (q == s || q[-1] == ' ' || q[-1] == '\t'))
            n++;
    if (n == 0)
        return 0;
    l->items = calloc(n, sizeof(char *));
    if (l->items == NULL)
        return -1;
    while (*p != '\0') {
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            break;
        const char *start = p;
        while (*p != '\0' && *p != ' ' && *p != '\t')
            p++;
        l->items[l->n] = config_strndup(start, (size_t)(p - start));
        if (l->items[l->n] == NULL)
            return -1;
        l->n++;
    }
    return 0;
}

static void config_free_list(struct config_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

bool config_list_has(const struct config_list *l, const char *item)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i], item) == 0)
            return true;
    return false;
}

/* Stores one typed value into the struct. */
static int config_apply(struct config_reader *r, struct config *cfg, const struct config_key *k,
                        const char *value)
{
    void *field = (char *)cfg + k->offset;
    uint64_t v;

    switch (k->type) {
    case CT_STRING:
        if (*value == '\0')
            return config_error(r, "invalid value for %s: empty", k->name);
        break;
    case CT_OPTSTRING:
        break;
    case CT_BOOL:
        if (strcmp(value, "yes") == 0 || strcmp(value, "true") == 0 ||
            strcmp(value, "1") == 0 || strcmp(value, "on") == 0) {
            *(bool *)field = true;
        } else if (strcmp(value, "no") == 0 || strcmp(value, "false") == 0 ||
                   strcmp(value, "0") == 0 || strcmp(value, "off") == 0) {
            *(bool *)field = false;
        } else {
            return config_error(r, "invalid value for %s: %.200s (expected yes or no)", k->name,
                                value);
        }
        return 0;
    case CT_FALLBACK:
        if (strcmp(value, "local") != 0 && strcmp(value, "defer") != 0)
            return config_error(r, "invalid value for %s: %.200s (expected local or defer)",
                                k->name, value);
        break;
    case CT_LOG_SINK:
        if (strcmp(value, "syslog") != 0 && strcmp(value, "stderr") != 0 && value[0] != '/')
            return config_error(
                r, "invalid value for %s: %.200s (expected syslog, stderr or an absolute path)",
                k->name, value);
        break;
    case CT_SOCKET: {
        struct listener_addr la;
        char why[128];
        if (listener_parse(value, &la, why, sizeof(why)) < 0)
            return config_error(r, "invalid value for %s: %.200s (%s)", k->name, value, why);
        break;
    }
    case CT_HOST_IP: {
        unsigned char addr[16];
        if (inet_pton(AF_INET, value, addr) != 1 && inet_pton(AF_INET6, value, addr) != 1)
            return config_error(r, "invalid value for %s: %.200s (expected an IP address)",
                                k->name, value);
        break;
    }
    case CT_PORT:
        if (config_number(value, 65535, &v) < 0 || v == 0)
            return config_error(r, "invalid value for %s: %.200s (expected a port, 1-65535)",
                                k->name, value);
        *(uint16_t *)field = (uint16_t)v;
        return 0;
    case CT_U64:
        if (config_number(value, UINT64_MAX, &v) < 0)
            return config_error(r, "invalid value for %s: %.200s (expected a number of bytes)",
                                k->name, value);
        *(uint64_t *)field = v;
        return 0;
    case CT_U32_NONZERO:
        if (config_number(value, UINT32_MAX, &v) < 0 || v == 0)
            return config_error(r, "invalid value for %s: %.200s (expected a number above 0)",
                                k->name, value);
        *(uint32_t *)field = (uint32_t)v;
        return 0;
    case CT_LIST:
        config_free_list(field);
        if (config_split_list(value, field) < 0)
            return config_error(r, "out of memory");
        return 0;
    case CT_LEVEL:
        if (strcmp(value, "error") != 0 && strcmp(value, "warn") != 0 &&
            strcmp(value, "info") != 0 && strcmp(value, "debug") != 0 &&
            strcmp(value, "trace") != 0)
            return config_error(
                r, "invalid value for %s: %.200s (expected error, warn, info, debug or trace)",
                k->name, value);
        break;
    }
    char **s = field;
    free(*s);
    *s = strdup(value);
    if (*s == NULL)
        return config_error(r, "out of memory");
    return 0;
}

static const char *config_lookup(const struct config_reader *r, const char *key)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->pairs[i].key, key) == 0)
            return r->pairs[i].value;
    return NULL;
}

int config_parse(const char *text, size_t len, const char *origin, struct config **cfg_r,
                 char *err, size_t errlen)
{
    struct config_reader r = {.err = err, .errlen = errlen, .origin = origin};
    struct config *cfg = NULL;
    bool seen_params;
    int rc = -1;

    *cfg_r = NULL;
    if (!config_valid_utf8((const unsigned char *)text, len)) {
        config_error(&r, "not valid UTF-8");
        goto out;
    }
    if (memchr(text, '\0', len) != NULL) {
        config_error(&r, "contains a NUL byte");
        goto out;
    }
    if (config_scan(&r, text, len, &seen_params) < 0)
        goto out;
    if (!seen_params) {
        config_error(&r, "no [params] section");
        goto out;
    }
    cfg = calloc(1, sizeof(*cfg));
    if (cfg == NULL) {
        config_error(&r, "out of memory");
        goto out;
    }
    atomic_init(&cfg->refs, 1);
    for (size_t i = 0; i < NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        const char *value = config_lookup(&r, k->name);
        if (value == NULL)
            value = k->def;
        if (value == NULL && strcmp(k->name, "mailboxes_dir") == 0)
            continue; /* computed below from mail_domain */
        if (value == NULL) {
            config_error(&r, "missing key %s in [params]", k->name);
            goto out;
        }
        if (config_apply(&r, cfg, k, value) < 0)
            goto out;
    }
    if (cfg->mailboxes_dir == NULL) {
        struct buf b;
        buf_init(&b, 4096);
        if (buf_puts(&b, "/home/vmail/mail/") < 0 || buf_puts(&b, cfg->mail_domain) < 0) {
            buf_free(&b);
            config_error(&r, "invalid value for mail_domain: too long");
            goto out;
        }
        cfg->mailboxes_dir = b.data;
    }
    *cfg_r = cfg;
    cfg = NULL;
    rc = 0;
out:
    config_clear_pairs(&r);
    free(r.pairs);
    config_free(&cfg);
    return rc;
}

int config_load(const char *path, struct config **cfg_r, char *err, size_t errlen)
{
    struct config_reader r = {.err = err, .errlen = errlen, .origin = path};
    char *text, why[128];
    size_t len;
    int rc;

    *cfg_r = NULL;
    if (fileio_read(AT_FDCWD, path, 0, CONFIG_MAX_FILE_SIZE, &text, &len, why, sizeof(why)) < 0)
        return config_error(&r, "%s", why);
    rc = config_parse(text, len, path, cfg_r, err, errlen);
    free(text);
    return rc;
}

static const struct config_key *config_key_named(const char *name)
{
    for (size_t j = 0; j < NKEYS; j++)
        if (strcmp(config_keys[j].name, name) == 0)
            return &config_keys[j];
    return NULL;
}

/* True when the type's field is a char * the config owns. */
static bool config_type_is_text(enum config_type t)
{
    return t != CT_PORT && t != CT_U64 && t != CT_U32_NONZERO && t != CT_BOOL && t != CT_LIST;
}

static bool field_equal(const struct config_key *k, const struct config *a,
                        const struct config *b)
{
    const void *x = (const char *)a + k->offset, *y = (const char *)b + k->offset;
    if (config_type_is_text(k->type))
        return strcmp(*(char *const *)x, *(char *const *)y) == 0;
    switch (k->type) {
    case CT_PORT:
        return *(const uint16_t *)x == *(const uint16_t *)y;
    case CT_U64:
        return *(const uint64_t *)x == *(const uint64_t *)y;
    case CT_U32_NONZERO:
        return *(const uint32_t *)x == *(const uint32_t *)y;
    case CT_BOOL:
        return *(const bool *)x == *(const bool *)y;
    case CT_LIST: {
        const struct config_list *l = x, *m = y;
        if (l->n != m->n)
            return false;
        for (size_t i = 0; i < l->n; i++)
            if (strcmp(l->items[i], m->items[i]) != 0)
                return false;
        return true;
    }
    default: /* text, above */
        return false;
    }
}

const char *config_changed(const struct config *a, const struct config *b,
                           const char *const *keys)
{
    for (size_t i = 0; keys[i] != NULL; i++) {
        const struct config_key *k = config_key_named(keys[i]);
        if (k == NULL || !field_equal(k, a, b))
            return keys[i];
    }
    return NULL;
}

/* Frees field k of cfg. */
static void config_free_field(struct config *cfg, const struct config_key *k)
{
    void *field = (char *)cfg + k->offset;
    if (config_type_is_text(k->type)) {
        free(*(char **)field);
        *(char **)field = NULL;
    } else if (k->type == CT_LIST) {
        config_free_list(field);
    }
}

/* Replaces field k of dst with a copy of src's. Returns 0 or -1 (memory). */
static int config_copy_field(struct config *dst, const struct config *src,
                             const struct config_key *k)
{
    void *to = (char *)dst + k->offset;
    const void *from = (const char *)src + k->offset;

    config_free_field(dst, k);
    switch (k->type) {
    case CT_PORT:
        *(uint16_t *)to = *(const uint16_t *)from;
        return 0;
    case CT_U64:
        *(uint64_t *)to = *(const uint64_t *)from;
        return 0;
    case CT_U32_NONZERO:
        *(uint32_t *)to = *(const uint32_t *)from;
        return 0;
    case CT_BOOL:
        *(bool *)to = *(const bool *)from;
        return 0;
    case CT_LIST: {
        const struct config_list *l = from;
        struct config_list *m = to;
        if (l->n == 0)
            return 0;
        m->items = calloc(l->n, sizeof(char *));
        if (m->items == NULL)
            return -1;
        for (; m->n < l->n; m->n++)
            if ((m->items[m->n] = strdup(l->items[m->n])) == NULL)
                return -1;
        return 0;
    }
    default:
        *(char **)to = strdup(*(char *const *)from);
        return *(char **)to == NULL ? -1 : 0;
    }
}

static bool config_in(const char *name, const char *const *names)
{
    for (size_t i = 0; names != NULL && names[i] != NULL; i++)
        if (strcmp(names[i], name) == 0)
            return true;
    return false;
}

int config_reload(const char *path, const struct config *running, enum config_program prog,
                  const char *const *extra_fixed, struct config **new_r,
                  const char **restart_key_r, char *err, size_t errlen)
{
    struct config *n;

    *new_r = NULL;
    *restart_key_r = NULL;
    if (config_load(path, &n, err, errlen) < 0)
        return -1;
    for (size_t i = 0; i < NKEYS; i++) {
        const struct config_key *k = &config_keys[i];
        if (!(k->fixed & prog) && !config_in(k->name, extra_fixed))
            continue;
        if (*restart_key_r == NULL && !field_equal(k, running, n))
            *restart_key_r = k->name;
        if (config_copy_field(n, running, k) < 0) {
            config_free(&n);
            snprintf(err, errlen, "%s: out of memory", path);
            return -1;
        }
    }
    *new_r = n;
    return 0;
}

const struct config *config_ref(const struct config *c)
{
    atomic_fetch_add(&((struct config *)c)->refs, 1);
    return c;
}

void config_release(const struct config **cfg)
{
    struct config *c = (struct config *)*cfg;
    config_free(&c);
    *cfg = NULL;
}

struct config_live {
    pthread_mutex_t lock;
    struct config *cur;
};

struct config_live *config_live_new(struct config *c)
{
    struct config_live *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    pthread_mutex_init(&l->lock, NULL);
    l->cur = c;
    return l;
}

const struct config *config_live_get(struct config_live *l)
{
    const struct config *c;
    pthread_mutex_lock(&l->lock);
    c = config_ref(l->cur);
    pthread_mutex_unlock(&l->lock);
    return c;
}

void config_live_set(struct config_live *l, struct config *c)
{
    struct config *old;
    pthread_mutex_lock(&l->lock);
    old = l->cur;
    l->cur = c;
    pthread_mutex_unlock(&l->lock);
    config_free(&old);
}

void config_live_free(struct config_live **lp)
{
    struct config_live *l = *lp;
    if (l == NULL)
        return;
    config_free(&l->cur);
    pthread_mutex_destroy(&l->lock);
    free(l);
    *lp = NULL;
}

void config_free(struct config **cfgp)
{
    struct config *cfg = *cfgp;
    if (cfg == NULL)
        return;
    *cfgp = NULL;
    if (atomic_fetch_sub(&cfg->refs, 1) > 1)
        return;
    for (size_t i = 0; i < NKEYS; i++)
        config_free_field(cfg, &config_keys[i]);
    free(cfg);
}
