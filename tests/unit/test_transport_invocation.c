/* Tests for pipe-transport/invocation.c: the command line pipe(8) passes. */
#include "invocation.h"
#include "unit.h"

#include <string.h>

static void test_table(void)
{
    static const struct {
        const char *name;
        const char *argv[8];
        int rc;
        const char *queue_id, *sender;
        size_t nrcpts;
    } cases[] = {
        {"full", {"t", "/etc/c.ini", "-q", "4AbC-1", "-f", "a@b", "--", "x@y"}, 0, "4AbC-1", "a@b", 1},
        {"null sender, two", {"t", "c", "-f", "", "--", "x@y", "z@w"}, 0, "-", "", 2},
        {"no --", {"t", "c", "-f", "a@b"}, 0, "-", "a@b", 0},
        {"after --, options are recipients", {"t", "c", "-f", "a@b", "--", "-q"}, 0, "-", "a@b", 1},
        {"queue id with a space", {"t", "c", "-q", "a b", "-f", "a@b", "--", "x@y"}, 0, "-", "a@b", 1},
        {"queue id too long",
         {"t", "c", "-q", "123456789012345678901234567890123", "-f", "s", "--", "r"}, 0, "-", "s", 1},
        {"empty queue id", {"t", "c", "-q", "", "-f", "s", "--", "r"}, 0, "-", "s", 1},
        {"no -f", {"t", "c", "-q", "Q", "--", "r"}, -1, NULL, NULL, 0},
        {"-f without a value", {"t", "c", "-f"}, -1, NULL, NULL, 0},
        {"unknown option", {"t", "c", "-x", "1", "-f", "s", "--", "r"}, -1, NULL, NULL, 0},
        {"no config", {"t"}, -1, NULL, NULL, 0},
        {"option for a config", {"t", "-f", "s", "--", "r"}, -1, NULL, NULL, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *argv[9] = {0};
        int argc = 0;
        while (argc < 8 && cases[i].argv[argc] != NULL) {
            argv[argc] = (char *)cases[i].argv[argc];
            argc++;
        }
        struct invocation inv;
        int rc = invocation_parse(argc, argv, &inv);
        CHECKF(rc == cases[i].rc, "%s: rc %d", cases[i].name, rc);
        if (rc != 0 || cases[i].rc != 0)
            continue;
        CHECKF(strcmp(inv.config, argv[1]) == 0, "%s: config", cases[i].name);
        CHECKF(strcmp(inv.queue_id, cases[i].queue_id) == 0, "%s: queue id %s", cases[i].name,
               inv.queue_id);
        CHECKF(strcmp(inv.sender, cases[i].sender) == 0, "%s: sender", cases[i].name);
        CHECKF(inv.nrcpts == cases[i].nrcpts, "%s: %zu recipients", cases[i].name, inv.nrcpts);
        if (inv.nrcpts > 0)
            CHECKF(inv.rcpts[inv.nrcpts - 1] == argv[argc - 1], "%s: last recipient",
                   cases[i].name);
    }
}

int main(void)
{
    UNIT_RUN(test_table);
    return unit_summary();
}
