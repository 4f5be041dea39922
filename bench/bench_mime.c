/* bench_mime: throughput of the streaming PGP/MIME check.
 *
 * Builds a ~30 MiB PGP/MIME message in memory (multipart/encrypted; part 1
 * "Version: 1"; part 2 armor with two PKESK packets and one SEIPD with a
 * five-octet length and a random body, base64 in 64-character CRLF lines, CRC
 * line), feeds it to mime_push in 64 KiB chunks as libmilter delivers it, and
 * prints the median throughput over several runs next to baselines measured in
 * the same run on the same bytes: OpenSSL's EVP_DecodeBlock over the armor's
 * base64 (line breaks removed beforehand, so it does strictly less work) and a
 * memchr line scan over the whole message. Also prints the rate for a small
 * (about 2 KB) encrypted message. Plain lines; ratios are what to compare.
 */
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mime.h"

#define RUNS 9
#define CHUNK 65536

struct text {
    char *p;
    size_t len, cap;
};

static void put(struct text *t, const char *s, size_t n)
{
    if (t->len + n > t->cap) {
        t->cap = (t->len + n) * 2;
        t->p = realloc(t->p, t->cap);
        if (t->p == NULL) {
            perror("realloc");
            exit(1);
        }
    }
    memcpy(t->p + t->len, s, n);
    t->len += n;
}

static void puts_(struct text *t, const char *s)
{
    put(t, s, strlen(s));
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint8_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint8_t)(rng_state >> 24);
}

static uint32_t crc24(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xB704CE;

    for (size_t i = 0; i < n; i++) {
        crc ^= (uint32_t)p[i] << 16;
        for (int k = 0; k < 8; k++) {
            crc <<= 1;
            if (crc & 0x1000000)
                crc ^= 0x1864CFB;
        }
    }
    return crc & 0xFFFFFF;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of p[0..n) in 64-character CRLF lines; also the joined base64. */
static void armor_body(struct text *t, struct text *joined, const uint8_t *p, size_t n)
{
    size_t col = 0;

    for (size_t i = 0; i < n; i += 3) {
        size_t k = n - i < 3 ? n - i : 3;
        uint32_t v =
            (uint32_t)p[i] << 16 | (k > 1 ? (uint32_t)p[i + 1] << 8 : 0) | (k > 2 ? p[i + 2] : 0);
        char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], k > 1 ? b64[v >> 6 & 63] : '=',
                     k > 2 ? b64[v & 63] : '='};
        put(t, q, 4);
        put(joined, q, 4);
        col += 4;
        if (col == 64) {
            put(t, "\r\n", 2);
            col = 0;
        }
    }
    if (col)
        put(t, "\r\n", 2);
}

/* A PGP/MIME message whose SEIPD body has seipd_len bytes. */
static void message(struct text *m, struct text *joined, size_t seipd_len)
{
    size_t n = 2 * (2 + 94) + 6 + seipd_len, o = 0;
    uint8_t *bin = malloc(n);
    char crc[8];
    uint32_t c;

    if (bin == NULL)
        exit(1);
    for (int k = 0; k < 2; k++) { /* PKESK, new format, 94 bytes */
        bin[o++] = 0xC1;
        bin[o++] = 94;
        for (int i = 0; i < 94; i++)
            bin[o++] = rnd();
    }
    bin[o++] = 0xD2; /* SEIPD, five-octet length */
    bin[o++] = 0xFF;
    bin[o++] = (uint8_t)(seipd_len >> 24);
    bin[o++] = (uint8_t)(seipd_len >> 16);
    bin[o++] = (uint8_t)(seipd_len >> 8);
    bin[o++] = (uint8_t)seipd_len;
    for (size_t i = 0; i < seipd_len; i++)
        bin[o++] = rnd();
    puts_(m, "From: alice@example.org\r\nTo: bob@example.org\r\nSubject: [...]\r\n"
             "Date: Sun, 15 Oct 2023 16:43:21 +0000\r\nMessage-ID: <bench@example.org>\r\n"
             "MIME-Version: 1.0\r\n"
             "Content-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\";\r\n"
             "\tboundary=\"YFrteb74qSXmggbOxZL9dRnhymywAi\"\r\n\r\n"
             "--YFrteb74qSXmggbOxZL9dRnhymywAi\r\n"
             "Content-Description: PGP/MIME version identification\r\n"
             "Content-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n\r\n"
             "--YFrteb74qSXmggbOxZL9dRnhymywAi\r\n"
             "Content-Description: OpenPGP encrypted message\r\n"
             "Content-Disposition: inline; filename=\"encrypted.asc\";\r\n"
             "Content-Type: application/octet-stream; name=\"encrypted.asc\"\r\n\r\n"
             "-----BEGIN PGP MESSAGE-----\r\n\r\n");
    armor_body(m, joined, bin, n);
    c = crc24(bin, n);
    crc[0] = '=';
    crc[1] = b64[c >> 18 & 63];
    crc[2] = b64[c >> 12 & 63];
    crc[3] = b64[c >> 6 & 63];
    crc[4] = b64[c & 63];
    put(m, crc, 5);
    puts_(m, "\r\n-----END PGP MESSAGE-----\r\n\r\n--YFrteb74qSXmggbOxZL9dRnhymywAi--\r\n");
    free(bin);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_double);
    return v[n / 2];
}

