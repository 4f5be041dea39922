/* mime: streaming message analyser (spec 4.1-4.5); see mime.h.
 *
 * mailparse splits a message recursively: an entity's header block ends at the
 * first empty line; if it is multipart, its body is cut at lines starting with
 * "--boundary", one newline before a delimiter belonging to the delimiter, and
 * each part is parsed the same way. The streaming version keeps a stack of the
 * entities the current position is inside (the top level, its current part,
 * that part's current part, ...). Line starts are the only places where
 * anything structural happens, and only lines starting with "--" can be
 * delimiters, so the body path scans for "\n--" and hands whole spans to the
 * innermost entity. The newline before such a line is held back until the line
 * is classified: a delimiter of an enclosing entity strips it, anything else
 * delivers it as content.
 *
 * What mailparse does after a delimiter depends on the bytes after it within
 * the entity (see parse_mail_recursive): the first delimiter only needs a
 * newline; later ones end the list when followed by "--" or by fewer than two
 * bytes before the entity ends. Mode M_DLINE counts those bytes, and M_DMAYBE
 * waits for the one byte that decides the case "--b\n" + end.
 *
 * The bodies of the top level's parts are decoded (base64, quoted-printable)
 * and handed to the check they need: the "Version: 1" matcher, the armor
 * checker or the securejoin matcher. Everything is bounded by mime_limits.
 *
 * Where this differs from upstream, on purpose (tests/support/ref_mime.c
 * applies the same rules, so the differential fuzzer holds it to them):
 *  - limits: more header fields, deeper nesting or more parts than the limits
 *    allow is a parse error; a boundary longer than max_boundary, or holding
 *    CR or LF (mailparse could match such a delimiter across lines), makes
 *    the entity single-part; a truncated Content-Type value gives no boundary;
 *  - charsets: bodies are checked as bytes; the whitespace trimmed around
 *    "Version: 1" and the securejoin line includes U+00A0 and the other
 *    Unicode spaces only for UTF-8 and windows-1252 (us-ascii, latin1, the
 *    default); other charsets only trim ASCII whitespace;
 *  - RFC 2047 words and RFC 2231 parameters decode UTF-8 and windows-1252
 *    only; words in other charsets stay as they are;
 *  - quoted-printable keeps at most QP_WS_MAX bytes of a whitespace run that
 *    is followed by more text on its line (see qp.h). */
#include "mime.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base64.h"
#include "qp.h"
#include "rfc2047.h"
#include "utf8.h"

static const char err_space[] =
    "Header cannot start with a space; it is likely an overhanging line from a previous header";
static const char err_cr[] = "Headers were followed by an unexpected lone CR character!";
static const char err_fields[] = "Too many header fields";
static const char err_depth[] = "MIME nesting too deep";
static const char err_parts[] = "Too many MIME parts";

/* Room for RFC 2231 percent-decoding into a cap-byte output. */
#define PCT_SCRATCH(cap) (8 * (cap) + 64)

/* Top-level header values the policy reads. */
enum { TOP_FROM, TOP_SUBJECT, TOP_SJ, TOP_AUTOSUB, TOP_CTYPE, NTOP };
static const char *const top_names[NTOP] = {"From", "Subject", "Secure-Join", "Auto-Submitted",
                                            "Content-Type"};
/* MIME part header values. */
enum { PART_CTYPE, PART_CTE, NPART };
static const char *const part_names[NPART] = {"Content-Type", "Content-Transfer-Encoding"};

/* A header value as it arrives: bytes after the skipped spaces, up to the last
 * byte that is not CR or LF. */
struct rawval {
    char *buf;
    size_t max, len, real;
    bool present, truncated;
};

enum hstate { H_START, H_CR, H_KEY, H_PREVALUE, H_VALUE, H_VALNL };

/* Entity modes. */
enum {
    M_HEAD,   /* in the header block */
    M_LEAF,   /* body of a non-multipart entity */
    M_PRE,    /* multipart body before the first delimiter */
    M_DLINE,  /* the rest of a delimiter line */
    M_DMAYBE, /* after "--b\n": a part follows if one more byte does */
    M_PART,   /* a part is open (it is the next entity on the stack) */
    M_EPI,    /* after the closing delimiter */
};

struct entity {
    int mode;
    bool multipart;
    bool seen_delim;
    bool dl_first;
    unsigned char dl2[2];
    uint64_t dl_count;
    size_t nparts;
    char *bnd; /* max_boundary bytes, preallocated */
    size_t blen;
};

/* What a part of the top level is checked for. */
enum { R_NONE, R_VERSION, R_ARMOR, R_SJ };
enum { CTE_RAW, CTE_B64, CTE_QP };
enum { CS_OTHER, CS_UTF8, CS_1252 };

/* trim().to_lowercase() == pattern, on a stream of bytes. */
struct matcher {
    const char *pat;
    size_t plen, pos;
    bool fold;
    int cs;
    int st; /* 0 leading whitespace, 1 in the pattern, 2 trailing, 3 failed */
    unsigned char mb[3];
    size_t mblen;
};

struct mime_parser {
    struct mime_limits lim;
    enum armor_direction dir;

    /* input handling */
    char *carry;
    size_t carry_len, carry_cap, tailmax;
    bool at_line_start;
    char held[2];
    size_t held_len;
    bool skip_all;
    const char *error;
    bool internal_error;

    /* entity stack */
    struct entity *ent;
    size_t depth, nent;
    size_t total_parts;

    /* header block being parsed */
    enum hstate hst;
    char key[32];
    size_t klen;
    bool kover;
    size_t fields;
    struct rawval *cur;

