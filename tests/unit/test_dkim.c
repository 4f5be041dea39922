/* Tests for dkimcheck.c and dkimsign.c with real signatures and real DNSSEC.
 *
 * Keys are made fresh with openssl; messages are signed by an independent
 * implementation (Debian's python3-dkim, tests/support/dkimtool.py) and by our
 * signer; key records are served from DNSSEC-signed zones (mkzone.py) through
 * the same resolver the milter uses. What our signer produces is checked by
 * python3-dkim too.
 */
#include "dkimcheck.h"
#include "dkimsign.h"
#include "dns.h"
#include "unit.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static char dir[128];
static struct dns_resolver *dns;
static struct dkimcheck *chk;

static const char base_msg[] = "From: Alice <alice@example.test>\r\n"
                               "To: bob@example.org\r\n"
                               "Subject: [...]\r\n"
                               "Date: Mon, 23 Nov 2026 10:00:00 +0000\r\n"
                               "Message-ID: <m1@example.test>\r\n"
                               "Content-Type: text/plain\r\n"
                               "\r\n"
                               "Hello!\r\n"
                               ".a line that starts with a dot\r\n"
                               "..and one with two\r\n";

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fprintf(stderr, "setup command failed: %s\n", cmd);
        exit(1);
    }
}

static char *path(const char *name)
{
    static char p[8][300];
    static int i;
    i = (i + 1) % 8;
    snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
    return p[i];
}

static char *slurp(const char *file, size_t *len)
{
    return unit_read_file(file, len);
}

static void spit(const char *file, const char *data, size_t len)
{
    FILE *f = fopen(file, "wb");
    if (f == NULL || fwrite(data, 1, len, f) != len)
        abort();
    fclose(f);
}

/* Appends a TXT record line to a zone file, the text split into quoted
 * strings of at most 200 characters with '"' escaped. */
static void zone_txt(FILE *z, const char *owner, const char *ttl, const char *txt,
                     const char *marker)
{
    fprintf(z, "%s %s IN TXT", owner, ttl);
    for (size_t i = 0; txt[i] != '\0';) {
        fputs(" \"", z);
        for (size_t k = 0; k < 200 && txt[i] != '\0'; k++, i++) {
            if (txt[i] == '"' || txt[i] == '\\')
                fputc('\\', z);
            fputc(txt[i], z);
        }
        fputc('"', z);
    }
    fprintf(z, " %s\n", marker);
}

/* The public key record of a key file, from dkimtool.py. */
static void pubkey(const char *keyfile, char *out, size_t outlen)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/support/dkimtool.py pubkey %s", keyfile);
    FILE *p = popen(cmd, "r");
    if (p == NULL || fgets(out, (int)outlen, p) == NULL)
        abort();
    pclose(p);
    out[strcspn(out, "\n")] = '\0';
}

static void pysign(const char *in, const char *out, const char *key, const char *sel,
                   const char *domain, const char *alg)
{
    sh("/usr/bin/python3 tests/support/dkimtool.py sign %s %s %s %s <%s >%s", key, sel, domain,
       alg, in, out);
}