static bool run_mime(struct mime_parser *p, const struct text *m)
{
    struct mime_result r;

    mime_parser_reset(p, ARMOR_OUTGOING);
    for (size_t i = 0; i < m->len; i += CHUNK)
        mime_push(p, m->p + i, m->len - i < CHUNK ? m->len - i : CHUNK);
    mime_finish(p, &r);
    return r.encrypted && r.parse_error == NULL;
}

static volatile size_t sink;

int main(void)
{
    struct text big = {0}, joined = {0}, small = {0}, sj = {0};
    struct mime_parser *p = mime_parser_new(NULL, ARMOR_OUTGOING);
    double t_mime[RUNS], t_evp[RUNS], t_scan[RUNS];
    unsigned char *out;

    if (p == NULL)
        return 1;
    message(&big, &joined, 22 * 1024 * 1024);
    message(&small, &sj, 900);
    out = malloc(joined.len / 4 * 3 + 3);
    if (out == NULL)
        return 1;
    if (!run_mime(p, &big) || !run_mime(p, &small)) {
        fprintf(stderr, "bench_mime: the generated message is not recognised as encrypted\n");
        return 1;
    }
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        if (!run_mime(p, &big))
            return 1;
        double t1 = now();
        int got = EVP_DecodeBlock(out, (const unsigned char *)joined.p, (int)joined.len);
        double t2 = now();
        size_t lines = 0;
        for (const char *q = big.p, *end = big.p + big.len;
             (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++)
            lines++;
        double t3 = now();
        if (got < 0)
            return 1;
        sink = lines + (size_t)got;
        t_mime[r] = t1 - t0;
        t_evp[r] = t2 - t1;
        t_scan[r] = t3 - t2;
    }
    double gb = (double)big.len / 1e9;
    double mime = gb / median(t_mime, RUNS), evp = gb / median(t_evp, RUNS),
           scan = gb / median(t_scan, RUNS);
    printf("mime %.0fMiB encrypted: %.2f GB/s (baseline EVP_DecodeBlock %.2f GB/s, ratio %.2f)\n",
           (double)big.len / (1024.0 * 1024.0), mime, evp, mime / evp);
    printf("mime %.0fMiB encrypted: %.2f GB/s (baseline memchr line scan %.2f GB/s, ratio %.2f)\n",
           (double)big.len / (1024.0 * 1024.0), mime, scan, mime / scan);

    /* Small messages: a whole message per push, as a short DATA is. */
    double rates[RUNS];
    int iters = 20000;
    for (int r = 0; r < RUNS; r++) {
        double t0 = now();
        for (int i = 0; i < iters; i++) {
            struct mime_result res;
            mime_parser_reset(p, ARMOR_OUTGOING);
            mime_push(p, small.p, small.len);
            mime_finish(p, &res);
            sink += res.encrypted;
        }
        rates[r] = iters / (now() - t0);
    }
    printf("mime %zuB encrypted: %.0f messages/s\n", small.len, median(rates, RUNS));
    mime_parser_free(&p);
    free(out);
    free(big.p);
    free(joined.p);
    free(small.p);
    free(sj.p);
    return 0;
}
