/* Tests for mailbox.c: flag files, and safety against hostile addresses. */
#include "mailbox.h"
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256];      /* a temporary directory */
static char boxes[300];     /* root/boxes: mailboxes_dir */

static void mk(const char *rel, bool dir)
{
    char p[600];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    if (dir) {
        CHECKF(mkdir(p, 0755) == 0, "mkdir %s", p);
    } else {
        int fd = open(p, O_CREAT | O_WRONLY, 0644);
        CHECKF(fd >= 0, "create %s", p);
        if (fd >= 0)
            close(fd);
    }
}

static void setup(void)
{
    snprintf(root, sizeof(root), "/tmp/filtermail-mailbox-XXXXXX");
    if (mkdtemp(root) == NULL) {
        perror("mkdtemp");
        exit(1);
    }
    snprintf(boxes, sizeof(boxes), "%s/boxes", root);
    mk("boxes", true);
    mk("boxes/open@example.org", true);
    mk("boxes/enforcing@example.org", true);
    mk("boxes/enforcing@example.org/enforceE2EEincoming", false);
    mk("boxes/off@example.org", true);
    mk("boxes/off@example.org/DISABLED", false);
    mk("boxes/off@example.org/enforceE2EEincoming", false);
    mk("boxes/plainfile@example.org", false);
    /* Outside mailboxes_dir: must never be reached. */
    mk("outside", true);
    mk("outside/enforceE2EEincoming", false);
    mk("outside/DISABLED", false);
    char target[600], link[600];
    snprintf(target, sizeof(target), "%s/outside", root);
    snprintf(link, sizeof(link), "%s/boxes/link@example.org", root);
    CHECK(symlink(target, link) == 0);
    mk("boxes/flaglink@example.org", true);
    snprintf(target, sizeof(target), "%s/outside/DISABLED", root);
    snprintf(link, sizeof(link), "%s/boxes/flaglink@example.org/DISABLED", root);
    CHECK(symlink(target, link) == 0);
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", root);
}

static void test_flags(void)
{
    static const struct {
        const char *addr;
        int rc;
        bool enforce, disabled;
    } cases[] = {
        {"open@example.org", 0, false, false},
        {"enforcing@example.org", 0, true, false},
        {"off@example.org", 0, true, true},
        {"absent@example.org", 0, false, false},     /* no mailbox: cleartext is fine */
        {"plainfile@example.org", 0, false, false},  /* not a directory: no mailbox */
        {"", 0, true, false},                         /* invalid addresses enforce */
        {"noat", 0, true, false},
        {"../outside@x", 0, true, false},             /* '/' never reaches a path */
        {"a/b@example.org", 0, true, false},
        {"..@example.org", 0, false, false},
        {"link@example.org", -1, false, false},       /* symlinked mailbox: refused */
        {"flaglink@example.org", -1, false, false},   /* symlinked flag: refused */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mailbox_flags f;
        errno = 0;
        int rc = mailbox_lookup(boxes, cases[i].addr, &f);
        CHECKF(rc == cases[i].rc, "%s: rc %d (%s)", cases[i].addr, rc, strerror(errno));
        if (rc < 0) {
            CHECKF(errno == ELOOP, "%s: errno %s", cases[i].addr, strerror(errno));
            continue;
        }
        CHECKF(f.enforce_e2ee == cases[i].enforce, "%s: enforce %d", cases[i].addr,
               f.enforce_e2ee);
        CHECKF(f.disabled == cases[i].disabled, "%s: disabled %d", cases[i].addr, f.disabled);
    }
}

static void test_long_address(void)
{
    char addr[600];
    struct mailbox_flags f;
    memset(addr, 'x', sizeof(addr) - 1);
    addr[sizeof(addr) - 1] = '\0';
    addr[10] = '@';
    CHECK(mailbox_lookup(boxes, addr, &f) == 0);
    CHECK(!f.enforce_e2ee && !f.disabled);
}

static void test_missing_root(void)
{
    struct mailbox_flags f;
    char p[400];
    snprintf(p, sizeof(p), "%s/does-not-exist", root);
    CHECK(mailbox_lookup(p, "open@example.org", &f) == 0);
    CHECK(!f.enforce_e2ee && !f.disabled);
}

int main(void)
{
    setup();
    UNIT_RUN(test_flags);
    UNIT_RUN(test_long_address);
    UNIT_RUN(test_missing_root);
    teardown();
    return unit_summary();
}