static void setup(void)
{
    char rsa[1024], ed[256], small[400], nov[1024];
    FILE *z;

    snprintf(dir, sizeof(dir), "/tmp/filtermail-dkim-XXXXXX");
    if (mkdtemp(dir) == NULL)
        abort();
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null",
       path("rsa.pem"));
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null",
       path("other.pem"));
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:512 -out %s 2>/dev/null",
       path("small.pem"));
    sh("openssl genpkey -algorithm ed25519 -out %s", path("ed.pem"));
    pubkey(path("rsa.pem"), rsa, sizeof(rsa));
    pubkey(path("ed.pem"), ed, sizeof(ed));
    pubkey(path("small.pem"), small, sizeof(small));
    snprintf(nov, sizeof(nov), "%s", rsa + strlen("v=DKIM1; "));

    z = fopen(path("example.test.zone"), "w");
    if (z == NULL)
        abort();
    fputs("@ IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 300\n"
          "@ IN NS ns.example.test.\nns IN A 127.0.0.1\n", z);
    zone_txt(z, "rsa._domainkey", "300", rsa, "");
    zone_txt(z, "ed._domainkey", "300", ed, "");
    zone_txt(z, "nov._domainkey", "300", nov, "");
    zone_txt(z, "small._domainkey", "300", small, "");
    zone_txt(z, "revoked._domainkey", "300", "v=DKIM1; k=rsa; p=", "");
    zone_txt(z, "bogus._domainkey", "300", rsa, ";BOGUS");
    zone_txt(z, "short._domainkey", "1", rsa, "");
    zone_txt(z, "rsa._domainkey.sub", "300", rsa, "");
    fclose(z);
    /* Upstream's vectors (spec 6.5): the abjadiyah record as one string, the
     * privitty one with a stray quote-space-quote inside the key. */
    z = fopen(path("abjadiyah.xyz.zone"), "w");
    fputs("@ IN SOA ns.abjadiyah.xyz. h.abjadiyah.xyz. 1 3600 600 86400 300\n"
          "@ IN NS ns.abjadiyah.xyz.\nns IN A 127.0.0.1\n", z);
    zone_txt(z, "default._domainkey", "300",
             "v=DKIM1;k=rsa;p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA5krC4Xi5Wkr6eMlla38LCFmV645"
             "E3FLAgsRl2YJ0SrZ4N2Vw1/yH0mefvtk7HYE7ytV7RQl/er2CkSsaHLJSYLmPCBw5CO6PSsBSXuh6DBqdylh"
             "/1t9vVQ9p38fTwn9gU1QvplcpRQL9eepRra1k24VMIaVy2ZZcu3LI9zkPsR7o7TyNaeMhsL8ouWInWc1NSid"
             "+p0SgliQuwHIejZhlTPE60JLbJE0OR9I4wmq3377H6z/QrO8XeabCgtmTuzE/hTRyIyNS40jql/99pjlhIcj"
             "M2U+P2B0FjwYt7BwLHsgANr74ctlnKY+SdH25rNwVpPmkotaULG5SJCByKBkfCwIDAQAB;s=email;t=s",
             "");
    fclose(z);
    z = fopen(path("chat.privittytech.com.zone"), "w");
    fputs("@ IN SOA ns.chat.privittytech.com. h.chat.privittytech.com. 1 3600 600 86400 300\n"
          "@ IN NS ns.chat.privittytech.com.\nns IN A 127.0.0.1\n", z);
    zone_txt(z, "opendkim._domainkey", "300",
             "v=DKIM1;k=rsa;p=MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1giTh8KDkEchWhrAB6hGnb+V8"
             "7kTezkt5I3SP7BGNg8wpv0yAuj/SUmnsttYmcEU+zmNAPqxePmCNvmjLYi/c3YyWEBwHcLyZE9OlS9W4enPds"
             "oCuEN3DayzN4JCV3MsXMedCORvLFXmIARDXDLJUSJeqCeQoudXa9GmF1CrCmx70YyTtV0xOIxEzo7z0DkUL9"
             "\" \"7vGmNJCv6EMpi9wccMKKu8NSmOv+DBw1MLIJqChSZMCs8CYZ5i0KT/+Lijtn6B7wyOcAuQsVL+zr7DWYrF"
             "drePe0wGuivfJ3SvUEfUo1SIykl0nvm0iLGhjNmNa1e/tUw4ULXhQ12Qw685+sq7wIDAQAB;s=email;t=s",
             "");
    fclose(z);
    sh("/usr/bin/python3 tests/support/mkzone.py %s/dns example.test=%s abjadiyah.xyz=%s "
       "chat.privittytech.com=%s",
       dir, path("example.test.zone"), path("abjadiyah.xyz.zone"),
       path("chat.privittytech.com.zone"));

    /* A name-to-record file for python3-dkim's verifier. */
    z = fopen(path("records"), "w");
    fprintf(z, "rsa._domainkey.example.test %s\ned._domainkey.example.test %s\n", rsa, ed);
    fclose(z);

    char err[256];
    struct dns_config dc = {.unbound_config = path("dns/unbound.conf"),
                            .trust_anchor = path("dns/trust-anchors")};
    dns = dns_resolver_new(&dc, err, sizeof(err));
    if (dns == NULL) {
        fprintf(stderr, "resolver: %s\n", err);
        exit(1);
    }
    chk = dkimcheck_new(dns, 5000, err, sizeof(err));
    if (chk == NULL) {
        fprintf(stderr, "dkimcheck: %s\n", err);
        exit(1);
    }
    spit(path("base.eml"), base_msg, strlen(base_msg));
}

/* Feeds a raw message as the milter does: each header field (folded lines
 * joined with CRLF, no final CRLF), end of headers, the body in chunks. */