    struct rawval top[NTOP];
    struct rawval part[NPART];
    size_t from_count;
    bool top_headers_done;
    bool top_body_seen;

    /* decoded top-level values and the top mimetype */
    char *arena;
    size_t arena_cap;
    struct mime_header dec[NTOP];
    const char *mimetype;
    char *mimetype_buf;
    char *scratch;
    size_t scratch_cap;
    char *pscratch; /* PCT_SCRATCH(max(max_boundary, 64)) for RFC 2231 values */
    char *pdec;     /* decoded part Content-Type and Content-Transfer-Encoding */
    size_t pdec_cap;

    /* the top level's verdict state */
    bool top_enc;    /* top mimetype is multipart/encrypted */
    bool top_digest; /* top mimetype is multipart/digest */
    bool enc_ok;     /* no part has ruled it out yet */
    bool sj_hdr;     /* Secure-Join header is vc-request or vg-request */
    bool sj_part_ok; /* part 1 passed the securejoin checks */

    /* the current part of the top level */
    int role, cte;
    bool role_ok;
    struct base64_dec b64;
    struct qp_dec qp;
    struct matcher m;
    struct armor_checker armor;
};

/* ------------------------------------------------------------------------ */
/* Allocation */

void mime_limits_default(struct mime_limits *l)
{
    l->max_header_value = 16384;
    l->max_header_fields = 10000;
    l->max_part_header = 4096;
    l->max_boundary = 200;
    l->max_depth = 32;
    l->max_parts = 10000;
}

/* Grows *buf to at least need bytes; false when out of memory. */
static bool grow(char **buf, size_t *cap, size_t need)
{
    char *n;

    if (*cap >= need)
        return true;
    n = realloc(*buf, need);
    if (n == NULL)
        return false;
    *buf = n;
    *cap = need;
    return true;
}

struct mime_parser *mime_parser_new(const struct mime_limits *limits, enum armor_direction dir)
{
    struct mime_parser *p = calloc(1, sizeof(*p));
    size_t bsz;

    if (p == NULL)
        return NULL;
    if (limits != NULL)
        p->lim = *limits;
    else
        mime_limits_default(&p->lim);
    if (p->lim.max_depth < 1)
        p->lim.max_depth = 1;
    p->nent = p->lim.max_depth + 1;
    p->tailmax = p->lim.max_boundary + 4;
    p->carry_cap = 2 * p->tailmax + 8;
    p->ent = calloc(p->nent, sizeof(*p->ent));
    p->carry = malloc(p->carry_cap);
    bsz = p->lim.max_boundary + 1;
    for (size_t i = 0; p->ent != NULL && i < p->nent; i++)
        if ((p->ent[i].bnd = malloc(bsz)) == NULL)
            goto fail;
    for (int i = 0; i < NTOP; i++) {
        p->top[i].max = p->lim.max_header_value;
        if ((p->top[i].buf = malloc(p->top[i].max + 1)) == NULL)
            goto fail;
    }
    for (int i = 0; i < NPART; i++) {
        p->part[i].max = p->lim.max_part_header;
        if ((p->part[i].buf = malloc(p->part[i].max + 1)) == NULL)
            goto fail;
    }
    p->pscratch = malloc(PCT_SCRATCH(p->lim.max_boundary > 64 ? p->lim.max_boundary : 64));
    if (p->ent == NULL || p->carry == NULL || p->pscratch == NULL)
        goto fail;
    mime_parser_reset(p, dir);
    return p;
fail:
    mime_parser_free(&p);
    return NULL;
}

void mime_parser_free(struct mime_parser **pp)
{
    struct mime_parser *p = *pp;

    if (p == NULL)
        return;
    for (size_t i = 0; p->ent != NULL && i < p->nent; i++)
        free(p->ent[i].bnd);
    free(p->ent);
    for (int i = 0; i < NTOP; i++)
        free(p->top[i].buf);
    for (int i = 0; i < NPART; i++)
        free(p->part[i].buf);
    free(p->carry);
    free(p->arena);
    free(p->scratch);
    free(p->pdec);
    free(p->pscratch);
    free(p);
    *pp = NULL;
}

static void rawval_reset(struct rawval *v)
{
    v->len = v->real = 0;
    v->present = v->truncated = false;
}

static void entity_init(struct entity *e)
{
    e->mode = M_HEAD;
    e->multipart = false;
    e->seen_delim = false;
    e->dl_first = false;
    e->dl_count = 0;
    e->nparts = 0;
    e->blen = 0;
}

static void header_block_start(struct mime_parser *p)
{
    p->hst = H_START;
    p->fields = 0;
    p->cur = NULL;
}

void mime_parser_reset(struct mime_parser *p, enum armor_direction dir)
{
    p->dir = dir;
    p->carry_len = 0;
    p->at_line_start = true;
    p->held_len = 0;
    p->skip_all = false;
    p->error = NULL;
    p->internal_error = false;
    p->depth = 0;
    p->total_parts = 0;
    entity_init(&p->ent[0]);
    header_block_start(p);
    for (int i = 0; i < NTOP; i++) {
        rawval_reset(&p->top[i]);
        p->dec[i] = (struct mime_header){0};
    }
    for (int i = 0; i < NPART; i++)
        rawval_reset(&p->part[i]);
    p->from_count = 0;
    p->top_headers_done = false;
    p->top_body_seen = false;
    p->mimetype = "text/plain";
    p->top_enc = p->top_digest = p->enc_ok = p->sj_hdr = p->sj_part_ok = false;
    p->role = R_NONE;
}

/* ------------------------------------------------------------------------ */
/* Header values */

