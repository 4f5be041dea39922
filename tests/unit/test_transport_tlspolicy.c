/* Tests for pipe-transport/tlspolicy.c: the no-STARTTLS exceptions file. */
#include "tlspolicy.h"
#include "unit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct tls_policy_table *parse(const char *text)
{
    char err[256];
    struct tls_policy_table *t = NULL;
    int rc = tls_policy_parse(text, strlen(text), "policy", &t, err, sizeof(err));
    CHECKF(rc == 0, "parse failed: %s", err);
    return t;
}

static void test_lookup(void)
{
    struct tls_policy_table *t = parse("# exceptions\n"
                                       "\n"
                                       "nauta.cu no-starttls\n"
                                       "  Example.NET\tno-starttls   # comment\r\n"
                                       ".sub.example.org no-starttls");
    if (t == NULL)
        return;
    CHECK_INT(tls_policy_count(t), 3);
    CHECK(tls_policy_lookup(t, "nauta.cu") == TLS_POLICY_NO_STARTTLS);
    CHECK(tls_policy_lookup(t, "example.net") == TLS_POLICY_NO_STARTTLS);
    CHECK(tls_policy_lookup(t, "x.nauta.cu") == TLS_POLICY_DEFAULT);
    CHECK(tls_policy_lookup(t, "anauta.cu") == TLS_POLICY_DEFAULT);
    CHECK(tls_policy_lookup(t, "a.sub.example.org") == TLS_POLICY_NO_STARTTLS);
    CHECK(tls_policy_lookup(t, "sub.example.org") == TLS_POLICY_DEFAULT);
    CHECK(tls_policy_lookup(t, "xsub.example.org") == TLS_POLICY_DEFAULT);
    CHECK(tls_policy_lookup(t, "example.org") == TLS_POLICY_DEFAULT);
    CHECK(tls_policy_lookup(NULL, "nauta.cu") == TLS_POLICY_DEFAULT);
    tls_policy_free(&t);
    CHECK(t == NULL);
    t = parse("");
    CHECK_INT(tls_policy_count(t), 0);
    tls_policy_free(&t);
}

static void test_errors(void)
{
    static const struct {
        const char *text, *want;
    } bad[] = {
        {"nauta.cu\n", "line 1: a domain without a policy"},
        {"# x\nnauta.cu plain\n", "line 2: unknown policy \"plain\""},
        {"nauta.cu no-starttls extra\n", "unexpected text"},
        {"bad_/name no-starttls\n", "bad domain"},
        {"a..b no-starttls\n", "bad domain"},
        {". no-starttls\n", "bad domain"},
        {"n\xc3\xa4uta.cu no-starttls\n", "bad domain"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        struct tls_policy_table *t = NULL;
        CHECKF(tls_policy_parse(bad[i].text, strlen(bad[i].text), "policy", &t, err,
                                sizeof(err)) < 0,
               "%s parsed", bad[i].text);
        CHECK(t == NULL);
        CHECKF(strstr(err, bad[i].want) != NULL, "error [%s] lacks [%s]", err, bad[i].want);
    }
    char line[TLS_POLICY_LINE_MAX + 10];
    memset(line, 'a', sizeof(line) - 1);
    line[sizeof(line) - 1] = '\0';
    char err[256];
    struct tls_policy_table *t = NULL;
    CHECK(tls_policy_parse(line, strlen(line), "p", &t, err, sizeof(err)) < 0);
    CHECK(strstr(err, "longer than") != NULL);
    CHECK(tls_policy_parse("a\0b", 3, "p", &t, err, sizeof(err)) < 0);
}

static void test_load(void)
{
    char path[] = "/tmp/filtermail-policy-XXXXXX", err[256];
    struct tls_policy_table *t = NULL;
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    CHECK(write(fd, "nauta.cu no-starttls\n", 21) == 21);
    close(fd);
    CHECK(tls_policy_load(path, &t, err, sizeof(err)) == 0);
    CHECK(tls_policy_lookup(t, "nauta.cu") == TLS_POLICY_NO_STARTTLS);
    tls_policy_free(&t);
    unlink(path);
    CHECK(tls_policy_load(path, &t, err, sizeof(err)) < 0);
    CHECK(strstr(err, path) != NULL);
    /* Not a regular file; larger than the bound. */
    CHECK(tls_policy_load("/tmp", &t, err, sizeof(err)) < 0);
    CHECKF(strstr(err, "not a regular file") != NULL, "%s", err);
    memcpy(path + strlen(path) - 6, "XXXXXX", 6);
    fd = mkstemp(path);
    CHECK(fd >= 0 && ftruncate(fd, TLS_POLICY_MAX_FILE + 1) == 0);
    close(fd);
    CHECK(tls_policy_load(path, &t, err, sizeof(err)) < 0);
    CHECKF(strstr(err, "larger than") != NULL, "%s", err);
    unlink(path);
}

int main(void)
{
    UNIT_RUN(test_lookup);
    UNIT_RUN(test_errors);
    UNIT_RUN(test_load);
    return unit_summary();
}