static enum verdict_origin check_raw(const char *raw, size_t len, const char *from_domain,
                                     size_t from_count, size_t from_addresses, char *why,
                                     size_t whylen)
{
    struct dkimcheck_msg *m = dkimcheck_msg_new(chk, "test");
    size_t i = 0;
    enum verdict_origin o;

    CHECK(m != NULL);
    if (m == NULL)
        return ORIGIN_TEMPFAIL;
    while (i < len) {
        if (raw[i] == '\r' && i + 1 < len && raw[i + 1] == '\n') {
            i += 2;
            break;
        }
        size_t start = i, end;
        for (;;) {
            const char *nl = memchr(raw + i, '\n', len - i);
            end = nl != NULL ? (size_t)(nl - raw) + 1 : len;
            i = end;
            if (i >= len || (raw[i] != ' ' && raw[i] != '\t'))
                break;
        }
        size_t flen = end - start;
        while (flen > 0 && (raw[start + flen - 1] == '\n' || raw[start + flen - 1] == '\r'))
            flen--;
        dkimcheck_header(m, raw + start, flen);
    }
    dkimcheck_eoh(m, from_domain);
    while (i < len) {
        size_t n = len - i < 7 ? len - i : 7; /* small chunks: streaming must not matter */
        dkimcheck_body(m, raw + i, n);
        i += n;
    }
    o = dkimcheck_finish(m, from_count, from_addresses, why, whylen);
    dkimcheck_msg_free(&m);
    return o;
}

static enum verdict_origin check_file(const char *file, const char *from_domain, char *why,
                                      size_t whylen)
{
    size_t len;
    char *raw = slurp(file, &len);
    enum verdict_origin o = check_raw(raw, len, from_domain, 1, 1, why, whylen);
    free(raw);
    return o;
}

#define EXPECT(file, domain, want)                                                                 \
    do {                                                                                           \
        char why_[512];                                                                            \
        enum verdict_origin got_ = check_file(file, domain, why_, sizeof(why_));                   \
        CHECKF(got_ == (want), "%s: got %d want %d (%s)", file, got_, want, why_);                 \
    } while (0)

static void test_upstream_vectors(void)
{
    EXPECT("tests/data/mail/dkim-abjadiyah.eml", "abjadiyah.xyz", ORIGIN_PASS);
    EXPECT("tests/data/dkim/1.eml", "abjadiyah.xyz", ORIGIN_PASS);
    EXPECT("tests/data/mail/dkim-privitty.eml", "chat.privittytech.com", ORIGIN_PASS);
    /* ...and only for their own domain. */
    EXPECT("tests/data/mail/dkim-privitty.eml", "privittytech.com", ORIGIN_NO_VALID_SIGNATURE);
}

static void test_fresh_signatures(void)
{
    pysign(path("base.eml"), path("rsa.eml"), path("rsa.pem"), "rsa", "example.test",
           "rsa-sha256");
    pysign(path("base.eml"), path("ed.eml"), path("ed.pem"), "ed", "example.test",
           "ed25519-sha256");
    pysign(path("base.eml"), path("nov.eml"), path("rsa.pem"), "nov", "example.test",
           "rsa-sha256");
    EXPECT(path("rsa.eml"), "example.test", ORIGIN_PASS);
    EXPECT(path("ed.eml"), "example.test", ORIGIN_PASS);
    EXPECT(path("nov.eml"), "example.test", ORIGIN_PASS); /* key record without v= */
    EXPECT(path("rsa.eml"), "EXAMPLE.test", ORIGIN_PASS); /* ASCII case-insensitive */
    /* Lines starting with a dot verify: upstream's dot-stuffing bug is not copied. */
    size_t len;
    char *raw = slurp(path("rsa.eml"), &len);
    CHECK(strstr(raw, "\r\n.a line") != NULL);
    free(raw);
}

static void test_no_signature(void)
{
    EXPECT(path("base.eml"), "example.test", ORIGIN_NO_SIGNATURE);
    EXPECT("tests/data/mail/encrypted.eml", "example.org", ORIGIN_NO_SIGNATURE);
}

