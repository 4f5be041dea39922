/* Fuzz target: the chatmail.ini parser never crashes or leaks, and either
 * yields a config with mail_domain set or an error message. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct config *cfg = NULL;

    err[0] = '\0';
    if (config_parse((const char *)data, size, "fuzz.ini", &cfg, err, sizeof(err)) == 0) {
        if (cfg == NULL || cfg->mail_domain == NULL || cfg->mail_domain[0] == '\0' ||
            cfg->mailboxes_dir == NULL)
            __builtin_trap();
    } else if (cfg != NULL || strncmp(err, "fuzz.ini: ", 10) != 0) {
        __builtin_trap();
    }
    config_free(&cfg);
    return 0;
}
