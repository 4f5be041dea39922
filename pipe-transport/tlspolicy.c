/* tlspolicy: the no-STARTTLS exceptions file. */
#include "tlspolicy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "address.h"
#include "array.h"
#include "fileio.h"

struct tls_policy_entry {
    char *domain;      /* lowercase, without the leading dot */
    bool subdomains;   /* ".domain": subdomains only */
    enum tls_policy policy;
};

struct tls_policy_table {
    struct tls_policy_entry *e;
    size_t n, cap;
};

void tls_policy_free(struct tls_policy_table **tp)
{
    struct tls_policy_table *t = *tp;
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->e[i].domain);
    free(t->e);
    free(t);
    *tp = NULL;
}

size_t tls_policy_count(const struct tls_policy_table *t)
{
    return t != NULL ? t->n : 0;
}

static bool space(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* The next whitespace-separated field of [*p, end). */
static bool field(const char **p, const char *end, const char **s_r, size_t *n_r)
{
    const char *s = *p;
    while (s < end && space(*s))
        s++;
    const char *e = s;
    while (e < end && !space(*e))
        e++;
    *p = e;
    *s_r = s;
    *n_r = (size_t)(e - s);
    return e > s;
}

static int add(struct tls_policy_table *t, const char *d, size_t dn, bool sub,
               enum tls_policy policy)
{
    struct tls_policy_entry *e =
        array_grow(t->e, sizeof(*t->e), t->cap, t->n + 1, TLS_POLICY_MAX_ENTRIES, &t->cap);
    if (e == NULL)
        return -1;
    t->e = e;
    char *copy = malloc(dn + 1);
    if (copy == NULL)
        return -1;
    for (size_t i = 0; i < dn; i++)
        copy[i] = (d[i] >= 'A' && d[i] <= 'Z') ? (char)(d[i] - 'A' + 'a') : d[i];
    copy[dn] = '\0';
    t->e[t->n++] = (struct tls_policy_entry){copy, sub, policy};
    return 0;
}

int tls_policy_parse(const char *text, size_t len, const char *origin,
                     struct tls_policy_table **t_r, char *err, size_t errlen)
{
    struct tls_policy_table *t = calloc(1, sizeof(*t));
    const char *p = text, *end = text + len;
    size_t lineno = 0;

    *t_r = NULL;
    if (t == NULL) {
        snprintf(err, errlen, "%s: out of memory", origin);
        return -1;
    }
    if (len > TLS_POLICY_MAX_FILE) {
        snprintf(err, errlen, "%s: larger than %d bytes", origin, TLS_POLICY_MAX_FILE);
        goto fail;
    }
    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "%s: contains a NUL byte", origin);
        goto fail;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl != NULL ? nl : end;
        const char *hash = memchr(p, '#', (size_t)(le - p));
        const char *ce = hash != NULL ? hash : le;
        const char *q = p, *d, *pol, *extra;
        size_t dn, pn, en;

        lineno++;
        if (le - p > TLS_POLICY_LINE_MAX) {
            snprintf(err, errlen, "%s: line %zu: longer than %d bytes", origin, lineno,
                     TLS_POLICY_LINE_MAX);
            goto fail;
        }
        p = nl != NULL ? nl + 1 : end;
        if (!field(&q, ce, &d, &dn))
            continue; /* empty or comment */
        if (!field(&q, ce, &pol, &pn)) {
            snprintf(err, errlen, "%s: line %zu: a domain without a policy", origin, lineno);
            goto fail;
        }
        if (field(&q, ce, &extra, &en)) {
            snprintf(err, errlen, "%s: line %zu: unexpected text after the policy", origin,
                     lineno);
            goto fail;
        }
        enum tls_policy policy;
        if (pn == 11 && memcmp(pol, "no-starttls", 11) == 0) {
            policy = TLS_POLICY_NO_STARTTLS;
        } else {
            snprintf(err, errlen, "%s: line %zu: unknown policy \"%.*s\" (expected no-starttls)",
                     origin, lineno, (int)(pn > 40 ? 40 : pn), pol);
            goto fail;
        }
        bool sub = d[0] == '.';
        if (sub) {
            d++;
            dn--;
        }
        char name[256];
        if (dn == 0 || dn >= sizeof(name)) {
            snprintf(err, errlen, "%s: line %zu: bad domain", origin, lineno);
            goto fail;
        }
        for (size_t i = 0; i < dn; i++)
            name[i] = (d[i] >= 'A' && d[i] <= 'Z') ? (char)(d[i] - 'A' + 'a') : d[i];
        name[dn] = '\0';
        if (!address_domain_name_ok(name)) {
            snprintf(err, errlen, "%s: line %zu: bad domain \"%.*s\"", origin, lineno,
                     (int)(dn > 60 ? 60 : dn), d);
            goto fail;
        }
        if (t->n >= TLS_POLICY_MAX_ENTRIES) {
            snprintf(err, errlen, "%s: more than %d entries", origin, TLS_POLICY_MAX_ENTRIES);
            goto fail;
        }
        if (add(t, name, dn, sub, policy) < 0) {
            snprintf(err, errlen, "%s: out of memory", origin);
            goto fail;
        }
    }
    *t_r = t;
    return 0;
fail:
    tls_policy_free(&t);
    return -1;
}

int tls_policy_load(const char *path, struct tls_policy_table **t_r, char *err, size_t errlen)
{
    char *text, why[128];
    size_t len;
    *t_r = NULL;
    if (fileio_read(AT_FDCWD, path, 0, TLS_POLICY_MAX_FILE, &text, &len, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "%s: %s", path, why);
        return -1;
    }
    int rc = tls_policy_parse(text, len, path, t_r, err, errlen);
    free(text);
    return rc;
}

enum tls_policy tls_policy_lookup(const struct tls_policy_table *t, const char *domain)
{
    size_t dl = strlen(domain), best = 0;
    enum tls_policy found = TLS_POLICY_DEFAULT;
    if (t == NULL)
        return TLS_POLICY_DEFAULT;
    for (size_t i = 0; i < t->n; i++) {
        const struct tls_policy_entry *e = &t->e[i];
        size_t el = strlen(e->domain);
        if (!e->subdomains) {
            if (el == dl && memcmp(e->domain, domain, dl) == 0)
                return e->policy;
        } else if (dl > el && domain[dl - el - 1] == '.' &&
                   memcmp(domain + dl - el, e->domain, el) == 0 && el > best) {
            best = el;
            found = e->policy;
        }
    }
    return found;
}
