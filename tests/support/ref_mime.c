/* ref_mime: literal, non-streaming transcription of upstream's MIME handling
 * (mailparse 0.16 and filtermail's message.rs); see ref_mime.h. */
#include "ref_mime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "qp.h"
#include "ref_armor.h"
#include "rfc2047.h"
#include "utf8.h"

static const char err_space[] =
    "Header cannot start with a space; it is likely an overhanging line from a previous header";
static const char err_cr[] = "Headers were followed by an unexpected lone CR character!";
static const char err_fields[] = "Too many header fields";
static const char err_depth[] = "MIME nesting too deep";
static const char err_parts[] = "Too many MIME parts";

struct hdr {
    const char *k, *v;
    size_t kl, vl;
};

struct ent {
    struct hdr *h;
    size_t nh;
    char *mimetype;
    enum utf8_charset cs;
    bool cs_known;
    bool split; /* multipart with boundary and a body: subparts were searched */
    const char *body;
    size_t bodylen;
    struct ent *sub;
    size_t nsub;
};

struct ctx {
    const struct mime_limits *lim;
    const char *err;
    size_t total_parts;
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL)
        abort();
    return p;
}

/* mailparse parse_header */
static size_t parse_header(const char *raw, size_t len, struct hdr *h)
{
    size_t ix = 0, kend = 0, vs = 0, ve = 0;
    bool have_key = false;
    int st = 1; /* Key (the Initial space check is done by the caller) */
    unsigned char ch = (unsigned char)raw[0];

    for (;;) {
        if (st == 1) {
            if (ch == ':') {
                have_key = true;
                kend = ix;
                st = 2;
            } else if (ch == '\n') {
                have_key = true;
                kend = ix;
                vs = ve = ix;
                ix++;
                break;
            }
        } else if (st == 2) {
            if (ch != ' ') {
                vs = ve = ix;
                st = 3;
                continue;
            }
        } else if (st == 3) {
            if (ch == '\n')
                st = 4;
            else if (ch != '\r')
                ve = ix + 1;
        } else {
            if (ch == ' ' || ch == '\t') {
                st = 3;
                continue;
            }
            break;
        }
        ix++;
        if (ix >= len)
            break;
        ch = (unsigned char)raw[ix];
    }
    h->k = raw;
    if (have_key) {
        h->kl = kend;
        h->v = raw + vs;
        h->vl = ve - vs;
    } else {
        h->kl = ix;
        h->v = raw + ix;
        h->vl = 0;
    }
    return ix;
}

static bool parse_headers(struct ctx *c, const char *raw, size_t len, struct ent *e, size_t *ixb)
{
    size_t ix = 0;

    for (;;) {
        if (ix >= len)
            break;
        if (raw[ix] == '\n') {
            ix++;
            break;
        }
        if (raw[ix] == '\r') {
            if (ix + 1 < len && raw[ix + 1] == '\n') {
                ix += 2;
                break;
            }
            c->err = err_cr;
            return false;
        }
        if (raw[ix] == ' ') {
            c->err = err_space;
            return false;
        }
        if (e->nh >= c->lim->max_header_fields) {
            c->err = err_fields;
            return false;
        }
        e->h = xrealloc(e->h, (e->nh + 1) * sizeof(*e->h));
        ix += parse_header(raw + ix, len - ix, &e->h[e->nh]);
        e->nh++;
    }
    *ixb = ix;
    return true;
}

static const struct hdr *first(const struct ent *e, const char *name)
{
    for (size_t i = 0; i < e->nh; i++)
        if (e->h[i].kl == strlen(name) && strncasecmp(e->h[i].k, name, e->h[i].kl) == 0)
            return &e->h[i];
    return NULL;
}

/* get_first_value with mime.c's bound on the raw value; malloc'd, NUL-ended. */
static char *value(const struct ent *e, const char *name, size_t max, size_t capx, size_t *len_r,
                   bool *trunc_r)
{
    const struct hdr *h = first(e, name);
    size_t vl, cap;
    char *scratch, *out;
    bool t2 = false;

    *trunc_r = false;
    if (h == NULL)
        return NULL;
    vl = h->vl;
    if (vl > max) {
        *trunc_r = true;
        vl = max;
        while (vl > 0 && (h->v[vl - 1] == '\r' || h->v[vl - 1] == '\n'))
            vl--;
    }
    cap = capx ? capx : 3 * vl + 63;
    scratch = xmalloc(RFC2047_SCRATCH(vl));
    out = xmalloc(cap + 1);
    *len_r = rfc2047_decode(h->v, vl, scratch, RFC2047_SCRATCH(vl), out, cap, &t2);
    out[*len_r] = '\0';
    *trunc_r = *trunc_r || t2;
    free(scratch);
    return out;
}

