/* bench_dkim: DKIM verification and signing rates, each next to the raw
 * OpenSSL operation it is built on, measured in the same run; and the
 * verifier's memory over many messages.
 *
 *   build/bench/bench_dkim [MESSAGES_FOR_MEMORY]   (default 100000)
 *
 * Keys are made fresh (openssl), the key records served from a DNSSEC-signed
 * zone (tests/support/mkzone.py) through libunbound, as in the tests; the
 * verifier's cache holds the key after the first message, so the rate is that
 * of a relay receiving from a known domain. Messages are 2 KB, signed by
 * python3-dkim (tests/support/dkimtool.py). Run from the source tree.
 *
 * Figures: verification >= 2000 messages/s on one core; signing messages/s vs
 * the raw OpenSSL signatures/s, RSA-2048 and Ed25519 (the ratios); resident memory at 10% and at 100% of
 * the memory run (must stay flat).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "dkimcheck.h"
#include "dkimsign.h"
#include "dns.h"

static char dir[64];

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_dkim: failed: %s\n", cmd);
        exit(1);
    }
}

static const char *path(const char *name)
{
    static char bufs[8][256];
    static int i;
    i = (i + 1) % 8;
    snprintf(bufs[i], sizeof(bufs[i]), "%s/%s", dir, name);
    return bufs[i];
}

static char *slurp(const char *file, size_t *len)
{
    FILE *f = fopen(file, "rb");
    char *p;
    long n;
    if (f == NULL || fseek(f, 0, SEEK_END) < 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) < 0)
        exit(1);
    p = malloc((size_t)n + 1);
    if (p == NULL || fread(p, 1, (size_t)n, f) != (size_t)n)
        exit(1);
    fclose(f);
    p[n] = '\0';
    *len = (size_t)n;
    return p;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return kib;
}

/* A message split as the milter feeds it: header fields, then the body. */
struct msg {
    const char *fields[64];
    size_t flen[64];
    size_t nfields;
    const char *body;
    size_t blen;
};

static void split(char *raw, size_t len, struct msg *m)
{
    size_t i = 0;
    m->nfields = 0;
    while (i < len && !(raw[i] == '\r' && raw[i + 1] == '\n')) {
        size_t start = i;
        for (;;) {
            char *nl = memchr(raw + i, '\n', len - i);
            i = (size_t)(nl - raw) + 1;
            if (raw[i] != ' ' && raw[i] != '\t')
                break;
        }
        if (m->nfields < 64) {
            m->fields[m->nfields] = raw + start;
            m->flen[m->nfields++] = i - start - 2;
        }
    }
    m->body = raw + i + 2;
    m->blen = len - i - 2;
}

static enum verdict_origin verify(struct dkimcheck *chk, const struct msg *m)
{
    char why[256];
    struct dkimcheck_msg *v = dkimcheck_msg_new(chk, "bench");
    for (size_t i = 0; i < m->nfields; i++)
        dkimcheck_header(v, m->fields[i], m->flen[i]);
    dkimcheck_eoh(v, "example.test");
    dkimcheck_body(v, m->body, m->blen);
    enum verdict_origin o = dkimcheck_finish(v, 1, 1, why, sizeof(why));
    dkimcheck_msg_free(&v);
    return o;
}

static int sign(struct dkimsign *s, const struct msg *m)
{
    char value[8192];
    struct dkimsign_msg *d = dkimsign_msg_new(s);
    for (size_t i = 0; i < m->nfields; i++)
        dkimsign_header(d, m->fields[i], m->flen[i]);
    dkimsign_eoh(d);
    dkimsign_body(d, m->body, m->blen);
    int rc = dkimsign_finish(d, value, sizeof(value));
    dkimsign_msg_free(&d);
    return rc;
}

/* Raw OpenSSL: one signature (or verification) of a SHA-256 digest-sized
 * input per operation, which is what a DKIM signature costs beyond hashing. */
