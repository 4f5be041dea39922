/* Tests for common/log.c: every line is one safe line, whatever text a
 * peer put into it, and the lines operators match keep their wording. */
#include "log.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Runs one log_msg with stderr on a pipe; returns what was written. */
static const char *captured(enum log_level level, const char *target, const char *text)
{
    static char out[8192];
    int p[2], saved = dup(STDERR_FILENO);
    size_t have = 0;
    ssize_t n;

    out[0] = '\0';
    if (saved < 0 || pipe(p) < 0)
        return out;
    dup2(p[1], STDERR_FILENO);
    close(p[1]);
    log_msg(level, target, "%s", text);
    dup2(saved, STDERR_FILENO);
    close(saved);
    while (have + 1 < sizeof(out) && (n = read(p[0], out + have, sizeof(out) - 1 - have)) > 0)
        have += (size_t)n;
    close(p[0]);
    out[have] = '\0';
    return out;
}

static void test_sanitised_in_one_place(void)
{
    static const struct {
        const char *name, *text, *want;
    } cases[] = {
        /* Operators' mtail rules match these: unchanged. */
        {"metric line", "Incoming: Filtering encrypted mail.",
         "[INFO  filtermail::inbound] Incoming: Filtering encrypted mail.\n"},
        {"mailer-daemon", "Incoming: Filtering mailer-daemon message from <md@example.net>",
         "[INFO  filtermail::inbound] Incoming: Filtering mailer-daemon message from "
         "<md@example.net>\n"},
        /* An RFC 2047-decoded From with a newline cannot start a forged line. */
        {"LF", "from <mailer-daemon@example.net\n[WARN  x] injected2>",
         "[INFO  filtermail::inbound] from <mailer-daemon@example.net?[WARN  x] injected2>\n"},
        {"CR LF", "a\r\nb", "[INFO  filtermail::inbound] a??b\n"},
        {"TAB ESC DEL", "a\tb\033[31mc\177", "[INFO  filtermail::inbound] a?b?[31mc?\n"},
        {"UTF-8 kept", "J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x94\x92",
         "[INFO  filtermail::inbound] J\xc3\xbcrgen \xe2\x82\xac \xf0\x9f\x94\x92\n"},
        {"invalid UTF-8", "a\xff" "b\xc3(c\xe2\x82", "[INFO  filtermail::inbound] a?b?(c??\n"},
        {"overlong", "\xc0\xaf", "[INFO  filtermail::inbound] ??\n"},
        {"surrogate", "\xed\xa0\x80", "[INFO  filtermail::inbound] ???\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = captured(LOGL_INFO, "filtermail::inbound", cases[i].text);
        CHECKF(strcmp(got, cases[i].want) == 0, "%s: got \"%s\"", cases[i].name, got);
    }
}

/* A message longer than the line is cut, still one line ending in "...". */
static void test_long_message_one_line(void)
{
    static char text[10000];
    memset(text, 'x', sizeof(text) - 1);
    for (size_t i = 100; i < sizeof(text) - 1; i += 100)
        text[i] = '\n';
    const char *got = captured(LOGL_WARN, "t", text);
    size_t len = strlen(got);
    CHECK(len > 4000 && len < 4300);
    CHECK(strchr(got, '\n') == got + len - 1);
    CHECK(len > 4 && memcmp(got + len - 4, "...\n", 4) == 0);
}

static void test_levels(void)
{
    CHECK_STR(captured(LOGL_DEBUG, "t", "hidden"), "");
    CHECK_STR(captured(LOGL_ERROR, "t", "e"), "[ERROR t] e\n");
    CHECK_STR(captured(LOGL_WARN, "t", "w"), "[WARN  t] w\n");
}

int main(void)
{
    unsetenv("RUST_LOG");
    log_init("test_log", "info");
    UNIT_RUN(test_sanitised_in_one_place);
    UNIT_RUN(test_long_message_one_line);
    UNIT_RUN(test_levels);
    return unit_summary();
}