static void test_tampered(void)
{
    size_t len;
    char *raw = slurp(path("rsa.eml"), &len), why[512];
    char *body = strstr(raw, "Hello!");
    body[5] = '?';
    CHECK(check_raw(raw, len, "example.test", 1, 1, why, sizeof(why)) ==
          ORIGIN_NO_VALID_SIGNATURE);
    CHECKF(strstr(why, "body hash") != NULL, "%s", why);
    body[5] = '!';
    char *subj = strstr(raw, "Subject: [...]");
    subj[9] = '(';
    CHECK(check_raw(raw, len, "example.test", 1, 1, why, sizeof(why)) ==
          ORIGIN_NO_VALID_SIGNATURE);
    subj[9] = '[';
    CHECK(check_raw(raw, len, "example.test", 1, 1, why, sizeof(why)) == ORIGIN_PASS);
    free(raw);
}

static void test_alignment(void)
{
    /* d= is the parent of the From domain, or a subdomain of it: no pass. */
    EXPECT(path("rsa.eml"), "sub.example.test", ORIGIN_NO_VALID_SIGNATURE);
    pysign(path("base.eml"), path("sub.eml"), path("rsa.pem"), "rsa", "sub.example.test",
           "rsa-sha256");
    EXPECT(path("sub.eml"), "example.test", ORIGIN_NO_VALID_SIGNATURE);
    EXPECT(path("sub.eml"), "sub.example.test", ORIGIN_PASS);
    /* Exactly one From field with one address. */
    size_t len;
    char *raw = slurp(path("rsa.eml"), &len), why[512];
    CHECK(check_raw(raw, len, "example.test", 2, 1, why, sizeof(why)) ==
          ORIGIN_NO_VALID_SIGNATURE);
    CHECK(check_raw(raw, len, "example.test", 1, 2, why, sizeof(why)) ==
          ORIGIN_NO_VALID_SIGNATURE);
    free(raw);
}

static void test_two_signatures(void)
{
    /* The top signature names the rsa selector but is made with another key;
     * the second one is good. */
    pysign(path("rsa.eml"), path("two.eml"), path("other.pem"), "rsa", "example.test",
           "rsa-sha256");
    EXPECT(path("two.eml"), "example.test", ORIGIN_PASS);
    /* Only a bad signature: no pass. */
    pysign(path("base.eml"), path("bad.eml"), path("other.pem"), "rsa", "example.test",
           "rsa-sha256");
    EXPECT(path("bad.eml"), "example.test", ORIGIN_NO_VALID_SIGNATURE);
}

/* A malformed selector (libunbound refuses such names) fails that signature
 * for good: no valid signature (554), never a temporary failure (451) that
 * would defer the message for days; a good signature beside it still passes. */
static void test_malformed_selector(void)
{
    static const char *const bad[] = {
        "a..b", ".a", "a.", ".",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", /* 64 */
        "x.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.y",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char why[512];
        size_t len;
        pysign(path("base.eml"), path("badsel.eml"), path("rsa.pem"), "rsa", "example.test",
               "rsa-sha256");
        char *raw = slurp(path("badsel.eml"), &len);
        char *tag = strstr(raw, "s=rsa;");
        CHECK(tag != NULL);
        if (tag == NULL) {
            free(raw);
            continue;
        }
        /* s=<bad>; in place of s=rsa; */
        size_t blen = strlen(bad[i]), pre = (size_t)(tag - raw) + 2, post = len - pre - 3;
        char *m = malloc(len + blen);
        memcpy(m, raw, pre);
        memcpy(m + pre, bad[i], blen);
        memcpy(m + pre + blen, tag + 5, post);
        enum verdict_origin o = check_raw(m, pre + blen + post, "example.test", 1, 1, why,
                                          sizeof(why));
        CHECKF(o == ORIGIN_NO_VALID_SIGNATURE, "s=%s: got %d (%s)", bad[i], o, why);
        /* With a good signature on top, the message passes. */
        spit(path("badsel.eml"), m, pre + blen + post);
        pysign(path("badsel.eml"), path("badsel2.eml"), path("rsa.pem"), "rsa", "example.test",
               "rsa-sha256");
        EXPECT(path("badsel2.eml"), "example.test", ORIGIN_PASS);
        free(m);
        free(raw);
    }
    /* The longest well-formed label (63) is looked up: no such key. */
    pysign(path("base.eml"), path("sel63.eml"), path("rsa.pem"),
           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "example.test",
           "rsa-sha256");
    EXPECT(path("sel63.eml"), "example.test", ORIGIN_NO_VALID_SIGNATURE);
}