static double openssl_rate(const char *keyfile, int do_verify, double seconds)
{
    FILE *f = fopen(keyfile, "r");
    EVP_PKEY *k = f != NULL ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    unsigned char data[32] = {1}, sig[512];
    size_t siglen = sizeof(sig);
    long n = 0;
    double t0 = now(), t;

    if (f != NULL)
        fclose(f);
    if (k == NULL)
        exit(1);
    const EVP_MD *md = EVP_PKEY_base_id(k) == EVP_PKEY_ED25519 ? NULL : EVP_sha256();
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestSignInit(c, NULL, md, NULL, k);
    EVP_DigestSign(c, sig, &siglen, data, sizeof(data));
    EVP_MD_CTX_free(c);
    do {
        for (int i = 0; i < 50; i++) {
            c = EVP_MD_CTX_new();
            if (do_verify) {
                EVP_DigestVerifyInit(c, NULL, md, NULL, k);
                if (EVP_DigestVerify(c, sig, siglen, data, sizeof(data)) != 1)
                    exit(1);
            } else {
                size_t l = sizeof(sig);
                EVP_DigestSignInit(c, NULL, md, NULL, k);
                EVP_DigestSign(c, sig, &l, data, sizeof(data));
            }
            EVP_MD_CTX_free(c);
            n++;
        }
        t = now();
    } while (t - t0 < seconds);
    EVP_PKEY_free(k);
    return (double)n / (t - t0);
}

static double sign_rate(struct dkimsign *s, const struct msg *m, double seconds)
{
    long n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 20; i++, n++)
            if (sign(s, m) != 0) {
                fprintf(stderr, "bench_dkim: signing failed\n");
                exit(1);
            }
        t = now();
    } while (t - t0 < seconds);
    return (double)n / (t - t0);
}

static double verify_rate(struct dkimcheck *chk, const struct msg *m, double seconds)
{
    long n = 0;
    double t0 = now(), t;
    do {
        for (int i = 0; i < 50; i++, n++)
            if (verify(chk, m) != ORIGIN_PASS) {
                fprintf(stderr, "bench_dkim: a message failed verification\n");
                exit(1);
            }
        t = now();
    } while (t - t0 < seconds);
    return (double)n / (t - t0);
}