/* ---- parse_param_content / parse_content_type ---- */

struct kv {
    char *k, *v;
};

struct map {
    struct kv *e;
    size_t n;
};

static char *dupn(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static long map_find(const struct map *m, const char *k)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->e[i].k, k) == 0)
            return (long)i;
    return -1;
}

static void map_insert(struct map *m, char *k, char *v)
{
    long i = map_find(m, k);
    if (i >= 0) { /* BTreeMap collect/insert: the later one wins */
        free(m->e[i].v);
        free(k);
        m->e[i].v = v;
        return;
    }
    m->e = xrealloc(m->e, (m->n + 1) * sizeof(*m->e));
    m->e[m->n].k = k;
    m->e[m->n].v = v;
    m->n++;
}

static char *map_remove(struct map *m, const char *k)
{
    long i = map_find(m, k);
    char *v;
    if (i < 0)
        return NULL;
    v = m->e[i].v;
    free(m->e[i].k);
    m->e[i] = m->e[m->n - 1];
    m->n--;
    return v;
}

static void map_free(struct map *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->e[i].k);
        free(m->e[i].v);
    }
    free(m->e);
}

static int hexv(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static char *pct_decode_charset(enum utf8_charset cs, const char *s)
{
    size_t n = strlen(s), t = 0;
    unsigned char *tmp = xmalloc(n + 1);
    char *out;

    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%' && i + 2 < n && hexv(s[i + 1]) >= 0 && hexv(s[i + 2]) >= 0) {
            tmp[t++] = (unsigned char)(hexv(s[i + 1]) << 4 | hexv(s[i + 2]));
            i += 2;
        } else {
            tmp[t++] = (unsigned char)s[i];
        }
    }
    out = xmalloc(3 * t + 1);
    out[utf8_from_charset(cs, tmp, t, out)] = '\0';
    free(tmp);
    return out;
}

static char *enc_prefix(const char *v)
{
    const char *q = strchr(v, '\'');
    return dupn(v, q ? (size_t)(q - v) : strlen(v));
}