static void test_keys(void)
{
    pysign(path("base.eml"), path("nokey.eml"), path("rsa.pem"), "nokey", "example.test",
           "rsa-sha256");
    EXPECT(path("nokey.eml"), "example.test", ORIGIN_NO_VALID_SIGNATURE);
    pysign(path("base.eml"), path("revoked.eml"), path("rsa.pem"), "revoked", "example.test",
           "rsa-sha256");
    EXPECT(path("revoked.eml"), "example.test", ORIGIN_NO_VALID_SIGNATURE);
    pysign(path("base.eml"), path("small.eml"), path("small.pem"), "small", "example.test",
           "rsa-sha256");
    EXPECT(path("small.eml"), "example.test", ORIGIN_NO_VALID_SIGNATURE);
    pysign(path("base.eml"), path("sha1.eml"), path("rsa.pem"), "rsa", "example.test",
           "rsa-sha1");
    EXPECT(path("sha1.eml"), "example.test", ORIGIN_NO_VALID_SIGNATURE);
    /* A bogus DNSSEC answer for the key: temporary, never a reject or a pass. */
    pysign(path("base.eml"), path("bogus.eml"), path("rsa.pem"), "bogus", "example.test",
           "rsa-sha256");
    EXPECT(path("bogus.eml"), "example.test", ORIGIN_TEMPFAIL);
}

/* Signs base.eml with our signer; returns the signed message (malloc'd). */
static char *oursign(const char *keyfile, const char *selector, const struct dkimsign_test *t,
                     size_t *len_r)
{
    char err[256], value[4096];
    struct dkimsign *s = dkimsign_new(keyfile, selector, "example.test", t, err, sizeof(err));
    CHECKF(s != NULL, "dkimsign_new: %s", err);
    if (s == NULL)
        abort();
    struct dkimsign_msg *m = dkimsign_msg_new(s);
    const char *raw = base_msg;
    const char *body = strstr(raw, "\r\n\r\n") + 4;
    for (const char *p = raw; p < body - 2;) {
        const char *e = strstr(p, "\r\n");
        dkimsign_header(m, p, (size_t)(e - p));
        p = e + 2;
    }
    dkimsign_eoh(m);
    dkimsign_body(m, body, strlen(body));
    int rc = dkimsign_finish(m, value, sizeof(value));
    CHECKF(rc == 0, "dkimsign_finish: %s", value);
    dkimsign_msg_free(&m);
    dkimsign_free(&s);
    /* The value is folded with LF + TAB (for libmilter); a message file
     * needs CRLF. */
    size_t cap = strlen(value) * 2 + strlen(raw) + 64, o = 0;
    char *out = malloc(cap);
    o += (size_t)snprintf(out, cap, "DKIM-Signature: ");
    for (const char *p = value; *p != '\0'; p++) {
        if (*p == '\n')
            out[o++] = '\r';
        out[o++] = *p;
    }
    o += (size_t)snprintf(out + o, cap - o, "\r\n%s", raw);
    *len_r = o;
    return out;
}

/* The Ed25519 signature value for a body fed in chunks of chunk bytes (0:
 * whole), at a fixed time: Ed25519 is deterministic, so equal input gives an
 * equal value. */
static void dkimsig_value(const char *body, size_t chunk, char *value, size_t vlen)
{
    char err[256];
    struct dkimsign_test t = {.fixed_time = 1796000000};
    struct dkimsign *s = dkimsign_new(path("ed.pem"), "ed", "example.test", &t, err, sizeof(err));
    struct dkimsign_msg *m = dkimsign_msg_new(s);
    const char *h[] = {"From: Alice <alice@example.test>", "To: bob@example.org",
                       "Subject:   folded\r\n\t  subject  ", "X-Unsigned: x"};
    for (size_t i = 0; i < 4; i++)
        dkimsign_header(m, h[i], strlen(h[i]));
    dkimsign_eoh(m);
    size_t len = strlen(body);
    for (size_t i = 0; i < len;) {
        size_t n = chunk == 0 || len - i < chunk ? len - i : chunk;
        dkimsign_body(m, body + i, n);
        i += n;
    }
    CHECK(dkimsign_finish(m, value, vlen) == 0);
    dkimsign_msg_free(&m);
    dkimsign_free(&s);
}

/* dkimsig's simple body canonicalisation: trailing empty lines do not count, a
 * missing final CRLF is added, an empty body is one CRLF; chunking does not
 * matter, bare CRs are content. */