static void rawval_put(struct rawval *v, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        bool real = s[i] != '\r' && s[i] != '\n';
        if (v->len < v->max) {
            v->buf[v->len++] = s[i];
            if (real)
                v->real = v->len;
        } else if (real) {
            v->truncated = true;
        }
    }
}

static void rawval_done(struct rawval *v)
{
    v->len = v->real;
}

/* Decodes a raw value (RFC 2047 etc.) into out (cap bytes), using the scratch
 * buffer. Returns false when out of memory. */
static bool decode_value(struct mime_parser *p, const struct rawval *v, char *out, size_t cap,
                         size_t *len_r, bool *trunc_r)
{
    bool trunc = false;

    if (!grow(&p->scratch, &p->scratch_cap, RFC2047_SCRATCH(v->len))) {
        p->internal_error = true;
        return false;
    }
    *len_r = rfc2047_decode(v->buf, v->len, p->scratch, p->scratch_cap, out, cap, &trunc);
    *trunc_r = trunc || v->truncated;
    return true;
}

/* ------------------------------------------------------------------------ */
/* Content-Type (mailparse parse_content_type, with RFC 2231) */

/* A parameter token of value[0..n): key and value after trimming and quote
 * removal. Returns false at the end. *pos walks the ';'-separated tokens,
 * skipping the first (the mimetype). Quoted strings do not split. */
static bool next_param(const char *v, size_t n, size_t *pos, const char **key, size_t *klen,
                       const char **val, size_t *vlen)
{
    for (;;) {
        size_t start = *pos, i = start;
        bool inq = false;

        if (start > n)
            return false;
        while (i < n && (inq || v[i] != ';')) {
            if (v[i] == '"')
                inq = !inq;
            i++;
        }
        *pos = i + 1;
        if (start == 0)
            continue; /* the mimetype */
        const char *eq = memchr(v + start, '=', i - start);
        if (eq == NULL)
            continue;
        *key = v + start;
        *klen = (size_t)(eq - *key);
        utf8_trim(key, klen);
        *val = eq + 1;
        *vlen = (size_t)(v + i - *val);
        utf8_trim(val, vlen);
        if (*vlen > 1 && (*val)[0] == '"' && (*val)[*vlen - 1] == '"') {
            (*val)++;
            *vlen -= 2;
        }
        return true;
    }
}

/* The last parameter named name (ASCII case-insensitive). */
static bool param_last(const char *v, size_t n, const char *name, size_t nlen, const char **val,
                       size_t *vlen)
{
    size_t pos = 0, klen, l;
    const char *k, *x;
    bool found = false;

    while (next_param(v, n, &pos, &k, &klen, &x, &l)) {
        if (klen == nlen && strncasecmp(k, name, nlen) == 0) {
            *val = x;
            *vlen = l;
            found = true;
        }
    }
    return found;
}

/* Whether any parameter key starts with name followed by '*'. */
static bool param_starred(const char *v, size_t n, const char *name, size_t nlen)
{
    size_t pos = 0, klen, l;
    const char *k, *x;

    while (next_param(v, n, &pos, &k, &klen, &x, &l))
        if (klen > nlen && k[nlen] == '*' && strncasecmp(k, name, nlen) == 0)
            return true;
    return false;
}

/* Appends bytes to a bounded output; false when it does not fit. */
struct obuf {
    char *p;
    size_t len, cap;
    bool over;
};