int main(int argc, char **argv)
{
    long memory_messages = argc > 1 ? atol(argv[1]) : 100000;
    char err[256], rsa_rec[1024], ed_rec[256];
    struct msg rsa_m, ed_m, plain_m;
    size_t len;
    FILE *z;

    snprintf(dir, sizeof(dir), "/tmp/filtermail-bench-dkim-XXXXXX");
    if (mkdtemp(dir) == NULL)
        return 1;
    sh("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s 2>/dev/null",
       path("rsa.pem"));
    sh("openssl genpkey -algorithm ed25519 -out %s", path("ed.pem"));
    sh("/usr/bin/python3 tests/support/dkimtool.py pubkey %s >%s", path("rsa.pem"),
       path("rsa.rec"));
    sh("/usr/bin/python3 tests/support/dkimtool.py pubkey %s >%s", path("ed.pem"),
       path("ed.rec"));
    char *r = slurp(path("rsa.rec"), &len);
    snprintf(rsa_rec, sizeof(rsa_rec), "%.*s", (int)strcspn(r, "\n"), r);
    free(r);
    r = slurp(path("ed.rec"), &len);
    snprintf(ed_rec, sizeof(ed_rec), "%.*s", (int)strcspn(r, "\n"), r);
    free(r);
    z = fopen(path("example.test.zone"), "w");
    fprintf(z, "@ IN SOA ns.example.test. h.example.test. 1 3600 600 86400 300\n"
               "@ IN NS ns.example.test.\nns IN A 127.0.0.1\n"
               "rsa._domainkey 86400 IN TXT \"%.200s\" \"%s\"\n"
               "ed._domainkey 86400 IN TXT \"%s\"\n",
            rsa_rec, strlen(rsa_rec) > 200 ? rsa_rec + 200 : "", ed_rec);
    fclose(z);
    sh("/usr/bin/python3 tests/support/mkzone.py %s/dns example.test=%s", dir,
       path("example.test.zone"));

    /* A 2 KB message (an encrypted chat message's size). */
    z = fopen(path("plain.eml"), "w");
    fputs("From: Alice <alice@example.test>\r\nTo: bob@example.org\r\nSubject: [...]\r\n"
          "Date: Mon, 30 Nov 2026 12:00:00 +0000\r\nMessage-ID: <bench@example.test>\r\n"
          "MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n", z);
    for (int i = 0; i < 26; i++)
        fputs("aGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8gd29ybGQgaGVsbG8g\r\n", z);
    fclose(z);
    sh("/usr/bin/python3 tests/support/dkimtool.py sign %s rsa example.test rsa-sha256 <%s >%s",
       path("rsa.pem"), path("plain.eml"), path("rsa.eml"));
    sh("/usr/bin/python3 tests/support/dkimtool.py sign %s ed example.test ed25519-sha256 <%s >%s",
       path("ed.pem"), path("plain.eml"), path("ed.eml"));
    char *rsa_raw = slurp(path("rsa.eml"), &len);
    split(rsa_raw, len, &rsa_m);
    size_t msg_len = len;
    char *ed_raw = slurp(path("ed.eml"), &len);
    split(ed_raw, len, &ed_m);
    char *plain_raw = slurp(path("plain.eml"), &len);
    split(plain_raw, len, &plain_m);

    struct dns_config dc = {.unbound_config = path("dns/unbound.conf"),
                            .trust_anchor = path("dns/trust-anchors")};
    struct dns_resolver *dns = dns_resolver_new(&dc, err, sizeof(err));
    struct dkimcheck *chk = dns != NULL ? dkimcheck_new(dns, 5000, err, sizeof(err)) : NULL;
    struct dkimsign *signer =
        dkimsign_new(path("rsa.pem"), "rsa", "example.test", NULL, err, sizeof(err));
    if (chk == NULL || signer == NULL) {
        fprintf(stderr, "bench_dkim: %s\n", err);
        return 1;
    }

    double raw_rsa_verify = openssl_rate(path("rsa.pem"), 1, 1.0);
    double raw_ed_verify = openssl_rate(path("ed.pem"), 1, 1.0);
    double raw_rsa_sign = openssl_rate(path("rsa.pem"), 0, 1.0);
    double raw_ed_sign = openssl_rate(path("ed.pem"), 0, 1.0);
    double v_rsa = verify_rate(chk, &rsa_m, 2.0);
    double v_ed = verify_rate(chk, &ed_m, 2.0);
    struct dkimsign *edsigner =
        dkimsign_new(path("ed.pem"), "ed", "example.test", NULL, err, sizeof(err));
    if (edsigner == NULL) {
        fprintf(stderr, "bench_dkim: %s\n", err);
        return 1;
    }
    double s_rsa = sign_rate(signer, &plain_m, 2.0);
    double s_ed = sign_rate(edsigner, &plain_m, 2.0);

    printf("dkim verify %zuB rsa-2048 (cached key): %.0f messages/s (raw OpenSSL RSA-2048 "
           "verify %.0f ops/s, ratio %.2f; target >= 2000 messages/s: %s)\n",
           msg_len, v_rsa, raw_rsa_verify, v_rsa / raw_rsa_verify, v_rsa >= 2000 ? "PASS" : "MISS");
    printf("dkim verify %zuB ed25519 (cached key): %.0f messages/s (raw OpenSSL Ed25519 verify "
           "%.0f ops/s, ratio %.2f)\n",
           msg_len, v_ed, raw_ed_verify, v_ed / raw_ed_verify);
    printf("dkim sign %zuB rsa-2048 (dkimsig): %.0f messages/s (raw OpenSSL RSA-2048 sign "
           "%.0f ops/s, ratio %.2f)\n",
           plain_m.blen, s_rsa, raw_rsa_sign, s_rsa / raw_rsa_sign);
    printf("dkim sign %zuB ed25519 (dkimsig): %.0f messages/s (raw OpenSSL Ed25519 sign %.0f "
           "ops/s, ratio %.2f)\n",
           plain_m.blen, s_ed, raw_ed_sign, s_ed / raw_ed_sign);

    /* Memory: resident size after 10% and after all of the run. */
    long rss_early = 0;
    for (long i = 0; i < memory_messages; i++) {
        if (verify(chk, (i & 1) ? &ed_m : &rsa_m) != ORIGIN_PASS)
            return 1;
        if (i == memory_messages / 10)
            rss_early = rss_kib();
    }
    long rss_late = rss_kib();
    printf("dkim memory over %ld verified messages: RSS %ld KiB at 10%%, %ld KiB at 100%% "
           "(growth %ld KiB; target flat: %s)\n",
           memory_messages, rss_early, rss_late, rss_late - rss_early,
           rss_late - rss_early <= 512 ? "PASS" : "MISS");

    dkimsign_free(&signer);
    dkimsign_free(&edsigner);
    dkimcheck_free(&chk);
    dns_resolver_free(&dns);
    free(rsa_raw);
    free(ed_raw);
    free(plain_raw);
    sh("rm -rf '%s'", dir);
    return 0;
}
