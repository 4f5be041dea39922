/* Fuzz target: the milter session core with the milter's own callbacks
 * (milter/filter.c), fed whatever bytes arrive on its socket, in two
 * pieces: no crash, no read outside the input, and every output is whole
 * milter packets. */
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "filter.h"
#include "log.h"
#include "mproto.h"
#include "msession.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct filter filter;
static const struct msession_config session_cfg = {FILTER_SESSION(&filter)};

static void setup(void)
{
    /* Under build/ (the fuzzers run from the repository root), kept. */
    static const char dir[] = "build/fuzz/msession";
    char p[256], err[256];
    struct config *c;
    mkdir("build/fuzz", 0755);
    mkdir(dir, 0755);
    snprintf(p, sizeof(p), "%s/two@example.org", dir);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/two@example.org/enforceE2EEincoming", dir);
    fclose(fopen(p, "w"));
    snprintf(p, sizeof(p), "%s/chatmail.ini", dir);
    FILE *f = fopen(p, "w");
    fprintf(f, "[params]\nmail_domain = example.org\nmailboxes_dir = %s\n"
               "max_message_size = 100000\nfiltermail_dkim_sign = no\n",
            dir);
    fclose(f);
    if (config_load(p, &c, err, sizeof(err)) < 0)
        abort();
    filter.config = config_live_new(c);
    log_init("fuzz_msession", "error");
}

static void check_output(struct msess *s)
{
    struct buf *out = msess_output(s);
    if (out->len == 0)
        return;
    struct mpacket p;
    size_t off = 0;
    long n;
    while ((n = mproto_next((const unsigned char *)out->data + off, out->len - off,
                            MPROTO_MAX_PACKET, &p)) > 0)
        off += (size_t)n;
    if (off != out->len)
        __builtin_trap();
    buf_reset(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    struct msess *s = msess_new(&session_cfg);
    if (s == NULL)
        return 0;
    size_t half = size > 0 ? data[0] % (size + 1) : 0;
    if (msess_push(s, data, half) == MSESS_GO_ON) {
        check_output(s);
        msess_push(s, data + half, size - half);
    }
    check_output(s);
    msess_free(&s);
    return 0;
}
