/* envelope: pipe(8)'s argv addresses, checked. */
#include "envelope.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <idn2.h>

#include "address.h"

/* The domain of one recipient, normalised into out. */
static enum envelope_status envelope_domain(const char *rcpt, char *out, size_t outlen,
                                            enum envelope_kind *kind_r, int *family_r,
                                            char *err, size_t errlen)
{
    const char *at = strrchr(rcpt, '@');
    if (at == NULL || at == rcpt || at[1] == '\0') {
        snprintf(err, errlen, "bad recipient address syntax: <%.300s>", rcpt);
        return ENVELOPE_BAD_ADDRESS;
    }
    const char *d = at + 1;
    size_t dl = strlen(d);
    if (d[0] == '[') {
        if (dl < 3 || d[dl - 1] != ']' || dl - 2 >= outlen) {
            snprintf(err, errlen, "bad address literal in <%.300s>", rcpt);
            return ENVELOPE_BAD_ADDRESS;
        }
        char lit[256];
        memcpy(lit, d + 1, dl - 2);
        lit[dl - 2] = '\0';
        unsigned char bin[16];
        const char *text = lit;
        if (strncasecmp(lit, "ipv6:", 5) == 0) {
            text = lit + 5;
            if (inet_pton(AF_INET6, text, bin) != 1) {
                snprintf(err, errlen, "bad IPv6 address literal in <%.300s>", rcpt);
                return ENVELOPE_BAD_ADDRESS;
            }
            *family_r = AF_INET6;
        } else if (inet_pton(AF_INET, text, bin) == 1) {
            *family_r = AF_INET;
        } else {
            snprintf(err, errlen, "bad address literal in <%.300s>", rcpt);
            return ENVELOPE_BAD_ADDRESS;
        }
        /* The canonical text, so that two spellings compare equal. */
        if (inet_ntop(*family_r, bin, out, (socklen_t)outlen) == NULL) {
            snprintf(err, errlen, "bad address literal in <%.300s>", rcpt);
            return ENVELOPE_BAD_ADDRESS;
        }
        *kind_r = ENVELOPE_LITERAL;
        return ENVELOPE_OK;
    }
    /* An internationalised domain (SMTPUTF8 mail) is looked up, connected
     * to and compared by its ASCII form (IDNA2008 with UTS #46 mapping, as
     * browsers and Postfix's SMTPUTF8 support resolve it); the addresses
     * themselves go out as given. ASCII names skip libidn2, which would
     * refuse the '_' of test domains. */
    char *ace = NULL;
    bool eight_bit = false;
    for (size_t i = 0; i < dl; i++)
        eight_bit |= (unsigned char)d[i] >= 0x80;
    if (eight_bit) {
        int rc = idn2_to_ascii_8z(d, &ace, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
        if (rc != IDN2_OK) {
            snprintf(err, errlen, "bad internationalised domain in <%.300s>: %s", rcpt,
                     idn2_strerror(rc));
            return ENVELOPE_BAD_ADDRESS;
        }
        d = ace;
        dl = strlen(ace);
    }
    if (dl >= outlen) {
        snprintf(err, errlen, "domain too long in <%.300s>", rcpt);
        idn2_free(ace);
        return ENVELOPE_BAD_ADDRESS;
    }
    for (size_t i = 0; i <= dl; i++) {
        char c = d[i];
        out[i] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    idn2_free(ace);
    if (dl > 1 && out[dl - 1] == '.')
        out[dl - 1] = '\0';
    if (!address_domain_name_ok(out)) {
        snprintf(err, errlen, "bad destination domain syntax in <%.300s>", rcpt);
        return ENVELOPE_BAD_ADDRESS;
    }
    *kind_r = ENVELOPE_NAME;
    *family_r = 0;
    return ENVELOPE_OK;
}

enum envelope_status envelope_check(const char *sender, const char *const *rcpts, size_t n,
                                    struct envelope *env, char *err, size_t errlen)
{
    size_t len;
    memset(env, 0, sizeof(*env));
    env->sender = sender;
    env->rcpts = rcpts;
    env->nrcpts = n;
    if (n == 0) {
        snprintf(err, errlen, "no recipient given");
        return ENVELOPE_NO_RECIPIENT;
    }
    /* No control characters: an address goes into SMTP commands, HTTP
     * headers and log lines. */
    if (!address_path_safe(sender, ENVELOPE_ADDRESS_MAX, &len, &env->smtputf8)) {
        snprintf(err, errlen, "bad sender address");
        return ENVELOPE_BAD_ADDRESS;
    }
    for (size_t i = 0; i < n; i++) {
        char dom[256];
        enum envelope_kind kind;
        int family;
        if (!address_path_safe(rcpts[i], ENVELOPE_ADDRESS_MAX, &len, &env->smtputf8)) {
            snprintf(err, errlen, "bad recipient address (control characters or too long)");
            return ENVELOPE_BAD_ADDRESS;
        }
        enum envelope_status st =
            envelope_domain(rcpts[i], dom, sizeof(dom), &kind, &family, err, errlen);
        if (st != ENVELOPE_OK)
            return st;
        if (i == 0) {
            memcpy(env->domain, dom, sizeof(dom));
            env->kind = kind;
            env->family = family;
        } else if (kind != env->kind || strcmp(dom, env->domain) != 0) {
            snprintf(err, errlen,
                     "recipients of different domains in one delivery (%.100s, %.100s): the "
                     "transport must not have a fixed next hop",
                     env->domain, dom);
            return ENVELOPE_MIXED;
        }
    }
    env->underscore = env->kind == ENVELOPE_NAME && env->domain[0] == '_';
    return ENVELOPE_OK;
}
