/* unit: a minimal harness for the unit tests. */
#include "unit.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int unit_failed_checks;
static int unit_tests, unit_failed_tests;

void unit_check_failed(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "  FAIL %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    unit_failed_checks++;
}

void unit_run(const char *name, void (*fn)(void))
{
    int before = unit_failed_checks;
    unit_tests++;
    fn();
    if (unit_failed_checks != before) {
        unit_failed_tests++;
        fprintf(stderr, "not ok %s\n", name);
    } else {
        printf("ok %s\n", name);
    }
}

int unit_summary(void)
{
    printf("%d tests, %d failed (%d failed checks)\n", unit_tests, unit_failed_tests,
           unit_failed_checks);
    if (unit_tests == 0) {
        fprintf(stderr, "no tests ran\n");
        return 1;
    }
    return unit_failed_tests == 0 ? 0 : 1;
}

char *unit_read_file(const char *path, size_t *len_r)
{
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    size_t len = 0, cap = 0, n;

    if (f == NULL) {
        fprintf(stderr, "cannot open test data %s\n", path);
        abort();
    }
    do {
        if (cap - len < 65536) {
            cap = cap ? cap * 2 : 65536;
            data = realloc(data, cap + 1);
            if (data == NULL)
                abort();
        }
        n = fread(data + len, 1, cap - len, f);
        len += n;
    } while (n > 0);
    if (ferror(f))
        abort();
    fclose(f);
    data[len] = '\0';
    *len_r = len;
    return data;
}