static void ob_put(struct obuf *o, const char *s, size_t n)
{
    if (n > o->cap - o->len) {
        o->over = true;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

/* mailparse percent_decode, then the charset, appended to o. The scratch area
 * (PCT_SCRATCH(o->cap) bytes) holds the bytes; a value too long to fit o
 * whatever its charset marks o as overflowed. */
static void pct_charset(struct obuf *o, enum utf8_charset cs, const char *s, size_t n,
                        char *scratch)
{
    size_t lim = 2 * (o->cap - o->len) + 16, t = 0;
    unsigned char *tmp = (unsigned char *)scratch;
    char *conv = scratch + lim;

    for (size_t i = 0; i < n; i++) {
        unsigned char b = (unsigned char)s[i];
        if (b == '%' && i + 2 < n && qp_hexval((unsigned char)s[i + 1]) >= 0 &&
            qp_hexval((unsigned char)s[i + 2]) >= 0) {
            b = (unsigned char)(qp_hexval((unsigned char)s[i + 1]) << 4 |
                                qp_hexval((unsigned char)s[i + 2]));
            i += 2;
        }
        if (t == lim) { /* at least 3/4 byte comes out per byte in: too long */
            o->over = true;
            return;
        }
        tmp[t++] = b;
    }
    ob_put(o, conv, utf8_from_charset(cs, tmp, t, conv));
}

/* The part of an RFC 2231 value after "charset'language'". */
static void after_quotes(const char *s, size_t n, const char **r, size_t *rn)
{
    const char *q1 = memchr(s, '\'', n), *q2;

    *r = s + n;
    *rn = 0;
    if (q1 == NULL)
        return;
    q2 = memchr(q1 + 1, '\'', (size_t)(s + n - q1 - 1));
    if (q2 == NULL)
        return;
    *r = q2 + 1;
    *rn = (size_t)(s + n - *r);
}

static enum utf8_charset enc_of(const char *s, size_t n)
{
    const char *q = memchr(s, '\'', n);
    return utf8_charset_lookup(s, q ? (size_t)(q - s) : n);
}

static size_t put_name(char *buf, const char *base, size_t blen, size_t idx, bool star)
{
    char digits[24];
    size_t nd = 0, o = 0;

    memcpy(buf, base, blen);
    o = blen;
    buf[o++] = '*';
    do {
        digits[nd++] = (char)('0' + idx % 10);
        idx /= 10;
    } while (idx > 0);
    while (nd > 0)
        buf[o++] = digits[--nd];
    if (star)
        buf[o++] = '*';
    return o;
}

/* A parameter after mailparse's RFC 2231 handling; false when absent. */
static bool param_get(const char *v, size_t n, const char *name, struct obuf *o, char *scratch)
{
    size_t nl = strlen(name), vl, kl;
    const char *x;
    char key[64];

    if (nl + 24 > sizeof(key))
        return false;
    if (param_last(v, n, name, nl, &x, &vl)) {
        ob_put(o, x, vl);
        return true;
    }
    memcpy(key, name, nl);
    key[nl] = '*';
    if (!param_starred(v, n, name, nl))
        return false;
    if (param_last(v, n, key, nl + 1, &x, &vl)) {
        enum utf8_charset cs = enc_of(x, vl);
        if (cs != UTF8_CS_UNKNOWN) {
            const char *r;
            size_t rn;
            after_quotes(x, vl, &r, &rn);
            pct_charset(o, cs, r, rn, scratch);
            return true;
        }
    }
    /* Continuations name*0, name*1, ... */
    const char *x0;
    size_t v0;
    bool plain0 = param_last(v, n, key, put_name(key, name, nl, 0, false), &x0, &v0);
    bool cont = !plain0 && param_last(v, n, key, put_name(key, name, nl, 0, true), &x0, &v0);
    enum utf8_charset cs0 = cont ? enc_of(x0, v0) : UTF8_CS_UNKNOWN;
    size_t idx;
    for (idx = 0;; idx++) {
        kl = put_name(key, name, nl, idx, false);
        if (param_last(v, n, key, kl, &x, &vl)) {
            ob_put(o, x, vl);
            continue;
        }
        kl = put_name(key, name, nl, idx, true);
        if (!param_last(v, n, key, kl, &x, &vl))
            break;
        enum utf8_charset cs = cont ? cs0 : enc_of(x, vl);
        if (cs == UTF8_CS_UNKNOWN)
            break;
        if (!cont || idx == 0) {
            const char *r;
            size_t rn;
            after_quotes(x, vl, &r, &rn);
            pct_charset(o, cs, r, rn, scratch);
        } else {
            pct_charset(o, cs, x, vl, scratch);
        }
    }
    return idx > 0;
}

struct ctype {
    const char *mt; /* trimmed, not lowercased */
    size_t mtlen;
    bool has_boundary, boundary_ok;
    int cs;
};

static bool ascii_ieq(const char *a, size_t n, const char *b)
{
    return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

/* Parses a decoded Content-Type value; the boundary goes to bnd (cap bytes). */
static void parse_ctype(const char *v, size_t n, char *bnd, size_t cap, size_t *blen,
                        struct ctype *ct, char *scratch)
{
    size_t i = 0;
    bool inq = false;
    char csbuf[64];
    struct obuf ob = {.p = bnd, .cap = cap}, cb = {.p = csbuf, .cap = sizeof(csbuf)};

    while (i < n && (inq || v[i] != ';')) {
        if (v[i] == '"')
            inq = !inq;
        i++;
    }
    ct->mt = v;
    ct->mtlen = i;
    utf8_trim(&ct->mt, &ct->mtlen);
    ct->has_boundary = param_get(v, n, "boundary", &ob, scratch);
    *blen = ob.len;
    ct->boundary_ok = ct->has_boundary && !ob.over && memchr(bnd, '\r', ob.len) == NULL &&
                      memchr(bnd, '\n', ob.len) == NULL;
    ct->cs = CS_1252; /* "us-ascii" */
    if (param_get(v, n, "charset", &cb, scratch)) {
        enum utf8_charset c = cb.over ? UTF8_CS_UNKNOWN : utf8_charset_lookup(csbuf, cb.len);
        ct->cs = c == UTF8_CS_UTF8 ? CS_UTF8 : c == UTF8_CS_1252 ? CS_1252 : CS_OTHER;
    }
}

static bool mt_multipart(const struct ctype *ct)
{
    return ct->mtlen >= 10 && strncasecmp(ct->mt, "multipart/", 10) == 0;
}

/* ------------------------------------------------------------------------ */
/* Body matchers: "Version: 1" and "secure-join: v[cg]-request" */

static void matcher_init(struct matcher *m, const char *pat, bool fold, int cs)
{
    m->pat = pat;
    m->plen = strlen(pat);
    m->pos = 0;
    m->fold = fold;
    m->cs = cs;
    m->st = 0;
    m->mblen = 0;
}

static bool ascii_ws(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r');
}

/* Whitespace of more than one byte: 0 not whitespace, 1 a proper prefix,
 * 2 complete. */
static int mb_ws(int cs, const unsigned char *b, size_t n)
{
    static const unsigned char seqs[][3] = {
        {0xC2, 0x85, 0},    {0xC2, 0xA0, 0},    {0xE1, 0x9A, 0x80}, {0xE2, 0x80, 0x80},
        {0xE2, 0x80, 0x81}, {0xE2, 0x80, 0x82}, {0xE2, 0x80, 0x83}, {0xE2, 0x80, 0x84},
        {0xE2, 0x80, 0x85}, {0xE2, 0x80, 0x86}, {0xE2, 0x80, 0x87}, {0xE2, 0x80, 0x88},
        {0xE2, 0x80, 0x89}, {0xE2, 0x80, 0x8A}, {0xE2, 0x80, 0xA8}, {0xE2, 0x80, 0xA9},
        {0xE2, 0x80, 0xAF}, {0xE2, 0x81, 0x9F}, {0xE3, 0x80, 0x80},
    };

    if (cs == CS_1252)
        return n == 1 && b[0] == 0xA0 ? 2 : 0;
    if (cs != CS_UTF8)
        return 0;
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        size_t len = seqs[i][2] ? 3 : 2;
        if (n <= len && memcmp(seqs[i], b, n) == 0)
            return n == len ? 2 : 1;
    }
    return 0;
}

/* Whitespace around the pattern; false when the byte is not whitespace. */
static bool matcher_ws(struct matcher *m, unsigned char c)
{
    if (m->mblen == 0 && ascii_ws(c))
        return true;
    if (c < 0x80 && m->mblen == 0)
        return false;
    if (m->mblen >= sizeof(m->mb))
        return false;
    m->mb[m->mblen++] = c;
    switch (mb_ws(m->cs, m->mb, m->mblen)) {
    case 2:
        m->mblen = 0;
        return true;
    case 1:
        return true;
    default:
        return false;
    }
}

static void matcher_feed(struct matcher *m, const char *s, size_t n)
{
    for (size_t i = 0; i < n && m->st != 3; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (m->st) {
        case 0:
            if (matcher_ws(m, c))
                break;
            if (m->mblen > 0) {
                m->st = 3;
                break;
            }
            m->st = 1;
            /* fall through */
        case 1: {
            char want = m->pat[m->pos];
            char got = (char)(m->fold && c >= 'A' && c <= 'Z' ? c + 32 : c);
            bool ok = want == '*' ? (got == 'c' || got == 'g') : got == want;
            if (!ok) {
                m->st = 3;
                break;
            }
            if (++m->pos == m->plen)
                m->st = 2;
            break;
        }
        case 2:
            if (!matcher_ws(m, c))
                m->st = 3;
            break;
        }
    }
}

static bool matcher_finish(const struct matcher *m)
{
    return m->st == 2 && m->mblen == 0;
}

/* ------------------------------------------------------------------------ */
/* The current top-level part's body */

static void consume(struct mime_parser *p, const char *s, size_t n)
{
    switch (p->role) {
    case R_VERSION:
    case R_SJ:
        matcher_feed(&p->m, s, n);
        if (p->m.st == 3)
            p->role_ok = false;
        break;
    case R_ARMOR:
        armor_push(&p->armor, s, n);
        if (armor_failed(&p->armor))
            p->role_ok = false;
        break;
    }
}

static void body_feed(struct mime_parser *p, const char *s, size_t n)
{
    if (p->role == R_NONE || !p->role_ok)
        return;
    if (p->cte == CTE_RAW) {
        consume(p, s, n);
        return;
    }
    while (n > 0 && p->role_ok) {
        size_t take = n < 4096 ? n : 4096;
        char out[QP_OUT_MAX(4096)];
        size_t got;
        if (p->cte == CTE_B64) {
            got = base64_decode(&p->b64, s, take, (unsigned char *)out);
            if (base64_failed(&p->b64))
                p->role_ok = false;
        } else {
            got = qp_decode(&p->qp, s, take, out);
        }
        consume(p, out, got);
        s += take;
        n -= take;
    }
}

static bool body_finish(struct mime_parser *p)
{
    char out[QP_OUT_MAX(0)];

    if (p->role == R_NONE || !p->role_ok)
        return false;
    if (p->cte == CTE_B64 && !base64_finish(&p->b64))
        return false;
    if (p->cte == CTE_QP)
        consume(p, out, qp_finish(&p->qp, out));
    if (!p->role_ok)
        return false;
    switch (p->role) {
    case R_VERSION:
    case R_SJ:
        return matcher_finish(&p->m);
    case R_ARMOR:
        return armor_finish(&p->armor);
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Entities */

static struct entity *top_ent(struct mime_parser *p)
{
    return &p->ent[p->depth];
}

static void set_error(struct mime_parser *p, const char *e)
{
    if (p->error == NULL)
        p->error = e;
}

/* Decodes the top-level values once the top header block is complete, and
 * reads the top-level Content-Type. */
static void decode_top(struct mime_parser *p)
{
    size_t need = 0, off = 0;

    if (p->top_headers_done)
        return;
    p->top_headers_done = true;
    for (int i = 0; i < NTOP; i++)
        if (p->top[i].present)
            need += 3 * p->top[i].len + 64;
    need += 3 * p->top[TOP_CTYPE].len + 64; /* the lowercased mimetype */
    if (!grow(&p->arena, &p->arena_cap, need)) {
        p->internal_error = true;
        return;
    }
    for (int i = 0; i < NTOP; i++) {
        size_t len, cap = 3 * p->top[i].len + 64;
        bool trunc;
        if (!p->top[i].present)
            continue;
        if (!decode_value(p, &p->top[i], p->arena + off, cap - 1, &len, &trunc))
            return;
        p->arena[off + len] = '\0';
        p->dec[i].value = p->arena + off;
        p->dec[i].len = len;
        p->dec[i].truncated = trunc;
        off += cap;
    }
    p->mimetype_buf = p->arena + off;
}

/* The header block of the innermost entity ended (or its data did). */
static void header_end(struct mime_parser *p)
{
    struct entity *e = top_ent(p);
    struct ctype ct = {.mt = "text/plain", .mtlen = 10, .cs = CS_1252};
    size_t blen = 0;
    bool multipart;

    if (p->depth == 0) {
        const struct mime_header *h = &p->dec[TOP_CTYPE];
        decode_top(p);
        if (p->internal_error)
            return;
        if (h->value != NULL) {
            parse_ctype(h->value, h->len, e->bnd, p->lim.max_boundary, &blen, &ct, p->pscratch);
            if (h->truncated)
                ct.boundary_ok = false;
            for (size_t i = 0; i < ct.mtlen; i++) {
                char c = ct.mt[i];
                p->mimetype_buf[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
            }
            p->mimetype_buf[ct.mtlen] = '\0';
            p->mimetype = p->mimetype_buf;
        }
        p->top_enc = strcmp(p->mimetype, "multipart/encrypted") == 0;
        p->top_digest = strcmp(p->mimetype, "multipart/digest") == 0;
        p->enc_ok = p->top_enc;
        const struct mime_header *sj = &p->dec[TOP_SJ];
        p->sj_hdr =
            sj->value != NULL && !sj->truncated && sj->len == 10 &&
            (memcmp(sj->value, "vc-request", 10) == 0 || memcmp(sj->value, "vg-request", 10) == 0);
    } else {
        size_t cap = 3 * p->lim.max_part_header + 64, len[NPART] = {0};
        bool trunc[NPART] = {false};
        if (p->depth == 1 && p->top_digest) { /* mailparse's default in a digest */
            ct.mt = "message/rfc822";
            ct.mtlen = 14;
        }
        if (!grow(&p->pdec, &p->pdec_cap, 2 * cap)) {
            p->internal_error = true;
            return;
        }
        for (int i = 0; i < NPART; i++)
            if (p->part[i].present &&
                !decode_value(p, &p->part[i], p->pdec + i * cap, cap, &len[i], &trunc[i]))
                return;
        if (p->part[PART_CTYPE].present) {
            parse_ctype(p->pdec, len[PART_CTYPE], e->bnd, p->lim.max_boundary, &blen, &ct,
                        p->pscratch);
            if (trunc[PART_CTYPE])
                ct.boundary_ok = false;
        }
        p->cte = CTE_RAW;
        if (p->part[PART_CTE].present && !trunc[PART_CTE]) {
            const char *v = p->pdec + cap;
            if (ascii_ieq(v, len[PART_CTE], "base64"))
                p->cte = CTE_B64;
            else if (ascii_ieq(v, len[PART_CTE], "quoted-printable"))
                p->cte = CTE_QP;
        }
    }
    multipart = mt_multipart(&ct) && ct.boundary_ok;
    if (multipart && p->depth >= p->lim.max_depth) {
        set_error(p, err_depth);
        return;
    }
    e->multipart = multipart;
    e->blen = blen;
    e->mode = multipart ? M_PRE : M_LEAF;
    if (p->depth == 0 && !multipart)
        p->skip_all = true; /* nothing in a single-part body matters */
    if (p->depth != 1)
        return;

    /* A part of the top level: what it is checked for. */
    size_t idx = p->ent[0].nparts;
    p->role = R_NONE;
    p->role_ok = true;
    if (p->top_enc && p->enc_ok) {
        if (idx == 1 && !multipart && ascii_ieq(ct.mt, ct.mtlen, "application/pgp-encrypted"))
            p->role = R_VERSION;
        else if (idx == 2 && !multipart && ascii_ieq(ct.mt, ct.mtlen, "application/octet-stream"))
            p->role = R_ARMOR;
        else
            p->enc_ok = false;
    }
    if (p->sj_hdr && idx == 1 && !multipart && ascii_ieq(ct.mt, ct.mtlen, "text/plain"))
        p->role = R_SJ;
    switch (p->role) {
    case R_VERSION:
        matcher_init(&p->m, "Version: 1", false, ct.cs);
        break;
    case R_SJ:
        matcher_init(&p->m, "secure-join: v*-request", true, ct.cs);
        break;
    case R_ARMOR:
        armor_init(&p->armor, p->dir);
        break;
    }
    base64_init(&p->b64, BASE64_MIME);
    qp_init(&p->qp);
}

static void key_done(struct mime_parser *p)
{
    p->cur = NULL;
    if (p->kover)
        return;
    if (p->depth == 0) {
        for (int i = 0; i < NTOP; i++) {
            if (!ascii_ieq(p->key, p->klen, top_names[i]))
                continue;
            if (i == TOP_FROM)
                p->from_count++;
            if (!p->top[i].present) {
                p->top[i].present = true;
                p->cur = &p->top[i];
            }
            return;
        }
    } else {
        for (int i = 0; i < NPART; i++) {
            if (!ascii_ieq(p->key, p->klen, part_names[i]))
                continue;
            if (!p->part[i].present) {
                p->part[i].present = true;
                p->cur = &p->part[i];
            }
            return;
        }
    }
}

static void value_done(struct mime_parser *p)
{
    if (p->cur != NULL)
        rawval_done(p->cur);
    p->cur = NULL;
}

/* The header block's data ended without an empty line. */
static void hdr_eof(struct mime_parser *p)
{
    switch (p->hst) {
    case H_CR:
        set_error(p, err_cr);
        return;
    case H_KEY:
        key_done(p);
        value_done(p);
        break;
    case H_PREVALUE:
    case H_VALUE:
    case H_VALNL:
        value_done(p);
        break;
    case H_START:
        break;
    }
    p->hst = H_START;
}

/* Header block bytes (mailparse parse_headers/parse_header); returns the number
 * consumed, which is less than n when the block ended. */
static size_t hdr_feed(struct mime_parser *p, const char *s, size_t n)
{
    size_t i = 0;

    while (i < n) {
        char c = s[i];
        switch (p->hst) {
        case H_START:
            if (c == '\n') {
                header_end(p);
                return i + 1;
            }
            if (c == '\r') {
                p->hst = H_CR;
                i++;
                break;
            }
            if (c == ' ') {
                set_error(p, err_space);
                return n;
            }
            if (++p->fields > p->lim.max_header_fields) {
                set_error(p, err_fields);
                return n;
            }
            p->klen = 0;
            p->kover = false;
            p->hst = H_KEY;
            break;
        case H_CR:
            if (c != '\n') {
                set_error(p, err_cr);
                return n;
            }
            header_end(p);
            return i + 1;
        case H_KEY:
            i++;
            if (c == ':') {
                key_done(p);
                p->hst = H_PREVALUE;
            } else if (c == '\n') {
                key_done(p);
                value_done(p);
                p->hst = H_START;
            } else if (p->klen < sizeof(p->key)) {
                p->key[p->klen++] = c;
            } else {
                p->kover = true;
            }
            break;
        case H_PREVALUE:
            if (c == ' ')
                i++;
            else
                p->hst = H_VALUE;
            break;
        case H_VALUE: {
            const char *lf = memchr(s + i, '\n', n - i);
            size_t end = lf ? (size_t)(lf - s) + 1 : n;
            if (p->cur != NULL)
                rawval_put(p->cur, s + i, end - i);
            i = end;
            if (lf != NULL)
                p->hst = H_VALNL;
            break;
        }
        case H_VALNL:
            if (c == ' ' || c == '\t') {
                p->hst = H_VALUE;
            } else {
                value_done(p);
                p->hst = H_START;
            }
            break;
        }
        if (p->error != NULL)
            return n;
    }
    return n;
}

static void new_part(struct mime_parser *p)
{
    struct entity *e = top_ent(p);

    if (++p->total_parts > p->lim.max_parts) {
        set_error(p, err_parts);
        return;
    }
    e->nparts++;
    e->mode = M_PART;
    p->depth++;
    entity_init(top_ent(p));
    header_block_start(p);
    for (int i = 0; i < NPART; i++)
        rawval_reset(&p->part[i]);
    if (p->depth == 1)
        p->role = R_NONE;
}

/* The innermost entity's data ended: close it. */
static void finalize(struct mime_parser *p)
{
    struct entity *e = top_ent(p);

    if (e->mode == M_HEAD) {
        hdr_eof(p);
        if (p->error == NULL)
            header_end(p);
        if (p->error != NULL || p->internal_error)
            return;
    }
    if (p->depth == 1) {
        bool ok = body_finish(p);
        if (p->role == R_VERSION || p->role == R_ARMOR) {
            if (!ok)
                p->enc_ok = false;
        } else if (p->role == R_SJ) {
            p->sj_part_ok = ok;
        }
        p->role = R_NONE;
    }
    if (p->depth > 0) {
        p->depth--;
        top_ent(p)->mode = M_EPI; /* until a delimiter says otherwise */
    }
}

/* The rest of a delimiter line; returns the bytes consumed. */
static size_t dline_feed(struct mime_parser *p, struct entity *e, const char *s, size_t n)
{
    const char *lf = memchr(s, '\n', n);
    size_t upto = lf ? (size_t)(lf - s) + 1 : n;

    size_t i = 0;

    while (i < upto && e->dl_count < 2)
        e->dl2[e->dl_count++] = (unsigned char)s[i++];
    e->dl_count += upto - i;
    if (!e->dl_first && e->dl_count >= 2 && e->dl2[0] == '-' && e->dl2[1] == '-') {
        e->mode = M_EPI; /* the closing delimiter */
        return upto;
    }
    if (lf != NULL) {
        if (e->dl_first || e->dl_count >= 2)
            new_part(p);
        else
            e->mode = M_DMAYBE;
    }
    return upto;
}

/* Content for the innermost entity. */
static void feed(struct mime_parser *p, const char *s, size_t n)
{
    while (n > 0 && p->error == NULL && !p->skip_all && !p->internal_error) {
        struct entity *e = top_ent(p);
        size_t c;

        if (p->depth == 0 && e->mode != M_HEAD)
            p->top_body_seen = true;
        switch (e->mode) {
        case M_HEAD:
            c = hdr_feed(p, s, n);
            s += c;
            n -= c;
            break;
        case M_LEAF:
            if (p->depth == 1)
                body_feed(p, s, n);
            return;
        case M_DLINE:
            c = dline_feed(p, e, s, n);
            s += c;
            n -= c;
            break;
        case M_DMAYBE:
            new_part(p);
            break;
        default: /* M_PRE, M_EPI: ignored */
            return;
        }
    }
}

static void deliver_held(struct mime_parser *p)
{
    size_t n = p->held_len;

    p->held_len = 0;
    feed(p, p->held, n);
}

static bool active(const struct entity *e)
{
    return e->multipart &&
           (e->mode == M_PRE || e->mode == M_DLINE || e->mode == M_DMAYBE || e->mode == M_PART);
}

/* A delimiter of entity j starts this line; returns the bytes it takes. */
static size_t delimiter(struct mime_parser *p, size_t j)
{
    struct entity *ej = &p->ent[j];

    if (p->depth == j && ej->mode == M_DLINE)
        deliver_held(p); /* the newline ends j's previous delimiter line */
    p->held_len = 0;     /* otherwise it belongs to the delimiter */
    while (p->depth > j && p->error == NULL && !p->internal_error)
        finalize(p);
    if (ej->mode == M_DMAYBE && p->error == NULL) { /* an empty part */
        new_part(p);
        if (p->error == NULL)
            finalize(p);
    }
    if (j == 0)
        p->top_body_seen = true;
    ej->dl_first = !ej->seen_delim;
    ej->seen_delim = true;
    ej->mode = M_DLINE;
    ej->dl_count = 0;
    p->at_line_start = false;
    return 2 + ej->blen;
}

static bool match_at(const struct entity *e, const char *s, size_t avail)
{
    return avail >= 2 + e->blen && memcmp(s + 2, e->bnd, e->blen) == 0;
}

#define NEED_MORE ((size_t)-1)

/* The first "\n--" in b[i..n), by its '-' (base64 has none, so armor bodies
 * are skipped at memchr speed). */
static const char *find_delim(const char *b, size_t i, size_t n)
{
    const char *q = b + i + 1, *end = b + n;

    while (q + 1 < end && (q = memchr(q, '-', (size_t)(end - q - 1))) != NULL) {
        if (q[-1] == '\n' && q[1] == '-')
            return q - 1;
        q += q[1] == '-' ? 1 : 2;
    }
    return NULL;
}

/* At the start of a line: is it a delimiter? Returns the bytes taken, or
 * NEED_MORE when that cannot be told from s[0..avail) yet. */
static size_t line_start(struct mime_parser *p, const char *s, size_t avail, bool eof)
{
    bool maybe = false;

    if (avail == 0 && !eof)
        return NEED_MORE;
    if (avail >= 1 && s[0] == '-') {
        if (avail < 2 && !eof)
            return NEED_MORE;
        maybe = avail >= 2 && s[1] == '-';
    }
    if (maybe) {
        if (avail < 2 + p->lim.max_boundary && !eof && memchr(s, '\n', avail) == NULL)
            return NEED_MORE;
        for (size_t k = 0; k <= p->depth; k++)
            if (active(&p->ent[k]) && match_at(&p->ent[k], s, avail))
                return delimiter(p, k);
    }
    deliver_held(p);
    p->at_line_start = false;
    if (maybe && p->error == NULL) {
        /* The held newline may have ended a header block: the body's first
         * line can be the first delimiter. */
        struct entity *e = top_ent(p);
        if (e->multipart && e->mode == M_PRE && match_at(e, s, avail))
            return delimiter(p, p->depth);
    }
    return 0;
}

/* Consumes b[0..n); returns how many bytes were used (the rest is carried and
 * presented again with more data). With eof, everything is used. */
static size_t process(struct mime_parser *p, const char *b, size_t n, bool eof)
{
    size_t i = 0;

    for (;;) {
        if (p->error != NULL || p->skip_all || p->internal_error)
            return n;
        if (p->at_line_start) {
            size_t r = line_start(p, b + i, n - i, eof);
            if (r == NEED_MORE)
                return i;
            i += r;
            if (i > n) /* cannot happen: a match lies within the bytes */
                i = n;
            if (p->at_line_start) /* eof with nothing left */
                return n;
            continue;
        }
        if (i >= n)
            return n;
        const char *k = find_delim(b, i, n);
        size_t kk;
        if (k != NULL) {
            kk = (size_t)(k - b);
        } else if (eof) {
            feed(p, b + i, n - i);
            return n;
        } else if (b[n - 1] == '\n') {
            kk = n - 1;
        } else if (n - i >= 2 && b[n - 2] == '\n' && b[n - 1] == '-') {
            kk = n - 2;
        } else if (b[n - 1] == '\r') {
            feed(p, b + i, n - 1 - i);
            return n - 1;
        } else {
            feed(p, b + i, n - i);
            return n;
        }
        /* A newline that may precede a delimiter: hold it back. */
        if (kk > i && b[kk - 1] == '\r') {
            feed(p, b + i, kk - 1 - i);
            p->held[0] = '\r';
            p->held[1] = '\n';
            p->held_len = 2;
        } else {
            feed(p, b + i, kk - i);
            p->held[0] = '\n';
            p->held_len = 1;
        }
        p->at_line_start = true;
        i = kk + 1;
    }
}

void mime_push(struct mime_parser *p, const char *data, size_t n)
{
    while (n > 0) {
        if (p->error != NULL || p->skip_all || p->internal_error)
            return;
        if (p->carry_len > 0) {
            size_t old = p->carry_len, take = p->carry_cap - old, used;
            if (take > n)
                take = n;
            memcpy(p->carry + old, data, take);
            p->carry_len += take;
            used = process(p, p->carry, p->carry_len, false);
            if (used >= old) {
                p->carry_len = 0;
                data += used - old;
                n -= used - old;
            } else {
                memmove(p->carry, p->carry + used, p->carry_len - used);
                p->carry_len -= used;
                data += take;
                n -= take;
            }
            continue;
        }
        size_t used = process(p, data, n, false);
        if (used < n) {
            memcpy(p->carry, data + used, n - used);
            p->carry_len = n - used;
        }
        return;
    }
}

void mime_finish(struct mime_parser *p, struct mime_result *r)
{
    struct entity *top;

    process(p, p->carry, p->carry_len, true);
    p->carry_len = 0;
    while (p->error == NULL && !p->internal_error && p->depth > 0)
        finalize(p);
    if (p->error == NULL && !p->internal_error && p->ent[0].mode == M_HEAD)
        finalize(p);
    decode_top(p);

    top = &p->ent[0];
    memset(r, 0, sizeof(*r));
    r->parse_error = p->error;
    r->internal_error = p->internal_error;
    r->mimetype = p->mimetype;
    r->multipart = top->multipart && p->top_body_seen;
    r->nparts = top->nparts;
    r->from = p->dec[TOP_FROM];
    r->subject = p->dec[TOP_SUBJECT];
    r->secure_join = p->dec[TOP_SJ];
    r->auto_submitted = p->dec[TOP_AUTOSUB];
    r->content_type = p->dec[TOP_CTYPE];
    r->from_count = p->from_count;
    r->encrypted = p->top_enc && p->enc_ok && top->nparts >= 1 && top->nparts <= 2;
    r->securejoin = p->sj_hdr && top->nparts == 1 && p->sj_part_ok;
}
