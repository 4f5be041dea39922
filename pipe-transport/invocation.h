/* invocation: what pipe(8) passes filtermail-transport on its command line
 * (master.cf's argv):
 *
 *     filtermail-transport CONFIG [-q QUEUE_ID] -f SENDER -- RECIPIENT...
 *
 * Pure; thread-safe.
 */
#ifndef FILTERMAIL_TRANSPORT_INVOCATION_H
#define FILTERMAIL_TRANSPORT_INVOCATION_H

#include <stddef.h>

struct invocation {
    const char *config;         /* the configuration file */
    const char *queue_id;       /* for log lines: letters, digits and '-', at most
                                 * 32; "-" when absent or anything else */
    const char *sender;         /* "" for the null sender */
    const char *const *rcpts;   /* argv's own strings, unchecked (envelope.c checks) */
    size_t nrcpts;
};

/* Reads argv (argc > 0). Returns 0, or -1 when it is not the form above (no
 * CONFIG, an unknown option, no -f); the pointers point into argv. */
int invocation_parse(int argc, char **argv, struct invocation *inv);

#endif