static void test_dkimsig_canonical(void)
{
    char a[4096], b[4096];
    static const char *const same[][2] = {
        {"line\r\n", "line\r\n\r\n\r\n"},
        {"line\r\n", "line"},
        {"", "\r\n"},
        {"", "\r\n\r\n\r\n"},
        {"a\r\n\r\nb\r\n", "a\r\n\r\nb\r\n\r\n"},
    };
    for (size_t i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
        dkimsig_value(same[i][0], 0, a, sizeof(a));
        dkimsig_value(same[i][1], 1, b, sizeof(b));
        CHECKF(strcmp(a, b) == 0, "case %zu differs", i);
    }
    static const char *const differ[][2] = {
        {"a\r\nb\r\n", "a\r\n\r\nb\r\n"},
        {"a\r\n", "a\r\r\n"},
        {"a\r\n", " a\r\n"},
    };
    for (size_t i = 0; i < sizeof(differ) / sizeof(differ[0]); i++) {
        dkimsig_value(differ[i][0], 0, a, sizeof(a));
        dkimsig_value(differ[i][1], 3, b, sizeof(b));
        CHECKF(strcmp(a, b) != 0, "case %zu is equal", i);
    }
    /* Every chunk size gives the same signature. */
    const char *body = "first\r\n.dot\r\n\r\nlast\r\r\n\r\n";
    dkimsig_value(body, 0, a, sizeof(a));
    for (size_t c = 1; c < 8; c++) {
        dkimsig_value(body, c, b, sizeof(b));
        CHECKF(strcmp(a, b) == 0, "chunk %zu", c);
    }
    /* Folded for libmilter: LF + TAB, no line over 78 columns. */
    for (const char *p = a, *nl; *p != '\0'; p = nl + 1) {
        nl = strchr(p, '\n');
        if (nl == NULL)
            nl = p + strlen(p) - 1;
        CHECKF(nl - p <= 78, "line of %td columns", nl - p);
    }
    CHECK(strstr(a, "h=From:To:Subject:") != NULL && strstr(a, "X-Unsigned") == NULL);
}

static void test_signer(void)
{
    size_t len;
    char why[512], err[256];
    char *m;

    /* Ours verifies in our verifier and in python3-dkim. */
    m = oursign(path("rsa.pem"), "rsa", NULL, &len);
    CHECK(strstr(m, "a=rsa-sha256") != NULL);
    CHECK(strstr(m, "c=relaxed/simple") != NULL);
    CHECK(check_raw(m, len, "example.test", 1, 1, why, sizeof(why)) == ORIGIN_PASS);
    spit(path("ours-rsa.eml"), m, len);
    char cmd[800];
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/support/dkimtool.py verify %s <%s",
             path("records"), path("ours-rsa.eml"));
    CHECKF(system(cmd) == 0, "python3-dkim rejects our RSA signature");
    /* Oversigned: a Subject added afterwards breaks the signature. */
    char *h = strstr(m, "h=");
    CHECK(h != NULL && strstr(h, "subject:") != NULL);
    size_t l2 = len + 32;
    char *m2 = malloc(l2 + 1);
    int n = snprintf(m2, l2 + 1, "Subject: added later\r\n%s", m);
    spit(path("ours-added.eml"), m2, (size_t)n);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/support/dkimtool.py verify %s <%s",
             path("records"), path("ours-added.eml"));
    CHECKF(system(cmd) != 0, "an added Subject must break the signature");
    CHECK(check_raw(m2, (size_t)n, "example.test", 1, 1, why, sizeof(why)) ==
          ORIGIN_NO_VALID_SIGNATURE);
    free(m2);
    free(m);

    /* Ed25519 (dkimsig.c): verifies here and in python3-dkim, oversigned. */
    m = oursign(path("ed.pem"), "ed", NULL, &len);
    CHECK(strstr(m, "a=ed25519-sha256") != NULL);
    CHECK(check_raw(m, len, "example.test", 1, 1, why, sizeof(why)) == ORIGIN_PASS);
    spit(path("ours-ed.eml"), m, len);
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 tests/support/dkimtool.py verify %s <%s",
             path("records"), path("ours-ed.eml"));
    CHECKF(system(cmd) == 0, "python3-dkim rejects our Ed25519 signature");
    l2 = len + 32;
    m2 = malloc(l2 + 1);
    n = snprintf(m2, l2 + 1, "Subject: added later\r\n%s", m);
    CHECK(check_raw(m2, (size_t)n, "example.test", 1, 1, why, sizeof(why)) ==
          ORIGIN_NO_VALID_SIGNATURE);
    free(m2);
    free(m);
    struct dkimsign_test ed_expired = {.fixed_time = time(NULL) - 7200, .ttl = 60};
    m = oursign(path("ed.pem"), "ed", &ed_expired, &len);
    CHECK(check_raw(m, len, "example.test", 1, 1, why, sizeof(why)) ==
          ORIGIN_NO_VALID_SIGNATURE);
    free(m);

    /* Expired (x= in the past) and future-dated (t= ahead) signatures fail. */
    struct dkimsign_test expired = {.fixed_time = time(NULL) - 7200, .ttl = 60};
    m = oursign(path("rsa.pem"), "rsa", &expired, &len);
    CHECK(strstr(m, "x=") != NULL);
    CHECK(check_raw(m, len, "example.test", 1, 1, why, sizeof(why)) ==
          ORIGIN_NO_VALID_SIGNATURE);
    free(m);
    struct dkimsign_test future = {.fixed_time = time(NULL) + 7200};
    m = oursign(path("rsa.pem"), "rsa", &future, &len);
    CHECK(check_raw(m, len, "example.test", 1, 1, why, sizeof(why)) ==
          ORIGIN_NO_VALID_SIGNATURE);
    free(m);

    /* Unusable keys are refused at start-up. */
    CHECK(dkimsign_new(path("small.pem"), "s", "example.test", NULL, err, sizeof(err)) == NULL);
    CHECK(dkimsign_new("/nonexistent", "s", "example.test", NULL, err, sizeof(err)) == NULL);
    CHECK(strstr(err, "filtermail_dkim_key") != NULL);
    CHECK(dkimsign_new(path("records"), "s", "example.test", NULL, err, sizeof(err)) == NULL);
}

