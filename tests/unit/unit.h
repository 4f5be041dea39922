/* unit: a minimal table-friendly test harness for the pure modules.
 *
 * Each tests/unit/test_<module>.c is its own program: its main() calls
 * UNIT_RUN(fn) for each test function and returns unit_summary(). A failed
 * CHECK prints file, line and the expression and marks the test failed; the
 * test goes on, so one run shows every failure. Tests run from the repository
 * root (tests/unit/run.sh does so), so data paths start with "tests/data/".
 */
#ifndef FILTERMAIL_UNIT_H
#define FILTERMAIL_UNIT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

extern int unit_failed_checks;

void unit_check_failed(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            unit_check_failed(__FILE__, __LINE__, "%s", #cond);                                    \
    } while (0)

/* Like CHECK, with a printf-style note (e.g. the table row's name). */
#define CHECKF(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond))                                                                               \
            unit_check_failed(__FILE__, __LINE__, __VA_ARGS__);                                    \
    } while (0)

#define CHECK_INT(got, want)                                                                       \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ != w_)                                                                              \
            unit_check_failed(__FILE__, __LINE__, "%s == %lld, want %lld", #got, g_, w_);          \
    } while (0)

#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if ((g_ == NULL) != (w_ == NULL) || (g_ != NULL && strcmp(g_, w_) != 0))                   \
            unit_check_failed(__FILE__, __LINE__, "%s == \"%s\", want \"%s\"", #got,               \
                              g_ ? g_ : "(null)", w_ ? w_ : "(null)");                             \
    } while (0)

void unit_run(const char *name, void (*fn)(void));
#define UNIT_RUN(fn) unit_run(#fn, fn)

/* Prints the totals; returns the process exit status (0 when all passed). */
int unit_summary(void);

/* Reads a whole file; aborts the test program if it cannot (missing test data
 * must fail loudly). The caller frees. The buffer has a NUL after len bytes. */
char *unit_read_file(const char *path, size_t *len_r);

#endif
