/* invocation: the transport's command line. */
#include "invocation.h"

#include <stdbool.h>
#include <string.h>

/* A queue id goes into log lines: keep it short and plain. */
static bool queue_id_ok(const char *q)
{
    size_t n = 0;
    for (; *q != '\0'; q++, n++)
        if (!((*q >= '0' && *q <= '9') || (*q >= 'A' && *q <= 'Z') || (*q >= 'a' && *q <= 'z') ||
              *q == '-'))
            return false;
    return n > 0 && n <= 32;
}

int invocation_parse(int argc, char **argv, struct invocation *inv)
{
    int i = 2;
    memset(inv, 0, sizeof(*inv));
    inv->queue_id = "-";
    if (argc < 2 || argv[1][0] == '-')
        return -1;
    inv->config = argv[1];
    while (i < argc) {
        if (strcmp(argv[i], "--") == 0) {
            i++;
            break;
        }
        if (strcmp(argv[i], "-q") == 0 && i + 1 < argc) {
            inv->queue_id = argv[i + 1];
            i += 2;
        } else if (strcmp(argv[i], "-f") == 0 && i + 1 < argc) {
            inv->sender = argv[i + 1];
            i += 2;
        } else {
            return -1;
        }
    }
    if (inv->sender == NULL)
        return -1;
    if (!queue_id_ok(inv->queue_id))
        inv->queue_id = "-";
    inv->rcpts = (const char *const *)argv + i;
    inv->nrcpts = (size_t)(argc - i);
    return 0;
}
