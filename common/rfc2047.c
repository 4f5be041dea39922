/* rfc2047: header value decoding as mailparse 0.16 does it; see rfc2047.h.
 *
 * The structure follows mailparse's header.rs (tokenize, then normalise the
 * whitespace between tokens) so that its corner cases come out the same,
 * including is_boundary() indexing characters by a byte offset. */
#include "rfc2047.h"

#include <string.h>

#include "base64.h"
#include "qp.h"
#include "utf8.h"

enum saved_kind { SAVED_NONE, SAVED_WS, SAVED_NL, SAVED_DW };

struct out {
    char *p;
    size_t len, cap;
    bool truncated;
    /* normalize_header_whitespace's saved token */
    enum saved_kind saved;
    const char *ws; /* SAVED_WS: the whitespace; SAVED_NL: whitespace before " " */
    size_t wslen;
};

static void emit(struct out *o, const char *s, size_t n)
{
    size_t room = o->cap - o->len;

    if (n > room) {
        n = room;
        o->truncated = true;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void emit_saved_nl(struct out *o)
{
    emit(o, o->ws, o->wslen);
    emit(o, " ", 1);
}

/* HeaderToken::Text */
static void tok_text(struct out *o, const char *t, size_t n)
{
    if (o->saved == SAVED_WS)
        emit(o, o->ws, o->wslen);
    else if (o->saved == SAVED_NL)
        emit_saved_nl(o);
    emit(o, t, n);
    o->saved = SAVED_NONE;
}

/* HeaderToken::Whitespace */
static void tok_ws(struct out *o, const char *t, size_t n)
{
    if (o->saved == SAVED_DW) {
        o->saved = SAVED_WS;
        o->ws = t;
        o->wslen = n;
    } else {
        emit(o, t, n);
        o->saved = SAVED_NONE;
    }
}

/* HeaderToken::Newline */
static void tok_nl(struct out *o)
{
    if (o->saved == SAVED_WS) {
        o->saved = SAVED_NL; /* ws + " " */
    } else if (o->saved == SAVED_DW) {
        o->saved = SAVED_NL;
        o->wslen = 0;
    } else {
        emit(o, " ", 1);
        o->saved = SAVED_NONE;
    }
}

/* maybe_whitespace(): whitespace-only (or empty) text is a Whitespace token. */
static void tok_maybe_ws(struct out *o, const char *t, size_t n)
{
    size_t m = n;

    utf8_trim_end(t, &m);
    if (m == 0)
        tok_ws(o, t, n);
    else
        tok_text(o, t, n);
}

static bool is_boundary(const char *line, size_t n, long ix)
{
    long c;

    if (ix < 0)
        return true;
    c = utf8_nth_char(line, n, (size_t)ix);
    if (c < 0)
        return true;
    return utf8_is_ws_cp((unsigned long)c) || c == '"' || c == '(' || c == ')' || c == '<' ||
           c == '>' || c == ',';
}

static const char *find(const char *s, size_t n, size_t from, const char *key)
{
    if (from > n)
        return NULL;
    return memmem(s + from, n - from, key, strlen(key));
}

/* decode_word(): emits the decoded word and returns true, or returns false. */
static bool decode_word(struct out *o, const char *w, size_t n, char *scratch, size_t cap)
{
    const char *d1 = memchr(w, '?', n), *d2, *input;
    enum utf8_charset cs;
    size_t inlen, dlen;
    unsigned char *dec = (unsigned char *)scratch; /* decoded bytes: QP_OUT_MAX(inlen) */
    char *tmp;                                     /* '_' replaced, then UTF-8: 3 * inlen */

    if (d1 == NULL)
        return false;
    d2 = memchr(d1 + 1, '?', n - (size_t)(d1 + 1 - w));
    if (d2 == NULL)
        return false;
    input = d2 + 1;
    inlen = n - (size_t)(input - w);
    if (d2 - d1 != 2 || 6 * inlen + QP_OUT_MAX(0) > cap)
        return false;
    tmp = scratch + QP_OUT_MAX(inlen);
    if (d1[1] == 'B' || d1[1] == 'b') {
        struct base64_dec b;
        base64_init(&b, BASE64_WORD);
        dlen = base64_decode(&b, input, inlen, dec);
        if (!base64_finish(&b))
            return false;
    } else if (d1[1] == 'Q' || d1[1] == 'q') {
        size_t trimmed = inlen;
        for (size_t i = 0; i < inlen; i++)
            tmp[i] = input[i] == '_' ? ' ' : input[i];
        utf8_trim_end(tmp, &trimmed);
        dlen = qp_decode_all(tmp, trimmed, (char *)dec);
        memcpy(dec + dlen, tmp + trimmed, inlen - trimmed);
        dlen += inlen - trimmed;
    } else {
        return false;
    }
    cs = utf8_charset_lookup(w, (size_t)(d1 - w));
    if (cs == UTF8_CS_UNKNOWN)
        return false;
    emit(o, tmp, utf8_from_charset(cs, dec, dlen, tmp));
    return true;
}

/* tokenize_header_line() feeding the normaliser directly. */
static void line_tokens(struct out *o, const char *line, size_t n, char *scratch, size_t cap)
{
    size_t ix_search = 0;

    for (;;) {
        const char *v = find(line, n, ix_search, "=?");
        size_t ix_begin;

        if (v == NULL) {
            tok_maybe_ws(o, line + ix_search, n - ix_search);
            return;
        }
        ix_begin = (size_t)(v - line) + 2;
        if (!is_boundary(line, n, (long)ix_begin - 3)) {
            tok_text(o, line + ix_search, ix_begin - ix_search);
            ix_search = ix_begin;
            continue;
        }
        tok_maybe_ws(o, line + ix_search, ix_begin - 2 - ix_search);
        size_t ix_end_search = ix_begin;
        for (;;) {
            const char *e = find(line, n, ix_end_search, "?=");
            if (e != NULL) {
                size_t ix_end = (size_t)(e - line);
                if (!is_boundary(line, n, (long)ix_end + 2)) {
                    ix_end_search = ix_end + 2;
                    continue;
                }
                size_t before = o->len;
                if (decode_word(o, line + ix_begin, ix_end - ix_begin, scratch, cap)) {
                    /* HeaderToken::DecodedWord: saved whitespace is dropped */
                    o->saved = SAVED_DW;
                } else {
                    o->len = before;
                    tok_text(o, line + ix_begin - 2, ix_end + 2 - (ix_begin - 2));
                }
                ix_search = ix_end;
            } else {
                tok_text(o, "=?", 2);
                ix_search = ix_begin - 2;
            }
            break;
        }
        ix_search += 2;
    }
}

size_t rfc2047_decode(const char *raw, size_t n, char *scratch, size_t scratch_cap, char *out,
                      size_t cap, bool *truncated_r)
{
    struct out o = {.p = out, .cap = cap};
    const char *s;
    size_t slen, i = 0;
    bool first = true;

    if (scratch_cap < RFC2047_SCRATCH(n)) {
        *truncated_r = true;
        return 0;
    }
    if (utf8_valid((const unsigned char *)raw, n)) {
        s = raw;
        slen = n;
    } else {
        slen = utf8_from_latin1((const unsigned char *)raw, n, scratch);
        s = scratch;
        scratch += slen;
        scratch_cap -= slen;
    }
    /* str::lines(): split at LF, drop one CR before it, no empty last line. */
    while (i < slen) {
        const char *nl = memchr(s + i, '\n', slen - i);
        size_t end = nl ? (size_t)(nl - s) : slen, len = end - i;
        const char *line = s + i;

        if (nl != NULL && len > 0 && line[len - 1] == '\r')
            len--;
        if (!first)
            tok_nl(&o);
        first = false;
        size_t w;
        while ((w = utf8_ws_at(line, len)) > 0) { /* trim_start */
            line += w;
            len -= w;
        }
        line_tokens(&o, line, len, scratch, scratch_cap);
        i = nl ? end + 1 : slen;
    }
    *truncated_r = o.truncated;
    return o.len;
}
