/* naive_milter: the baseline the benchmarks compare filtermail-milter with.
 *
 * The way a milter is usually written first: no protocol negotiation (Postfix
 * sends every stage and waits for a reply to each header and body chunk), the
 * whole message (headers and body) copied into one growing buffer, and the
 * check run over the buffer at end of message. The check is a stand-in (a
 * search for the armor's BEGIN line); every message is accepted, so the
 * benchmark's counts of 250 replies compare like with like.
 *
 * Usage: naive_milter SOCKET (a libmilter socket spec, e.g. unix:/path or
 * inet:PORT@127.0.0.1). The socket is made connectable by everyone (umask 0),
 * since Postfix's smtpd runs as another user; a benchmark puts it in a private
 * directory. Runs in the foreground until SIGTERM.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <libmilter/mfapi.h>

/* One message's bytes. */
struct naive {
    char *p;
    size_t len, cap;
    bool failed;
};

static volatile size_t found; /* keeps the search from being optimised away */

static struct naive *naive_get(SMFICTX *ctx)
{
    struct naive *n = smfi_getpriv(ctx);
    if (n == NULL) {
        n = calloc(1, sizeof(*n));
        if (n == NULL)
            return NULL;
        if (smfi_setpriv(ctx, n) != MI_SUCCESS) {
            free(n);
            return NULL;
        }
    }
    return n;
}

static void naive_reset(struct naive *n)
{
    free(n->p);
    n->p = NULL;
    n->len = n->cap = 0;
    n->failed = false;
}

static void naive_append(struct naive *n, const void *p, size_t len)
{
    size_t need;

    if (n->failed || __builtin_add_overflow(n->len, len, &need))
        return;
    if (need > n->cap) {
        size_t cap = n->cap ? n->cap : 4096;
        while (cap < need)
            cap *= 2;
        char *q = realloc(n->p, cap);
        if (q == NULL) {
            n->failed = true;
            return;
        }
        n->p = q;
        n->cap = cap;
    }
    memcpy(n->p + n->len, p, len);
    n->len = need;
}

static sfsistat cb_envfrom(SMFICTX *ctx, char **argv)
{
    struct naive *n = naive_get(ctx);
    if (n == NULL)
        return SMFIS_TEMPFAIL;
    naive_reset(n);
    return SMFIS_CONTINUE;
}

static sfsistat cb_header(SMFICTX *ctx, char *name, char *value)
{
    struct naive *n = smfi_getpriv(ctx);
    if (n == NULL)
        return SMFIS_TEMPFAIL;
    naive_append(n, name, strlen(name));
    naive_append(n, ": ", 2);
    naive_append(n, value, strlen(value));
    naive_append(n, "\r\n", 2);
    return SMFIS_CONTINUE;
}

static sfsistat cb_eoh(SMFICTX *ctx)
{
    struct naive *n = smfi_getpriv(ctx);
    if (n == NULL)
        return SMFIS_TEMPFAIL;
    naive_append(n, "\r\n", 2);
    return SMFIS_CONTINUE;
}

static sfsistat cb_body(SMFICTX *ctx, unsigned char *chunk, size_t len)
{
    struct naive *n = smfi_getpriv(ctx);
    if (n == NULL)
        return SMFIS_TEMPFAIL;
    naive_append(n, chunk, len);
    return SMFIS_CONTINUE;
}

static sfsistat cb_eom(SMFICTX *ctx)
{
    static const char begin[] = "-----BEGIN PGP MESSAGE-----";
    struct naive *n = smfi_getpriv(ctx);
    sfsistat rc = SMFIS_CONTINUE;

    if (n == NULL || n->failed) {
        rc = SMFIS_TEMPFAIL;
    } else if (n->len > 0 && memmem(n->p, n->len, begin, sizeof(begin) - 1) != NULL) {
        found = found + 1;
    }
    if (n != NULL)
        naive_reset(n);
    return rc;
}

static sfsistat cb_abort(SMFICTX *ctx)
{
    struct naive *n = smfi_getpriv(ctx);
    if (n != NULL)
        naive_reset(n);
    return SMFIS_CONTINUE;
}

static sfsistat cb_close(SMFICTX *ctx)
{
    struct naive *n = smfi_getpriv(ctx);
    if (n != NULL) {
        naive_reset(n);
        free(n);
        smfi_setpriv(ctx, NULL);
    }
    return SMFIS_CONTINUE;
}

static struct smfiDesc filter = {
    .xxfi_name = "naive",
    .xxfi_version = SMFI_VERSION,
    .xxfi_flags = 0,
    .xxfi_envfrom = cb_envfrom,
    .xxfi_header = cb_header,
    .xxfi_eoh = cb_eoh,
    .xxfi_body = cb_body,
    .xxfi_eom = cb_eom,
    .xxfi_abort = cb_abort,
    .xxfi_close = cb_close,
};

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "Usage: %s SOCKET\n", argv[0]);
        return 2;
    }
    if (smfi_setconn(argv[1]) != MI_SUCCESS || smfi_register(filter) != MI_SUCCESS) {
        fprintf(stderr, "naive_milter: cannot use socket %s\n", argv[1]);
        return 1;
    }
    smfi_settimeout(600);
    smfi_setbacklog(128);
    umask(0);
    if (smfi_opensocket(1) != MI_SUCCESS) {
        fprintf(stderr, "naive_milter: cannot listen on %s\n", argv[1]);
        return 1;
    }
    return smfi_main() == MI_SUCCESS ? 0 : 1;
}
