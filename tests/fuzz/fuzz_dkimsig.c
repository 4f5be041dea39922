/* Fuzz target: DKIM signing (Ed25519 for inputs of even length, RSA for odd)
 * of arbitrary header fields and bodies never crashes, always gives a value or
 * a reason, and does not depend on how the body is chunked (both algorithms
 * are deterministic). Input: header fields separated by NUL bytes, then a
 * 0x01 byte, then the body. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "dkimsig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const sign[] = {"from", "to", "subject", "date", "content-type", NULL};
static const char *const oversign[] = {"from", "subject", NULL};

static int run(EVP_PKEY *key, const uint8_t *data, size_t size, size_t chunk, char *value,
               size_t vlen)
{
    struct dkimsig_params p = {.key = key, .domain = "example.test", .selector = "s",
                              .sign = sign, .oversign = oversign, .t = 1796000000};
    struct dkimsig_msg *m = dkimsig_msg_new(&p);
    const uint8_t *sep = memchr(data, 0x01, size);
    size_t hlen = sep != NULL ? (size_t)(sep - data) : size;
    int rc;

    if (m == NULL)
        return -2;
    for (size_t i = 0; i < hlen;) {
        const uint8_t *z = memchr(data + i, 0, hlen - i);
        size_t n = z != NULL ? (size_t)(z - data) - i : hlen - i;
        dkimsig_header(m, (const char *)data + i, n);
        i += n + 1;
    }
    if (sep != NULL) {
        const uint8_t *b = sep + 1;
        size_t blen = size - hlen - 1;
        for (size_t i = 0; i < blen; i += chunk)
            dkimsig_body(m, b + i, blen - i < chunk ? blen - i : chunk);
    }
    rc = dkimsig_finish(m, value, vlen);
    dkimsig_msg_free(&m);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static EVP_PKEY *ed, *rsa;
    static char a[16384], b[16384];
    static const unsigned char seed[32] = {1, 2, 3};

    if (ed == NULL)
        ed = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
    if (rsa == NULL)
        rsa = EVP_RSA_gen(1024);
    EVP_PKEY *key = size % 2 == 0 ? ed : rsa;
    if (key == NULL)
        __builtin_trap();
    int ra = run(key, data, size, 1u << 20, a, sizeof(a));
    int rb = run(key, data, size, 3, b, sizeof(b));
    if (ra == -2 || rb == -2)
        return 0;
    if (ra != rb || strlen(a) == 0 || (ra == 0 && strcmp(a, b) != 0))
        __builtin_trap();
    return 0;
}
