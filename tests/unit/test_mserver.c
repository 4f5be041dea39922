/* Tests for milter/mserver.c through a real unix socket: the session sees
 * the macros Postfix sends, and more macros than the session can keep close
 * the connection (Postfix then applies milter_default_action = tempfail)
 * instead of silently losing, say, {auth_authen}. */
#include "mproto.h"
#include "mserver.h"
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <libmilter/mfdef.h>

#include "buf.h"

static char seen_auth[64];

static enum mstatus on_envfrom(struct msess *s, const char *sender)
{
    const char *v = msess_getsymval(s, "{auth_authen}");
    snprintf(seen_auth, sizeof(seen_auth), "%s", v != NULL ? v : "(none)");
    return MS_CONTINUE;
}

static size_t header_len;

static enum mstatus on_header(struct msess *s, const char *name, const char *value)
{
    header_len = strlen(value);
    return MS_CONTINUE;
}

static const struct mserver_callbacks cbs = {.envfrom = on_envfrom, .header = on_header};

static void *serve(void *arg)
{
    char err[256];
    if (mserver_run(arg, err, sizeof(err)) < 0)
        fprintf(stderr, "mserver_run: %s\n", err);
    return NULL;
}

static int client(const char *path)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
        return fd;
    if (fd >= 0)
        close(fd);
    return -1;
}

static int send_buf(int fd, struct buf *b)
{
    int rc = write(fd, b->data, b->len) == (ssize_t)b->len ? 0 : -1;
    buf_reset(b);
    return rc;
}

/* Reads one packet's command byte; 0 at end of connection, -1 on error. */
static int read_cmd(int fd)
{
    unsigned char hdr[5];
    size_t have = 0;
    while (have < 5) {
        ssize_t n = read(fd, hdr + have, 5 - have);
        if (n == 0)
            return 0;
        if (n < 0)
            return -1;
        have += (size_t)n;
    }
    size_t len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    char skip[4096];
    for (size_t left = len - 1; left > 0;) {
        ssize_t n = read(fd, skip, left < sizeof(skip) ? left : sizeof(skip));
        if (n <= 0)
            return -1;
        left -= (size_t)n;
    }
    return hdr[4];
}

/* A MACRO packet for stage 'M' with n macros {m0}..{m<n-1>} plus one
 * {auth_authen}, each value vlen bytes. */
static void put_macros(struct buf *b, int n, size_t vlen)
{
    struct buf d;
    buf_init(&d, 16 * 1024 * 1024);
    buf_append(&d, "M", 1);
    char *v = malloc(vlen + 1);
    memset(v, 'v', vlen);
    v[vlen] = '\0';
    for (int i = 0; i < n; i++) {
        char name[32];
        int k = snprintf(name, sizeof(name), "{m%d}", i);
        buf_append(&d, name, (size_t)k + 1);
        buf_append(&d, v, vlen + 1);
    }
    buf_append(&d, "{auth_authen}", 14);
    buf_append(&d, "alice", 6);
    mproto_put(b, SMFIC_MACRO, d.data, d.len);
    free(v);
    buf_free(&d);
}

static int session(const char *path, int nmacros, size_t vlen)
{
    struct buf b;
    buf_init(&b, 16 * 1024 * 1024);
    int fd = client(path), cmd = -1;
    if (fd < 0)
        return -2;
    mproto_put_optneg(&b, 6, 0, SMFIP_NR_MAIL, 0, NULL);
    if (send_buf(fd, &b) < 0 || read_cmd(fd) != SMFIC_OPTNEG)
        goto out;
    put_macros(&b, nmacros, vlen);
    mproto_put_str(&b, SMFIC_MAIL, "<alice@example.org>");
    mproto_put(&b, SMFIC_QUIT, NULL, 0);
    send_buf(fd, &b); /* may fail half-way once the server has closed */
    cmd = read_cmd(fd);
out:
    close(fd);
    buf_free(&b);
    return cmd;
}

/* A packet larger than the read buffer (a 300 KiB header), then ordinary
 * ones on the same connection: the buffer grows for it and the session goes
 * on (it shrinks back afterwards; ASan watches the reallocations). */
static int big_then_small(const char *path)
{
    struct buf b;
    buf_init(&b, 16 * 1024 * 1024);
    int fd = client(path), cmd = -1;
    if (fd < 0)
        return -2;
    mproto_put_optneg(&b, 6, 0, SMFIP_NR_MAIL | SMFIP_NR_HDR, 0, NULL);
    if (send_buf(fd, &b) < 0 || read_cmd(fd) != SMFIC_OPTNEG)
        goto out;
    size_t vlen = 300 * 1024;
    char *hdr = malloc(vlen + 16);
    memcpy(hdr, "X-Big", 6);
    memset(hdr + 6, 'v', vlen);
    hdr[6 + vlen] = '\0';
    mproto_put(&b, SMFIC_HEADER, hdr, vlen + 7);
    free(hdr);
    put_macros(&b, 1, 10);
    mproto_put_str(&b, SMFIC_MAIL, "<alice@example.org>");
    mproto_put(&b, SMFIC_QUIT, NULL, 0);
    send_buf(fd, &b);
    /* The header gets a CONTINUE (no-reply was not granted), then QUIT ends
     * the connection. */
    while ((cmd = read_cmd(fd)) == SMFIR_CONTINUE)
        ;
out:
    close(fd);
    buf_free(&b);
    return cmd;
}

static void test_macros(void)
{
    char path[] = "/tmp/filtermail-mserver-XXXXXX", sock[64], spec[80], err[256];
    CHECK(mkdtemp(path) != NULL);
    snprintf(sock, sizeof(sock), "%s/m.sock", path);
    snprintf(spec, sizeof(spec), "unix:%s", sock);
    struct mserver_config cfg = {.socket_spec = spec,
                                 .protocol = SMFIP_NR_MAIL,
                                 .timeout = 5,
                                 .max_sessions = 4,
                                 .cb = &cbs};
    struct mserver *srv = mserver_open(&cfg, err, sizeof(err));
    CHECKF(srv != NULL, "%s", err);
    if (srv == NULL)
        return;
    pthread_t t;
    pthread_create(&t, NULL, serve, srv);

    /* A few macros: kept; the session sees {auth_authen} at MAIL FROM, and
     * the connection ends at QUIT (no reply to MAIL was negotiated). */
    seen_auth[0] = '\0';
    CHECK_INT(session(sock, 3, 10), 0);
    CHECK_STR(seen_auth, "alice");
    /* 64 + 1 macros, or 70 KiB of them: the connection is closed before MAIL
     * FROM reaches the callback. */
    seen_auth[0] = '\0';
    CHECK(session(sock, 64, 10) <= 0);
    CHECK_STR(seen_auth, "");
    CHECK(session(sock, 7, 10 * 1024) <= 0);
    CHECK_STR(seen_auth, "");
    /* The server still serves afterwards. */
    CHECK_INT(session(sock, 3, 10), 0);
    CHECK_STR(seen_auth, "alice");
    /* A large packet first, then small ones on the same connection. */
    seen_auth[0] = '\0';
    header_len = 0;
    CHECK_INT(big_then_small(sock), 0);
    CHECK_INT(header_len, 300 * 1024);
    CHECK_STR(seen_auth, "alice");

    mserver_stop(srv);
    pthread_join(t, NULL);
    mserver_close(&srv);
    unlink(sock);
    rmdir(path);
}

int main(void)
{
    UNIT_RUN(test_macros);
    return unit_summary();
}
