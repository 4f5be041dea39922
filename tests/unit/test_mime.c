/* Tests for mime.c: the message analyser (spec 4.1-4.5, 13.3 O25-O28, 13.7
 * U2). Every message is fed whole, one byte at a time and in random chunks;
 * the three must agree, and they must agree with the literal transcription of
 * upstream in tests/support/ref_mime.c. */
#include "mime.h"
#include "ref_mime.h"
#include "unit.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct got {
    const char *error;
    bool encrypted, securejoin, multipart;
    size_t nparts, from_count;
    char mimetype[64];
    char from[256], subject[256], sj[64];
    bool has_from, has_subject, subject_trunc;
    size_t subject_len;
};

static void keep(struct got *g, const struct mime_result *r)
{
    memset(g, 0, sizeof(*g));
    g->error = r->parse_error;
    g->encrypted = r->encrypted;
    g->securejoin = r->securejoin;
    g->multipart = r->multipart;
    g->nparts = r->nparts;
    g->from_count = r->from_count;
    snprintf(g->mimetype, sizeof(g->mimetype), "%s", r->mimetype);
    g->has_from = r->from.value != NULL;
    if (g->has_from)
        snprintf(g->from, sizeof(g->from), "%.*s", (int)r->from.len, r->from.value);
    g->has_subject = r->subject.value != NULL;
    if (g->has_subject)
        snprintf(g->subject, sizeof(g->subject), "%.*s", (int)r->subject.len, r->subject.value);
    g->subject_trunc = r->subject.truncated;
    g->subject_len = r->subject.len;
    if (r->secure_join.value != NULL)
        snprintf(g->sj, sizeof(g->sj), "%.*s", (int)r->secure_join.len, r->secure_join.value);
}

static void feed(struct mime_parser *p, const char *m, size_t n, int mode, unsigned seed)
{
    for (size_t i = 0; i < n;) {
        size_t take = n - i;
        if (mode == 1)
            take = 1;
        if (mode == 2) {
            seed = seed * 1103515245u + 12345u;
            take = 1 + (seed >> 16) % 700;
            if (take > n - i)
                take = n - i;
        }
        mime_push(p, m + i, take);
        i += take;
    }
}

/* Analyses m in direction dir with limits lim (NULL: defaults). */
static struct got analyse_lim(const char *name, const char *m, size_t n, enum armor_direction dir,
                              const struct mime_limits *lim)
{
    struct got g[3];
    struct ref_mime_result ref;

    for (int mode = 0; mode < 3; mode++) {
        struct mime_parser *p = mime_parser_new(lim, dir);
        struct mime_result r;
        feed(p, m, n, mode, (unsigned)n);
        mime_finish(p, &r);
        CHECKF(!r.internal_error, "%s: internal error", name);
        keep(&g[mode], &r);
        mime_parser_free(&p);
        if (mode == 0)
            continue;
        CHECKF((g[mode].error == NULL) == (g[0].error == NULL) &&
                   g[mode].encrypted == g[0].encrypted && g[mode].securejoin == g[0].securejoin &&
                   g[mode].nparts == g[0].nparts && g[mode].from_count == g[0].from_count &&
                   strcmp(g[mode].mimetype, g[0].mimetype) == 0 &&
                   strcmp(g[mode].subject, g[0].subject) == 0,
               "%s: feeding mode %d disagrees with whole", name, mode);
    }
    ref_mime_check(m, n, lim, dir == ARMOR_OUTGOING, &ref);
    CHECKF((ref.parse_error == NULL) == (g[0].error == NULL), "%s: reference parse error", name);
    if (ref.parse_error == NULL && g[0].error == NULL) {
        CHECKF(ref.encrypted == g[0].encrypted, "%s: reference encrypted", name);
        CHECKF(ref.securejoin == g[0].securejoin, "%s: reference securejoin", name);
        CHECKF(ref.nparts == g[0].nparts, "%s: reference nparts", name);
        CHECKF(strcmp(ref.mimetype, g[0].mimetype) == 0, "%s: reference mimetype", name);
        CHECKF(ref.from_count == g[0].from_count, "%s: reference from_count", name);
    }
    ref_mime_free(&ref);
    return g[0];
}