static void parse_params(const char *v, size_t n, char **mimetype, struct map *m)
{
    size_t i = 0, start = 0;
    bool inq = false, firsttok = true;

    m->e = NULL;
    m->n = 0;
    for (;;) { /* split_semicolon_aware */
        if (i == n || (!inq && v[i] == ';')) {
            const char *t = v + start;
            size_t tl = i - start;
            if (firsttok) {
                utf8_trim(&t, &tl);
                *mimetype = dupn(t, tl);
                for (char *c = *mimetype; *c; c++)
                    if (*c >= 'A' && *c <= 'Z')
                        *c = (char)(*c + 32);
                firsttok = false;
            } else {
                const char *eq = memchr(t, '=', tl);
                if (eq != NULL) {
                    const char *k = t, *val = eq + 1;
                    size_t kl = (size_t)(eq - t), vl = (size_t)(t + tl - val);
                    utf8_trim(&k, &kl);
                    utf8_trim(&val, &vl);
                    if (vl > 1 && val[0] == '"' && val[vl - 1] == '"') {
                        val++;
                        vl -= 2;
                    }
                    char *kk = dupn(k, kl);
                    for (char *c = kk; *c; c++)
                        if (*c >= 'A' && *c <= 'Z')
                            *c = (char)(*c + 32);
                    map_insert(m, kk, dupn(val, vl));
                }
            }
            if (i == n)
                break;
            start = i + 1;
        } else if (v[i] == '"') {
            inq = !inq;
        }
        i++;
    }
    /* RFC 2231: decode_key_list, encodings, decoding. */
    size_t nd = 0;
    char **dk = xmalloc((m->n + 1) * sizeof(char *));
    for (size_t j = 0; j < m->n; j++) {
        size_t kl = strlen(m->e[j].k);
        if (kl > 0 && m->e[j].k[kl - 1] == '*') {
            char *s = dupn(m->e[j].k, kl - 1);
            if (map_find(m, s) < 0)
                dk[nd++] = s;
            else
                free(s);
        }
    }
    char **enc = xmalloc((nd + 1) * sizeof(char *));
    bool *strip = xmalloc((nd + 1) * sizeof(bool));
    for (size_t j = 0; j < nd; j++)
        enc[j] = NULL;
    for (size_t j = 0; j < nd; j++) {
        size_t kl = strlen(dk[j]);
        char key[4096];
        if (kl + 2 > sizeof(key))
            continue;
        if (kl >= 2 && strcmp(dk[j] + kl - 2, "*0") == 0) {
            memcpy(key, dk[j], kl);
            key[kl] = '*';
            key[kl + 1] = '\0';
            char *e0 = enc_prefix(m->e[map_find(m, key)].v);
            memcpy(key, dk[j], kl - 1); /* "name*" */
            key[kl - 1] = '\0';
            for (size_t x = 0; x < nd; x++) {
                if (strncmp(dk[x], key, kl - 1) == 0) {
                    free(enc[x]);
                    enc[x] = strdup(e0);
                    strip[x] = x == j;
                }
            }
            free(e0);
        } else if (enc[j] == NULL) {
            memcpy(key, dk[j], kl);
            key[kl] = '*';
            key[kl + 1] = '\0';
            enc[j] = enc_prefix(m->e[map_find(m, key)].v);
            strip[j] = true;
        }
    }
    for (size_t j = 0; j < nd; j++) {
        enum utf8_charset cs =
            enc[j] ? utf8_charset_lookup(enc[j], strlen(enc[j])) : UTF8_CS_UNKNOWN;
        if (cs != UTF8_CS_UNKNOWN) {
            size_t kl = strlen(dk[j]);
            char *key = xmalloc(kl + 2);
            memcpy(key, dk[j], kl);
            key[kl] = '*';
            key[kl + 1] = '\0';
            char *pv = map_remove(m, key);
            free(key);
            if (pv != NULL) {
                const char *src = pv;
                if (strip[j]) { /* splitn(3, '\'').nth(2) */
                    const char *q1 = strchr(pv, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
                    src = q2 ? q2 + 1 : "";
                }
                map_insert(m, strdup(dk[j]), pct_decode_charset(cs, src));
                free(pv);
            }
        }
        free(enc[j]);
    }
    free(enc);
    free(strip);
    for (size_t j = 0; j < nd; j++)
        free(dk[j]);
    free(dk);
    /* Unwrap continuations. */
    size_t nu = 0;
    char **uk = xmalloc((m->n + 1) * sizeof(char *));
    for (size_t j = 0; j < m->n; j++) {
        size_t kl = strlen(m->e[j].k);
        if (kl >= 2 && strcmp(m->e[j].k + kl - 2, "*0") == 0) {
            char *b = dupn(m->e[j].k, kl - 2);
            if (map_find(m, b) < 0)
                uk[nu++] = b;
            else
                free(b);
        }
    }
    for (size_t j = 0; j < nu; j++) {
        char *acc = strdup(""), key[4200];
        for (size_t idx = 0;; idx++) {
            size_t bl = strlen(uk[j]);
            if (bl + 24 > sizeof(key))
                break;
            memcpy(key, uk[j], bl);
            key[bl] = '*';
            size_t o = bl + 1, nd2 = 0;
            char digits[24];
            size_t x = idx;
            do {
                digits[nd2++] = (char)('0' + x % 10);
                x /= 10;
            } while (x);
            while (nd2)
                key[o++] = digits[--nd2];
            key[o] = '\0';
            char *part = map_remove(m, key);
            if (part == NULL)
                break;
            size_t al = strlen(acc), pl = strlen(part);
            acc = xrealloc(acc, al + pl + 1);
            memcpy(acc + al, part, pl + 1);
            free(part);
        }
        map_insert(m, uk[j], acc);
    }
    free(uk);
}

/* ---- bodies ---- */

static bool b64sym(unsigned char c, unsigned *v)
{
    if (c >= 'A' && c <= 'Z')
        *v = c - 'A';
    else if (c >= 'a' && c <= 'z')
        *v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
        *v = c - '0' + 52;
    else if (c == '+')
        *v = 62;
    else if (c == '/')
        *v = 63;
    else
        return false;
    return true;
}

/* ASCII whitespace filtered, then data_encoding BASE64_MIME_PERMISSIVE. */
static bool decode_b64_mime(const char *s, size_t n, unsigned char **out, size_t *olen)
{
    char *c = xmalloc(n + 1);
    size_t k = 0, o = 0;

    for (size_t i = 0; i < n; i++)
        if (!(s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\f' || s[i] == '\r'))
            c[k++] = s[i];
    *out = xmalloc(k / 4 * 3 + 1);
    if (k % 4 != 0)
        goto bad;
    for (size_t i = 0; i < k; i += 4) {
        unsigned v[4] = {0, 0, 0, 0}, pad = 0, len;
        while (pad < 4 && c[i + 3 - pad] == '=')
            pad++;
        len = 4 - pad;
        if (pad > 0 && len != 2 && len != 3)
            goto bad;
        for (unsigned j = 0; j < len; j++)
            if (!b64sym((unsigned char)c[i + j], &v[j]))
                goto bad;
        uint32_t w = v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3];
        (*out)[o++] = (unsigned char)(w >> 16);
        if (len >= 3)
            (*out)[o++] = (unsigned char)(w >> 8);
        if (len == 4)
            (*out)[o++] = (unsigned char)w;
    }
    free(c);
    *olen = o;
    return true;
bad:
    free(c);
    free(*out);
    *out = NULL;
    return false;
}

/* quoted_printable::decode(Robust), with mime.c's cap on held whitespace runs. */
static void decode_qp(const char *s, size_t n, unsigned char **out, size_t *olen)
{
    char *f = xmalloc(n + 1);
    size_t k = 0, o = 0, i = 0;
    bool add_break = false, first = true;

    for (size_t j = 0; j < n; j++) {
        unsigned char c = (unsigned char)s[j];
        if (c == '\t' || c == '\r' || c == '\n' || (c >= 0x20 && c <= 0x7E))
            f[k++] = (char)c;
    }
    *out = xmalloc(2 * k + 8);
    while (i < k) {
        const char *lf = memchr(f + i, '\n', k - i);
        size_t end = lf ? (size_t)(lf - f) : k, len = end - i;
        char *line = xmalloc(len + 1);
        size_t ll = 0, run = 0;
        /* lines(): one CR before the LF goes; trim_end; cap whitespace runs */
        memcpy(line, f + i, len);
        if (lf && len > 0 && line[len - 1] == '\r')
            len--;
        while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
            len--;
        for (size_t j = 0; j < len; j++) {
            bool ws = line[j] == ' ' || line[j] == '\t' || line[j] == '\r';
            run = ws ? run + 1 : 0;
            if (ws && run > QP_WS_MAX)
                continue;
            line[ll++] = line[j];
        }
        (void)first;
        first = false;
        if (add_break) {
            (*out)[o++] = '\r';
            (*out)[o++] = '\n';
        }
        add_break = false;
        size_t j = 0;
        for (;;) {
            if (j >= ll) {
                add_break = true;
                break;
            }
            char b = line[j++];
            if (b != '=') {
                (*out)[o++] = (unsigned char)b;
                continue;
            }
            if (j >= ll)
                break; /* soft break */
            char up = line[j++];
            if (j >= ll) {
                (*out)[o++] = '=';
                (*out)[o++] = (unsigned char)up;
                add_break = true;
                break;
            }
            char lo = line[j++];
            if (hexv(up) >= 0 && hexv(lo) >= 0) {
                (*out)[o++] = (unsigned char)(hexv(up) << 4 | hexv(lo));
            } else {
                (*out)[o++] = '=';
                (*out)[o++] = (unsigned char)up;
                (*out)[o++] = (unsigned char)lo;
            }
        }
        free(line);
        i = lf ? end + 1 : k;
    }
    free(f);
    *olen = o;
}

/* get_body(): Ok(UTF-8 text) or Err (NULL). */
static char *get_body(const struct ctx *c, const struct ent *e, size_t *len_r)
{
    size_t cl = 0, dl;
    bool trunc;
    char *cte = value(e, "Content-Transfer-Encoding", c->lim->max_part_header,
                      3 * c->lim->max_part_header + 64, &cl, &trunc);
    unsigned char *dec;
    char *out;

    if (cte != NULL && !trunc && cl == 6 && strncasecmp(cte, "base64", 6) == 0) {
        if (!decode_b64_mime(e->body, e->bodylen, &dec, &dl)) {
            free(cte);
            return NULL;
        }
    } else if (cte != NULL && !trunc && cl == 16 && strncasecmp(cte, "quoted-printable", 16) == 0) {
        decode_qp(e->body, e->bodylen, &dec, &dl);
    } else {
        dec = xmalloc(e->bodylen + 1);
        memcpy(dec, e->body, e->bodylen);
        dl = e->bodylen;
    }
    free(cte);
    out = xmalloc(3 * dl + 1);
    if (e->cs_known) {
        *len_r = utf8_from_charset(e->cs, dec, dl, out);
    } else { /* decode_ascii */
        size_t o = 0;
        for (size_t i = 0; i < dl; i++) {
            if (dec[i] < 0x80) {
                out[o++] = (char)dec[i];
            } else {
                memcpy(out + o, "\xEF\xBF\xBD", 3);
                o += 3;
            }
        }
        *len_r = o;
    }
    out[*len_r] = '\0';
    free(dec);
    return out;
}

/* ---- parse_mail_recursive ---- */

static bool find_prefix(const char *raw, size_t len, size_t from, const char *key, size_t kl,
                        size_t ix_start, size_t *at)
{
    for (size_t i = from; kl <= len && i <= len - kl; i++)
        if (memcmp(raw + i, key, kl) == 0 && (i == ix_start || raw[i - 1] == '\n')) {
            *at = i;
            return true;
        }
    return false;
}

static size_t strip_crlf(const char *raw, size_t start, size_t ix)
{
    if (ix > start && raw[ix - 1] == '\n') {
        ix--;
        if (ix > start && raw[ix - 1] == '\r')
            ix--;
    }
    return ix;
}

static void parse_rec(struct ctx *c, const char *raw, size_t len, size_t depth, bool digest,
                      struct ent *e)
{
    size_t ixb, ctl = 0;
    bool trunc;
    char *ct, *mt = NULL, *bnd = NULL;
    struct map m = {0};

    memset(e, 0, sizeof(*e));
    if (!parse_headers(c, raw, len, e, &ixb))
        return;
    ct = value(e, "Content-Type", depth == 0 ? c->lim->max_header_value : c->lim->max_part_header,
               depth == 0 ? 0 : 3 * c->lim->max_part_header + 64, &ctl, &trunc);
    e->cs = UTF8_CS_1252;
    e->cs_known = true;
    if (ct != NULL) {
        parse_params(ct, ctl, &mt, &m);
        long bi = map_find(&m, "boundary"), ci = map_find(&m, "charset");
        if (bi >= 0 && !trunc)
            bnd = strdup(m.e[bi].v);
        if (ci >= 0) {
            const char *cv = m.e[ci].v;
            e->cs = strlen(cv) > 64 ? UTF8_CS_UNKNOWN : utf8_charset_lookup(cv, strlen(cv));
            e->cs_known = e->cs != UTF8_CS_UNKNOWN;
        }
        map_free(&m);
        free(ct);
    } else {
        mt = strdup(digest ? "message/rfc822" : "text/plain");
    }
    e->mimetype = mt;
    e->body = raw + ixb;
    e->bodylen = len - ixb;
    bool mp = strncmp(mt, "multipart/", 10) == 0 && bnd != NULL &&
              strlen(bnd) <= c->lim->max_boundary && strchr(bnd, '\r') == NULL &&
              strchr(bnd, '\n') == NULL;
    if (mp && depth >= c->lim->max_depth) {
        c->err = err_depth;
        free(bnd);
        return;
    }
    if (mp && len > ixb) {
        bool in_digest = strcmp(mt, "multipart/digest") == 0;
        size_t bl = 2 + strlen(bnd), first_at, bend;
        char *b = xmalloc(bl + 1);
        b[0] = b[1] = '-';
        memcpy(b + 2, bnd, bl - 2);
        e->split = true;
        if (find_prefix(raw, len, ixb, b, bl, ixb, &first_at)) {
            bend = first_at + bl;
            for (;;) {
                const char *lf = bend <= len ? memchr(raw + bend, '\n', len - bend) : NULL;
                size_t ps, pe, nb;
                bool found;
                if (lf == NULL)
                    break;
                ps = (size_t)(lf - raw) + 1;
                found = find_prefix(raw, len, ps, b, bl, ps, &nb);
                pe = found ? strip_crlf(raw, ps, nb) : len;
                if (++c->total_parts > c->lim->max_parts) {
                    c->err = err_parts;
                    break;
                }
                e->sub = xrealloc(e->sub, (e->nsub + 1) * sizeof(*e->sub));
                parse_rec(c, raw + ps, pe - ps, depth + 1, in_digest, &e->sub[e->nsub]);
                e->nsub++;
                if (c->err)
                    break;
                bend = found ? nb + bl : len;
                if (bend + 2 > len || (raw[bend] == '-' && raw[bend + 1] == '-'))
                    break;
            }
        }
        free(b);
    }
    free(bnd);
}

static void free_ent(struct ent *e)
{
    for (size_t i = 0; i < e->nsub; i++)
        free_ent(&e->sub[i]);
    free(e->sub);
    free(e->h);
    free(e->mimetype);
}

static bool trimmed_eq(const char *s, size_t n, const char *want, bool fold)
{
    utf8_trim(&s, &n);
    if (n != strlen(want))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (fold && c >= 'A' && c <= 'Z')
            c = (char)(c + 32);
        if (c != want[i])
            return false;
    }
    return true;
}

static bool check_encrypted(const struct ctx *c, const struct ent *m, bool outgoing)
{
    if (m->nsub == 0 || strcmp(m->mimetype, "multipart/encrypted") != 0)
        return false;
    for (size_t i = 0; i < m->nsub; i++) {
        const struct ent *p = &m->sub[i];
        size_t bl;
        char *body;
        bool ok;
        if (p->nsub != 0)
            return false;
        if (i == 0) {
            if (strcmp(p->mimetype, "application/pgp-encrypted") != 0)
                return false;
            if ((body = get_body(c, p, &bl)) == NULL)
                return false;
            ok = trimmed_eq(body, bl, "Version: 1", false);
            free(body);
            if (!ok)
                return false;
        } else if (i == 1) {
            if (strcmp(p->mimetype, "application/octet-stream") != 0)
                return false;
            if ((body = get_body(c, p, &bl)) == NULL)
                return false;
            ok = ref_armor_check(body, bl, outgoing);
            free(body);
            if (!ok)
                return false;
        } else {
            return false;
        }
    }
    return true;
}

static bool is_securejoin(const struct ctx *c, const struct ent *m, const char *sj, bool sjt)
{
    const struct ent *p;
    size_t bl;
    char *body;
    bool ok;

    if (sj == NULL || sjt || (strcmp(sj, "vc-request") != 0 && strcmp(sj, "vg-request") != 0))
        return false;
    if (m->nsub != 1)
        return false;
    p = &m->sub[0];
    if (p->nsub != 0 || strcmp(p->mimetype, "text/plain") != 0)
        return false;
    if ((body = get_body(c, p, &bl)) == NULL)
        return false;
    ok = trimmed_eq(body, bl, "secure-join: vc-request", true) ||
         trimmed_eq(body, bl, "secure-join: vg-request", true);
    free(body);
    return ok;
}

void ref_mime_check(const char *msg, size_t n, const struct mime_limits *lim, bool outgoing,
                    struct ref_mime_result *r)
{
    static const char *const names[5] = {"From", "Subject", "Secure-Join", "Auto-Submitted",
                                         "Content-Type"};
    struct mime_limits dl;
    struct ctx c = {0};
    struct ent top;

    if (lim == NULL) {
        mime_limits_default(&dl);
        lim = &dl;
    }
    c.lim = lim;
    memset(r, 0, sizeof(*r));
    parse_rec(&c, msg, n, 0, false, &top);
    r->parse_error = c.err;
    for (size_t i = 0; i < top.nh; i++)
        if (top.h[i].kl == 4 && strncasecmp(top.h[i].k, "From", 4) == 0)
            r->from_count++;
    for (int i = 0; i < 5; i++)
        r->values[i] =
            value(&top, names[i], lim->max_header_value, 0, &r->value_lens[i], &r->value_trunc[i]);
    r->mimetype = strdup(top.mimetype ? top.mimetype : "text/plain");
    r->multipart = top.split;
    r->nparts = top.nsub;
    if (c.err == NULL && top.mimetype != NULL) {
        r->encrypted = check_encrypted(&c, &top, outgoing);
        r->securejoin = is_securejoin(&c, &top, r->values[2], r->value_trunc[2]);
    }
    free_ent(&top);
}

void ref_mime_free(struct ref_mime_result *r)
{
    free(r->mimetype);
    for (int i = 0; i < 5; i++)
        free(r->values[i]);
}