static void test_max_signatures(void)
{
    /* Nine bad signatures above a good one: the good one is the tenth, checked. */
    sh("cp %s %s", path("rsa.eml"), path("stack.eml"));
    for (int i = 0; i < 9; i++)
        sh("/usr/bin/python3 tests/support/dkimtool.py sign %s rsa example.test rsa-sha256 "
           "<%s >%s && mv %s %s",
           path("other.pem"), path("stack.eml"), path("stack2.eml"), path("stack2.eml"),
           path("stack.eml"));
    EXPECT(path("stack.eml"), "example.test", ORIGIN_PASS);
    /* A tenth bad one pushes the good one to the eleventh place: not evaluated. */
    sh("/usr/bin/python3 tests/support/dkimtool.py sign %s rsa example.test rsa-sha256 "
       "<%s >%s",
       path("other.pem"), path("stack.eml"), path("stack11.eml"));
    EXPECT(path("stack11.eml"), "example.test", ORIGIN_NO_VALID_SIGNATURE);
}

static void test_cache(void)
{
    uint64_t lookups0, hits0, lookups1, hits1;
    char why[512];

    dkimcheck_cache_stats(chk, &lookups0, &hits0);
    EXPECT(path("ed.eml"), "example.test", ORIGIN_PASS);
    EXPECT(path("ed.eml"), "example.test", ORIGIN_PASS);
    dkimcheck_cache_stats(chk, &lookups1, &hits1);
    CHECK(lookups1 - lookups0 == 2);
    CHECK(hits1 - hits0 >= 1);

    /* A record with a TTL of 1 s is looked up again once it expired. */
    pysign(path("base.eml"), path("short.eml"), path("rsa.pem"), "short", "example.test",
           "rsa-sha256");
    EXPECT(path("short.eml"), "example.test", ORIGIN_PASS);
    dkimcheck_cache_stats(chk, &lookups0, &hits0);
    usleep(1200 * 1000);
    CHECK(check_file(path("short.eml"), "example.test", why, sizeof(why)) == ORIGIN_PASS);
    dkimcheck_cache_stats(chk, &lookups1, &hits1);
    CHECK(hits1 == hits0); /* expired: fetched again, not served from the cache */
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A sender whose DNS never answers: ten aligned signatures, each with its
 * own selector, cost one DNS timeout for the whole message (the lookups run
 * at once and share the deadline), not ten one after another, and the
 * answer is still a temporary failure (451 4.7.5). */
static void test_lookups_bounded_per_message(void)
{
    /* A forwarder that takes queries and never answers. */
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    CHECK(udp >= 0 && bind(udp, (struct sockaddr *)&a, sizeof(a)) == 0 &&
          getsockname(udp, (struct sockaddr *)&a, &alen) == 0);
    FILE *f = fopen(path("silent.conf"), "w");
    CHECK(f != NULL);
    if (f == NULL)
        return;
    fprintf(f, "server:\n  do-not-query-localhost: no\n  tcp-upstream: no\n"
               "forward-zone:\n  name: \".\"\n  forward-addr: 127.0.0.1@%u\n",
            (unsigned)ntohs(a.sin_port));
    fclose(f);
    char err[256];
    struct dns_config dc = {.unbound_config = path("silent.conf"),
                            .trust_anchor = path("dns/trust-anchors")};
    struct dns_resolver *silent = dns_resolver_new(&dc, err, sizeof(err));
    CHECKF(silent != NULL, "%s", err);
    struct dkimcheck *slow = silent != NULL ? dkimcheck_new(silent, 1000, err, sizeof(err)) : NULL;
    CHECKF(slow != NULL, "%s", err);

    sh("cp %s %s", path("base.eml"), path("ten.eml"));
    for (int i = 0; i < DKIMCHECK_MAX_SIGNATURES; i++)
        sh("/usr/bin/python3 tests/support/dkimtool.py sign %s sel%d slow.example rsa-sha256 "
           "<%s >%s && mv %s %s",
           path("rsa.pem"), i, path("ten.eml"), path("ten2.eml"), path("ten2.eml"),
           path("ten.eml"));
    if (slow != NULL) {
        struct dkimcheck *saved = chk;
        chk = slow;
        char why[512];
        int64_t t0 = mono_ms();
        enum verdict_origin o = check_file(path("ten.eml"), "slow.example", why, sizeof(why));
        int64_t took = mono_ms() - t0;
        chk = saved;
        CHECKF(o == ORIGIN_TEMPFAIL, "got %d (%s)", o, why);
        CHECKF(took >= 900 && took < 2500, "ten silent lookups took %lld ms",
               (long long)took);
        /* A message with no pending lookup left behind frees cleanly (ASan). */
    }
    dkimcheck_free(&slow);
    dns_resolver_free(&silent);
    close(udp);
}

/* A forged signature (s=rsa, made with another key) does not evict the
 * cached key: the next good message is still served from the cache. */
static void test_forged_signature_keeps_cached_key(void)
{
    uint64_t lookups0, hits0, lookups1, hits1;
    EXPECT(path("rsa.eml"), "example.test", ORIGIN_PASS); /* cached */
    pysign(path("base.eml"), path("forged.eml"), path("other.pem"), "rsa", "example.test",
           "rsa-sha256");
    for (int i = 0; i < 3; i++)
        EXPECT(path("forged.eml"), "example.test", ORIGIN_NO_VALID_SIGNATURE);
    dkimcheck_cache_stats(chk, &lookups0, &hits0);
    EXPECT(path("rsa.eml"), "example.test", ORIGIN_PASS);
    dkimcheck_cache_stats(chk, &lookups1, &hits1);
    CHECK_INT(lookups1 - lookups0, 1);
    CHECK_INT(hits1 - hits0, 1);
}

static void test_normalize(void)
{
    char t[] = "v=DKIM1; k=rsa;\tp=AB\" \"CD\r\n";
    size_t n = dkimcheck_normalize_txt(t, strlen(t));
    CHECK_STR(t, "v=DKIM1;k=rsa;p=ABCD");
    CHECK_INT(n, strlen("v=DKIM1;k=rsa;p=ABCD"));
}

int main(void)
{
    setup();
    UNIT_RUN(test_normalize);
    UNIT_RUN(test_upstream_vectors);
    UNIT_RUN(test_fresh_signatures);
    UNIT_RUN(test_no_signature);
    UNIT_RUN(test_tampered);
    UNIT_RUN(test_alignment);
    UNIT_RUN(test_two_signatures);
    UNIT_RUN(test_keys);
    UNIT_RUN(test_malformed_selector);
    UNIT_RUN(test_signer);
    UNIT_RUN(test_dkimsig_canonical);
    UNIT_RUN(test_max_signatures);
    UNIT_RUN(test_cache);
    UNIT_RUN(test_forged_signature_keeps_cached_key);
    UNIT_RUN(test_lookups_bounded_per_message);
    dkimcheck_free(&chk);
    dns_resolver_free(&dns);
    if (getenv("FILTERMAIL_KEEP_TMP") == NULL)
        sh("rm -rf '%s'", dir);
    else
        fprintf(stderr, "kept %s\n", dir);
    return unit_summary();
}