static struct got analyse_lim_s(const char *name, const char *m, const struct mime_limits *lim)
{
    return analyse_lim(name, m, strlen(m), ARMOR_OUTGOING, lim);
}

static struct got analyse(const char *name, const char *m, size_t n, enum armor_direction dir)
{
    return analyse_lim(name, m, n, dir, NULL);
}

static struct got analyse_s(const char *name, const char *m, enum armor_direction dir)
{
    return analyse(name, m, strlen(m), dir);
}

/* 13.7 U2: every test message gives the verdicts of verdicts.tsv. */
static void test_files(void)
{
    size_t len;
    char *tsv = unit_read_file("tests/data/verdicts.tsv", &len);
    int files = 0;

    for (char *line = strtok(tsv, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char file[128], path[256];
        int out, in, sj;
        if (line[0] == '#' || sscanf(line, "%127s %d %d %d", file, &out, &in, &sj) != 4)
            continue;
        snprintf(path, sizeof(path), "tests/data/mail/%s", file);
        char *m = unit_read_file(path, &len);
        struct got o = analyse(file, m, len, ARMOR_OUTGOING);
        struct got i = analyse(file, m, len, ARMOR_INCOMING);
        CHECKF(o.error == NULL && i.error == NULL, "%s: parse error", file);
        CHECKF(o.encrypted == out, "%s: enc_out", file);
        CHECKF(i.encrypted == in, "%s: enc_in", file);
        CHECKF(o.securejoin == sj && i.securejoin == sj, "%s: securejoin", file);
        free(m);
        files++;
    }
    CHECK_INT(files, 14);
    free(tsv);
}

/* Spec 4.10's top mimetypes and part counts; mailer-daemon.eml is LF-only. */
static void test_structure(void)
{
    static const struct {
        const char *file, *mimetype;
        size_t nparts;
    } cases[] = {
        {"mailer-daemon.eml", "multipart/report", 3},
        {"asm-lf.eml", "multipart/mixed", 2},
        {"asm.eml", "multipart/mixed", 2},
        {"encrypted.eml", "multipart/encrypted", 2},
        {"plain.eml", "text/plain", 0},
        {"mdn.eml", "multipart/report", 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char path[256];
        size_t len;
        snprintf(path, sizeof(path), "tests/data/mail/%s", cases[i].file);
        char *m = unit_read_file(path, &len);
        struct got g = analyse(cases[i].file, m, len, ARMOR_INCOMING);
        CHECKF(g.error == NULL, "%s", cases[i].file);
        CHECK_STR(g.mimetype, cases[i].mimetype);
        CHECK_INT(g.nparts, cases[i].nparts);
        CHECK(g.multipart == (cases[i].nparts > 0));
        free(m);
    }
}

/* ---- building variants of encrypted.eml ---- */

static char *enc_eml;
static size_t enc_len;

/* A copy of encrypted.eml with the first occurrence of from replaced. */
static char *replace(const char *src, const char *from, const char *to)
{
    const char *at = strstr(src, from);
    size_t a, f = strlen(from), t = strlen(to), n = strlen(src);
    char *out;

    CHECKF(at != NULL, "replace: \"%s\" not found", from);
    if (at == NULL)
        return strdup(src);
    a = (size_t)(at - src);
    out = malloc(n - f + t + 1);
    memcpy(out, src, a);
    memcpy(out + a, to, t);
    memcpy(out + a + t, at + f, n - a - f + 1);
    return out;
}

static const char *bnd = "--YFrteb74qSXmggbOxZL9dRnhymywAi";

/* The armor text of encrypted.eml's part 2. */
static char *armor_of_enc(void)
{
    const char *b = strstr(enc_eml, "-----BEGIN PGP MESSAGE-----");
    const char *e = strstr(enc_eml, "-----END PGP MESSAGE-----\r\n");
    size_t n = (size_t)(e - b) + strlen("-----END PGP MESSAGE-----\r\n");
    char *a = malloc(n + 1);
    memcpy(a, b, n);
    a[n] = '\0';
    return a;
}

static char *b64_encode(const char *s)
{
    static const char c[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t n = strlen(s), o = 0, col = 0;
    char *out = malloc(n * 2 + 16);
    for (size_t i = 0; i < n; i += 3) {
        size_t k = n - i < 3 ? n - i : 3;
        unsigned v = (unsigned char)s[i] << 16 | (k > 1 ? (unsigned char)s[i + 1] << 8 : 0) |
                     (k > 2 ? (unsigned char)s[i + 2] : 0);
        out[o++] = c[v >> 18 & 63];
        out[o++] = c[v >> 12 & 63];
        out[o++] = k > 1 ? c[v >> 6 & 63] : '=';
        out[o++] = k > 2 ? c[v & 63] : '=';
        if ((col += 4) == 76) {
            out[o++] = '\r';
            out[o++] = '\n';
            col = 0;
        }
    }
    out[o++] = '\r';
    out[o++] = '\n';
    out[o] = '\0';
    return out;
}

static void check_both(const char *name, const char *m, bool want)
{
    struct got o = analyse_s(name, m, ARMOR_OUTGOING), i = analyse_s(name, m, ARMOR_INCOMING);
    CHECKF(o.error == NULL && i.error == NULL, "%s: parse error %s", name, o.error);
    CHECKF(o.encrypted == want && i.encrypted == want, "%s: encrypted %d/%d, want %d", name,
           o.encrypted, i.encrypted, want);
}

/* 13.3 O25-O28 and more shapes of PGP/MIME. */
static void test_encrypted_variants(void)
{
    char *m, *m2, *armor = armor_of_enc(), *b64, buf[8192];

    /* O25: only the Version part, cleartext around it: the quirk Q7. */
    snprintf(buf, sizeof(buf),
             "From: one@example.org\r\nContent-Type: multipart/encrypted; boundary=\"b\"\r\n\r\n"
             "Cleartext preamble!\r\n--b\r\nContent-Type: application/pgp-encrypted\r\n\r\n"
             "Version: 1\r\n--b--\r\nCleartext epilogue!\r\n");
    check_both("O25 quirk", buf, true);
    /* ...and without a closing delimiter. */
    snprintf(buf, sizeof(buf),
             "Content-Type: multipart/encrypted; boundary=b\r\n\r\n--b\r\n"
             "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n");
    check_both("O25 quirk, no closing delimiter", buf, true);

    /* O26: a third part. */
    snprintf(buf, sizeof(buf), "%s\r\nContent-Type: text/plain\r\n\r\nhi\r\n%s--", bnd, bnd);
    m = replace(enc_eml, (char[]){0}, ""); /* placeholder to keep free() uniform */
    free(m);
    {
        char closing[64];
        snprintf(closing, sizeof(closing), "%s--", bnd);
        m = replace(enc_eml, closing, buf);
        check_both("O26 third part", m, false);
        free(m);
    }

    /* O27: part 2 base64-encoded, and quoted-printable. */
    b64 = b64_encode(armor);
    m = replace(enc_eml, "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n",
                "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n"
                "Content-Transfer-Encoding: base64\r\n");
    m2 = replace(m, armor, b64);
    check_both("O27 base64 part 2", m2, true);
    free(m2);
    m2 = replace(m, armor, "-----BEGIN PGP MESSAGE-----\r\n!!!!\r\n");
    check_both("base64 part 2 not decodable", m2, false);
    free(m2);
    free(m);
    m = replace(enc_eml, "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n",
                "Content-Type: application/octet-stream\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n");
    check_both("quoted-printable part 2", m, true);
    free(m);
    m = replace(enc_eml, "Content-Type: application/pgp-encrypted\r\n",
                "Content-Type: application/pgp-encrypted\r\n"
                "Content-Transfer-Encoding: base64\r\n");
    m2 = replace(m, "Version: 1\r\n", "VmVyc2lvbjogMQ==\r\n");
    check_both("base64 part 1", m2, true);
    free(m2);
    free(m);

    /* O28. */
    m = replace(enc_eml, "\r\nVersion: 1\r\n", "\r\nVersion: 2\r\n");
    check_both("O28 Version: 2", m, false);
    free(m);
    m = replace(enc_eml, "Content-Type: application/pgp-encrypted", "Content-Type: text/plain");
    check_both("O28 part 1 text/plain", m, false);
    free(m);
    m = replace(enc_eml, "Content-Type: application/octet-stream; name=\"encrypted.asc\"",
                "Content-Type: text/plain");
    check_both("O28 part 2 text/plain", m, false);
    free(m);

    /* Whitespace around "Version: 1" is trimmed, Unicode whitespace too. */
    m = replace(enc_eml, "\r\nVersion: 1\r\n", "\r\n \t\r\n  Version: 1 \r\n\r\n\t");
    check_both("Version: 1 with whitespace", m, true);
    free(m);
    m = replace(enc_eml, "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1",
                "Content-Type: application/pgp-encrypted; charset=utf-8\r\n\r\n"
                "\xc2\xa0Version: 1\xe2\x80\x83");
    check_both("Version: 1 with NBSP and EM SPACE (utf-8)", m, true);
    free(m);
    m = replace(enc_eml, "\r\nVersion: 1", "\r\n\xa0Version: 1");
    check_both("Version: 1 with NBSP (us-ascii = windows-1252)", m, true);
    free(m);
    m = replace(enc_eml, "\r\nVersion: 1", "\r\nVersion:  1");
    check_both("Version:  1 (two spaces)", m, false);
    free(m);
    m = replace(enc_eml, "\r\nVersion: 1", "\r\nversion: 1");
    check_both("version: 1 (lowercase)", m, false);
    free(m);
    /* Mimetypes compare lowercased; parameters do not matter. */
    m = replace(enc_eml, "multipart/encrypted;", "Multipart/Encrypted; foo=bar;");
    check_both("top mimetype in capitals", m, true);
    free(m);
    /* A multipart part 2 is not encrypted. */
    snprintf(buf, sizeof(buf),
             "Content-Type: multipart/encrypted; boundary=b\r\n\r\n--b\r\n"
             "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\n"
             "Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n\r\n%s--c--\r\n--b--\r\n",
             armor);
    check_both("multipart part 2", buf, false);
    /* Boundary continuations (RFC 2231) and an encoded boundary. */
    m = replace(enc_eml, "boundary=\"YFrteb74qSXmggbOxZL9dRnhymywAi\"",
                "boundary*0=\"YFrteb74qSX\"; boundary*1=mggbOxZL9dRnhymywAi");
    check_both("RFC 2231 boundary continuation", m, true);
    free(m);
    m = replace(enc_eml, "boundary=\"YFrteb74qSXmggbOxZL9dRnhymywAi\"",
                "boundary*=utf-8''YFrteb74qSXmggbOxZL9dRnhymywAi");
    check_both("RFC 2231 encoded boundary", m, true);
    free(m);
    /* The armor check follows the direction. */
    m = replace(enc_eml, "-----BEGIN PGP MESSAGE-----\r\n\r\n",
                "-----BEGIN PGP MESSAGE-----\r\nVersion: 1\r\n");
    {
        struct got o = analyse_s("Version line out", m, ARMOR_OUTGOING);
        struct got i = analyse_s("Version line in", m, ARMOR_INCOMING);
        CHECK(!o.encrypted);
        CHECK(i.encrypted);
    }
    free(m);
    /* LF-only encrypted mail: the armor needs CRLF after BEGIN. */
    {
        size_t k = 0;
        char *lf = malloc(enc_len + 1);
        for (size_t i = 0; i < enc_len; i++)
            if (enc_eml[i] != '\r')
                lf[k++] = enc_eml[i];
        lf[k] = '\0';
        check_both("LF-only encrypted.eml", lf, false);
        free(lf);
    }
    free(b64);
    free(armor);
}

/* Spec 4.5: the securejoin exception. */
static void test_securejoin(void)
{
    static const struct {
        const char *name, *msg;
        bool want;
    } cases[] = {
        {"vc-request",
         "Secure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "Content-Type: text/plain; charset=utf-8\r\n\r\nSecure-Join: vc-request\r\n--b--\r\n",
         true},
        {"vg-request",
         "Secure-Join: vg-request\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "Content-Type: text/plain\r\n\r\nSecure-Join: vg-request\r\n--b--\r\n",
         true},
        {"body need not match the header",
         "Secure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "\r\nsecure-join: vg-request\r\n--b--\r\n",
         true},
        {"body case-insensitive and trimmed",
         "Secure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "Content-Type: text/plain\r\n\r\n \r\n\t SECURE-JOIN: VC-REQUEST \r\n\r\n--b--\r\n",
         true},
        {"base64 body",
         "Secure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "Content-Transfer-Encoding: base64\r\n\r\nU2VjdXJlLUpvaW46IHZjLXJlcXVlc3Q=\r\n--b--\r\n",
         true},
        {"trailing whitespace in the header",
         "Secure-Join: vc-request \r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "\r\nSecure-Join: vc-request\r\n--b--\r\n",
         false},
        {"header in capitals",
         "Secure-Join: VC-REQUEST\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "\r\nSecure-Join: vc-request\r\n--b--\r\n",
         false},
        {"other step",
         "Secure-Join: vc-auth-required\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
         "--b\r\n\r\nSecure-Join: vc-auth-required\r\n--b--\r\n",
         false},
        {"first header counts",
         "Secure-Join: vc-auth-required\r\nSecure-Join: vc-request\r\n"
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nSecure-Join: vc-request\r\n"
         "--b--\r\n",
         false},
        {"two parts",
         "Secure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "\r\nSecure-Join: vc-request\r\n--b\r\n\r\nx\r\n--b--\r\n",
         false},
        {"text/plain at the top",
         "Secure-Join: vc-request\r\nContent-Type: text/plain\r\n\r\nSecure-Join: vc-request\r\n",
         false},
        {"part is text/html",
         "Secure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "Content-Type: text/html\r\n\r\nSecure-Join: vc-request\r\n--b--\r\n",
         false},
        {"body has more",
         "Secure-Join: vc-request\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "\r\nSecure-Join: vc-request\r\nBuy viagra!\r\n--b--\r\n",
         false},
        {"digest part defaults to message/rfc822",
         "Secure-Join: vc-request\r\nContent-Type: multipart/digest; boundary=b\r\n\r\n--b\r\n"
         "\r\nSecure-Join: vc-request\r\n--b--\r\n",
         false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct got g = analyse_s(cases[i].name, cases[i].msg, ARMOR_OUTGOING);
        CHECKF(g.error == NULL, "%s: parse error", cases[i].name);
        CHECKF(g.securejoin == cases[i].want, "%s", cases[i].name);
    }
    /* A huge whitespace run around the body costs no memory and still matches. */
    size_t n = 4 << 20;
    char *m = malloc(n + 512);
    size_t k = (size_t)snprintf(m, 512,
                                "Secure-Join: vc-request\r\nContent-Type: multipart/mixed;"
                                " boundary=b\r\n\r\n--b\r\n\r\n");
    memset(m + k, ' ', n);
    k += n;
    k += (size_t)snprintf(m + k, 512, "secure-join: vc-request\r\n--b--\r\n");
    struct got g = analyse("huge whitespace", m, k, ARMOR_OUTGOING);
    CHECK(g.securejoin);
    free(m);
}

/* Header values: first one, unfolded, RFC 2047, counts. */
static void test_headers(void)
{
    struct got g;
    char buf[8192];
    size_t k = 0;

    g = analyse_s("from",
                  "From: First <a@example.org>\r\nFrom: second@example.org\r\n"
                  "Subject: =?utf-8?q?Autocrypt_Setup_Message?=\r\n\r\nbody\r\n",
                  ARMOR_OUTGOING);
    CHECK_STR(g.from, "First <a@example.org>");
    CHECK_INT(g.from_count, 2);
    CHECK_STR(g.subject, "Autocrypt Setup Message");
    g = analyse_s("folded", "Subject: Autocrypt\r\n Setup\r\n\tMessage\r\nfrom:  x@y  \r\n\r\n",
                  ARMOR_OUTGOING);
    CHECK_STR(g.subject, "Autocrypt Setup Message");
    CHECK_STR(g.from, "x@y  "); /* spaces after the colon skipped, trailing kept */
    g = analyse_s("name not trimmed", "From : x@y\r\nFROM: z@w\r\n\r\n", ARMOR_OUTGOING);
    CHECK_STR(g.from, "z@w");
    CHECK_INT(g.from_count, 1);
    g = analyse_s("no colon", "From\r\nSubject: s\r\n\r\n", ARMOR_OUTGOING);
    CHECK(!g.has_from); /* the key is "From\r" */
    g = analyse_s("tab value", "Subject:\ttabbed\r\n\r\n", ARMOR_OUTGOING);
    CHECK_STR(g.subject, "tabbed"); /* get_value() trims every line's start */
    g = analyse_s("empty value", "Subject:\r\nFrom: a@b\r\n\r\n", ARMOR_OUTGOING);
    CHECK(g.has_subject);
    CHECK_STR(g.subject, "");
    g = analyse_s("no headers", "\r\nbody\r\n", ARMOR_OUTGOING);
    CHECK(!g.has_from);
    CHECK_STR(g.mimetype, "text/plain");
    g = analyse_s("empty message", "", ARMOR_OUTGOING);
    CHECK(g.error == NULL);
    g = analyse_s("latin-1 subject", "Subject: caf\xe9\r\n\r\n", ARMOR_OUTGOING);
    CHECK_STR(g.subject, "caf\xc3\xa9");
    g = analyse_s("top content-type lowercased",
                  "Content-Type:  Multipart/Mixed ; boundary=x\r\n\r\n--x\r\n\r\n", ARMOR_OUTGOING);
    CHECK_STR(g.mimetype, "multipart/mixed");
    CHECK_INT(g.nparts, 1);
    for (int i = 0; i < 50; i++)
        k += (size_t)snprintf(buf + k, sizeof(buf) - k, "From: user%d@example.org\r\n", i);
    snprintf(buf + k, sizeof(buf) - k, "\r\nbody\r\n");
    g = analyse_s("50 From headers", buf, ARMOR_OUTGOING);
    CHECK_INT(g.from_count, 50);
    CHECK_STR(g.from, "user0@example.org");
}

static const char *const err_space =
    "Header cannot start with a space; it is likely an overhanging line from a previous header";
static const char *const err_cr = "Headers were followed by an unexpected lone CR character!";

/* Parse errors with upstream's texts. */
static void test_errors(void)
{
    static const struct {
        const char *name, *msg, *err;
    } cases[] = {
        {"O34 leading space", " X: y\r\n\r\nbody\r\n", err_space},
        {"space after a colon-less line", "X\r\n Y: z\r\n\r\n", err_space},
        {"leading tab is fine", "\tX: y\r\n\r\nbody\r\n", NULL},
        {"continuation is fine", "X: y\r\n z\r\n\r\n", NULL},
        {"lone CR at the top", "X: y\r\n\rZ: w\r\n\r\n", err_cr},
        {"lone CR at the end", "X: y\r\n\r", err_cr},
        {"space in a part's first line",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n Content-Type: x\r\n\r\n"
         "--b--\r\n",
         err_space},
        {"space in a nested part",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
         "Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n x\r\n--c--\r\n--b--\r\n",
         err_space},
        {"lone CR in a part",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nA: b\r\n\rC: d\r\n\r\n--b--\r\n",
         err_cr},
        {"space in the epilogue is fine",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b--\r\n x\r\n", NULL},
        {"space in the preamble is fine",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n x\r\n--b\r\n\r\n--b--\r\n", NULL},
        {"space in a single-part body is fine", "A: b\r\n\r\n x\r\n", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct got g = analyse_s(cases[i].name, cases[i].msg, ARMOR_OUTGOING);
        CHECKF((g.error == NULL) == (cases[i].err == NULL) &&
                   (g.error == NULL || strcmp(g.error, cases[i].err) == 0),
               "%s: got %s", cases[i].name, g.error ? g.error : "(none)");
    }
}

/* mailparse's splitting rules, checked against the reference too. */
static void test_splitting(void)
{
    static const struct {
        const char *name, *msg;
        size_t nparts;
    } cases[] = {
        {"closing delimiter",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b--\r\n", 1},
        {"no closing delimiter", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx",
         1},
        {"first delimiter with --",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\nx\r\n", 1},
        {"junk after a delimiter",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--bjunk\r\n\r\n--b--\r\n", 1},
        {"delimiter at the very end, CRLF",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n--b\r\n", 2},
        {"delimiter at the very end, LF",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\n\n--b\n", 1},
        {"delimiter without newline", "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b", 0},
        {"two delimiters in a row",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\n\r\n--b--", 2},
        {"boundary is case-sensitive",
         "Content-Type: multipart/mixed; boundary=b\r\n\r\n--B\r\n\r\n--B--\r\n", 0},
        {"not at a line start", "Content-Type: multipart/mixed; boundary=b\r\n\r\nx--b\r\n\r\n", 0},
        {"no body", "Content-Type: multipart/mixed; boundary=b\r\n\r\n", 0},
        {"no boundary", "Content-Type: multipart/mixed\r\n\r\n--\r\n\r\n", 0},
        {"empty boundary", "Content-Type: multipart/mixed; boundary=\"\"\r\n\r\n--\r\n\r\n--\r\n",
         2},
        {"quoted boundary with ;",
         "Content-Type: multipart/mixed; boundary=\"a;b\"\r\n\r\n--a;b\r\n\r\n", 1},
        {"later boundary wins",
         "Content-Type: multipart/mixed; boundary=a; boundary=b\r\n\r\n--b\r\n\r\n", 1},
        {"outer delimiter ends inner",
         "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
         "Content-Type: multipart/mixed; "
         "boundary=i\r\n\r\n--i\r\n\r\nx\r\n--o\r\n\r\ny\r\n--o--\r\n",
         2},
        {"outer wins on a shared prefix",
         "Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n"
         "Content-Type: multipart/mixed; boundary=abc\r\n\r\n--abc\r\n\r\nx\r\n--ab--\r\n",
         2},
        {"\"--b\\n\" then a blank line and the outer delimiter",
         "Content-Type: multipart/mixed; boundary=o\r\n\r\n--o\r\n"
         "Content-Type: multipart/mixed; boundary=i\r\n\r\n--i\n\n--i\n\n--o--\r\n",
         1},
        {"LF-only",
         "Content-Type: multipart/mixed; boundary=b\n\n--b\nA: b\n\nx\n--b\n\ny\n--b--\n", 2},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct got g = analyse_s(cases[i].name, cases[i].msg, ARMOR_INCOMING);
        CHECKF(g.error == NULL, "%s: error", cases[i].name);
        CHECKF(g.nparts == cases[i].nparts, "%s: %zu parts, want %zu", cases[i].name, g.nparts,
               cases[i].nparts);
    }
}

/* The limits of struct mime_limits. */
static void test_limits(void)
{
    struct mime_limits lim;
    struct got g;
    char buf[16384];
    size_t k = 0;

    mime_limits_default(&lim);
    CHECK_INT(lim.max_header_value, 16384);
    CHECK_INT(lim.max_header_fields, 10000);
    CHECK_INT(lim.max_part_header, 4096);
    CHECK_INT(lim.max_boundary, 200);
    CHECK_INT(lim.max_depth, 32);
    CHECK_INT(lim.max_parts, 10000);

    lim.max_header_fields = 5;
    g = analyse_lim_s("5 fields", "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", &lim);
    CHECK(g.error == NULL);
    g = analyse_lim_s("6 fields", "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\nF: 6\r\n\r\n", &lim);
    CHECK_STR(g.error, "Too many header fields");

    mime_limits_default(&lim);
    lim.max_depth = 3;
    for (int d = 0; d < 4; d++)
        k += (size_t)snprintf(buf + k, sizeof(buf) - k,
                              "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", d, d);
    g = analyse_lim("depth 4", buf, k, ARMOR_OUTGOING, &lim);
    CHECK_STR(g.error, "MIME nesting too deep");
    lim.max_depth = 4;
    g = analyse_lim("depth 4 allowed", buf, k, ARMOR_OUTGOING, &lim);
    CHECK(g.error == NULL);

    mime_limits_default(&lim);
    lim.max_parts = 3;
    k = (size_t)snprintf(buf, sizeof(buf), "Content-Type: multipart/mixed; boundary=b\r\n\r\n");
    for (int i = 0; i < 4; i++)
        k += (size_t)snprintf(buf + k, sizeof(buf) - k, "--b\r\n\r\npart\r\n");
    g = analyse_lim("4 parts", buf, k, ARMOR_OUTGOING, &lim);
    CHECK_STR(g.error, "Too many MIME parts");
    lim.max_parts = 4;
    g = analyse_lim("4 parts allowed", buf, k, ARMOR_OUTGOING, &lim);
    CHECK(g.error == NULL);
    CHECK_INT(g.nparts, 4);

    /* A boundary longer than max_boundary: not multipart. */
    mime_limits_default(&lim);
    lim.max_boundary = 8;
    g = analyse_lim_s(
        "long boundary",
        "Content-Type: multipart/mixed; boundary=123456789\r\n\r\n--123456789\r\n\r\n", &lim);
    CHECK_INT(g.nparts, 0);
    CHECK(!g.multipart);
    g = analyse_lim_s("boundary at the limit",
                      "Content-Type: multipart/mixed; boundary=12345678\r\n\r\n--12345678\r\n\r\n",
                      &lim);
    CHECK_INT(g.nparts, 1);

    /* Overlong values are kept truncated. */
    mime_limits_default(&lim);
    lim.max_header_value = 10;
    g = analyse_lim_s("long subject", "Subject: 0123456789abc\r\n\r\n", &lim);
    CHECK(g.subject_trunc);
    CHECK_STR(g.subject, "0123456789");
    g = analyse_lim_s("subject at the limit", "Subject: 0123456789\r\n\r\n", &lim);
    CHECK(!g.subject_trunc);
}

/* Memory stays bounded whatever the input: push tens of MiB of hostile shapes
 * and compare the heap in use before and after. */
static void test_bounded_memory(void)
{
    static const char *const heads[] = {
        "Subject: ", /* a header value that never ends */
        "Content-Type: multipart/encrypted; boundary=b\r\n\r\n--b\r\n"
        "Content-Type: application/pgp-encrypted\r\n\r\n", /* a Version part that never ends */
        "Content-Type: multipart/encrypted; boundary=b\r\n\r\n--b\r\n"
        "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--b\r\n"
        "Content-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n\r\n",
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX: ", /* a part header */
    };
    static const char *const fills[] = {"x", " ", "AAAA", "\r\n", "--c\r\n", "= \t"};
    char *chunk = malloc(65536);

    for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
        for (size_t f = 0; f < sizeof(fills) / sizeof(fills[0]); f++) {
            struct mime_parser *p = mime_parser_new(NULL, ARMOR_INCOMING);
            struct mime_result r;
            size_t fl = strlen(fills[f]), before, after;
            for (size_t i = 0; i < 65536; i++)
                chunk[i] = fills[f][i % fl];
            mime_push(p, heads[h], strlen(heads[h]));
            mime_push(p, chunk, 65536); /* let lazily grown buffers settle */
            before = mallinfo2().uordblks;
            for (int i = 0; i < 320; i++) /* 20 MiB */
                mime_push(p, chunk, 65536);
            after = mallinfo2().uordblks;
            mime_finish(p, &r);
            CHECKF(after <= before + 4096, "head %zu fill %zu: heap grew by %zu bytes", h, f,
                   after - before);
            CHECK(!r.internal_error);
            mime_parser_free(&p);
        }
    }
    free(chunk);
}

/* Reset reuses the parser: results do not leak from one message to the next. */
static void test_reset(void)
{
    struct mime_parser *p = mime_parser_new(NULL, ARMOR_OUTGOING);
    struct mime_result r;

    mime_push(p, enc_eml, enc_len);
    mime_finish(p, &r);
    CHECK(r.encrypted);
    mime_parser_reset(p, ARMOR_OUTGOING);
    mime_push(p, " X: y\r\n\r\n", 9);
    mime_finish(p, &r);
    CHECK(r.parse_error != NULL);
    mime_parser_reset(p, ARMOR_INCOMING);
    mime_push(p, enc_eml, enc_len);
    mime_finish(p, &r);
    CHECK(r.encrypted);
    CHECK(r.parse_error == NULL);
    CHECK_INT(r.from_count, 1);
    mime_parser_free(&p);
    mime_parser_free(&p); /* NULL-safe */
}

int main(void)
{
    enc_eml = unit_read_file("tests/data/mail/encrypted.eml", &enc_len);
    UNIT_RUN(test_files);
    UNIT_RUN(test_structure);
    UNIT_RUN(test_encrypted_variants);
    UNIT_RUN(test_securejoin);
    UNIT_RUN(test_headers);
    UNIT_RUN(test_errors);
    UNIT_RUN(test_splitting);
    UNIT_RUN(test_limits);
    UNIT_RUN(test_bounded_memory);
    UNIT_RUN(test_reset);
    free(enc_eml);
    return unit_summary();
}
