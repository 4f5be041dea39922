/* Tests for config.c: chatmail.ini as upstream reads it (spec 2, 13.1). */
#include "config.h"
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct config *parse_ok(const char *text)
{
    char err[512];
    struct config *c = NULL;
    int rc = config_parse(text, strlen(text), "test.ini", &c, err, sizeof(err));
    CHECKF(rc == 0, "parse failed: %s", err);
    return c;
}

/* Expects an error whose message contains want. */
static void parse_err(const char *text, const char *want)
{
    char err[512];
    struct config *c = NULL;
    int rc = config_parse(text, strlen(text), "test.ini", &c, err, sizeof(err));
    CHECKF(rc < 0, "parse of [%s] succeeded, want error %s", text, want);
    CHECK(c == NULL);
    if (rc < 0)
        CHECKF(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
    config_free(&c);
}

static void test_defaults(void)
{
    struct config *c = parse_ok("[params]\nmail_domain = example.org\n");
    if (c == NULL)
        return;
    CHECK_STR(c->mail_domain, "example.org");
    CHECK_STR(c->mailboxes_dir, "/home/vmail/mail/example.org");
    CHECK_STR(c->filtermail_host, "127.0.0.1");
    CHECK_INT(c->filtermail_smtp_port, 10080);
    CHECK_INT(c->filtermail_smtp_port_incoming, 10081);
    CHECK_INT(c->filtermail_http_port_incoming, 10082);
    CHECK_INT(c->filtermail_lmtp_port_transport, 10083);
    CHECK_STR(c->postfix_host, "127.0.0.1");
    CHECK_INT(c->postfix_reinject_port, 10025);
    CHECK_INT(c->postfix_reinject_port_incoming, 10026);
    CHECK_INT(c->max_message_size, 31457280);
    CHECK_INT(c->max_user_send_per_minute, 60);
    CHECK_INT(c->max_user_send_burst_size, 10);
    CHECK_INT(c->passthrough_senders.n, 0);
    CHECK_INT(c->passthrough_recipients.n, 0);
    CHECK_STR(c->milter_socket, "unix:/var/spool/postfix/filtermail/milter.sock");
    CHECK_INT(c->outgoing_daemon_names.n, 1);
    CHECK(config_list_has(&c->outgoing_daemon_names, "ORIGINATING"));
    CHECK_STR(c->user, "filtermail");
    CHECK_STR(c->socket_group, "postfix");
    CHECK_STR(c->log_level, "info");
    CHECK(c->dkim_sign);
    CHECK_STR(c->dkim_selector, "opendkim");
    CHECK_STR(c->dkim_key, "/etc/dkimkeys/opendkim.private");
    CHECK_STR(c->rejected_dir, "/var/lib/filtermail/rejected");
    CHECK_INT(c->rejected_max_files, 100);
    CHECK_INT(c->rejected_max_bytes, 104857600);
    CHECK_STR(c->unbound_config, "");
    CHECK_STR(c->trust_anchor, "/usr/share/dns/root.key");
    CHECK_INT(c->dns_timeout, 10);
    CHECK_STR(c->policy_socket, "unix:/var/spool/postfix/filtermail/policy.sock");
    CHECK_INT(c->ratelimit_exempt.n, 0);
    CHECK_STR(c->ratelimit_redis, "");
    CHECK_STR(c->ratelimit_redis_fallback, "local");
    CHECK_STR(c->ratelimit_state, "/var/lib/filtermail/ratelimit.state");
    CHECK_INT(c->transport_smtp_port, 25);
    CHECK_INT(c->transport_https_port, 443);
    CHECK_STR(c->tls_ca_file, "");
    CHECK_STR(c->transport_state, "/var/lib/filtermail/transport");
    CHECK_STR(c->transport_tls_policy, "");
    CHECK_STR(c->transport_log, "syslog");
    CHECK_INT(c->transport_connect_timeout, 30);
    CHECK_INT(c->transport_io_timeout, 120);
    CHECK_INT(c->transport_https_timeout, 60);
    CHECK_INT(c->transport_deadline, 600);
    CHECK_INT(c->transport_down_time, 300);
    CHECK_INT(c->transport_destination_concurrency, 20);
    config_free(&c);
    CHECK(c == NULL);
}

static void test_values(void)
{
    struct config *c = parse_ok("; a comment\n"
                                "root_key = ignored\n"
                                "[other]\n"
                                "mail_domain = wrong.example\n"
                                "[params]\r\n"
                                "  mail_domain=chat.example.org  \r\n"
                                "  # indented comment\n"
                                "mailboxes_dir = /srv/mail\n"
                                "max_message_size = +1000\n"
                                "filtermail_smtp_port = 20025\n"
                                "passthrough_senders =  a@x  b@y \n"
                                "passthrough_recipients = @example.org\n"
                                "filtermail_outgoing_daemon_names = ORIGINATING SUBMISSION\n"
                                "foo = bar\n"
                                "filtermail_host = ::1\n"
                                "max_user_send_burst_size = 3\n"
                                "max_user_send_burst_size = 4\n"
                                "filtermail_dkim_sign = no\n"
                                "filtermail_rejected_dir =\n");
    if (c == NULL)
        return;
    CHECK_STR(c->mail_domain, "chat.example.org");
    CHECK_STR(c->mailboxes_dir, "/srv/mail");
    CHECK_INT(c->max_message_size, 1000);
    CHECK_INT(c->filtermail_smtp_port, 20025);
    CHECK_INT(c->passthrough_senders.n, 2);
    CHECK(config_list_has(&c->passthrough_senders, "a@x"));
    CHECK(config_list_has(&c->passthrough_senders, "b@y"));
    CHECK(!config_list_has(&c->passthrough_senders, "c@z"));
    CHECK_INT(c->passthrough_recipients.n, 1);
    CHECK_INT(c->outgoing_daemon_names.n, 2);
    CHECK_STR(c->filtermail_host, "::1");
    CHECK_INT(c->max_user_send_burst_size, 4); /* the last of repeated keys wins */
    CHECK(!c->dkim_sign);
    CHECK_STR(c->rejected_dir, "");
    config_free(&c);
}

static void test_serini_rules(void)
{
    struct config *c;

    /* No inline comments: the value keeps the text after '#' or ';'. */
    c = parse_ok("[params]\nmail_domain = a.example ; not a comment\n");
    if (c != NULL)
        CHECK_STR(c->mail_domain, "a.example ; not a comment");
    config_free(&c);
    /* Quotes are kept; escapes are undone. */
    c = parse_ok("[params]\nmail_domain = \"x\"\nmailboxes_dir = /a\\;b\\#c\\\\d\\\"\n");
    if (c != NULL) {
        CHECK_STR(c->mail_domain, "\"x\"");
        CHECK_STR(c->mailboxes_dir, "/a;b#c\\d\"");
    }
    config_free(&c);
    /* An indented line is a key of its own, not a continuation. */
    c = parse_ok("[params]\nmail_domain = a.example\n  max_message_size = 5\n");
    if (c != NULL) {
        CHECK_STR(c->mail_domain, "a.example");
        CHECK_INT(c->max_message_size, 5);
    }
    config_free(&c);
    /* Declaring [params] again discards its earlier keys. */
    c = parse_ok("[params]\nmail_domain = a.example\nmax_message_size = 5\n"
                 "[params]\nmail_domain = b.example\n");
    if (c != NULL) {
        CHECK_STR(c->mail_domain, "b.example");
        CHECK_INT(c->max_message_size, 31457280);
    }
    config_free(&c);
    /* Long lines are not truncated. */
    char text[5000];
    char dir[4000];
    memset(dir, 'd', sizeof(dir) - 1);
    dir[0] = '/';
    dir[sizeof(dir) - 1] = '\0';
    snprintf(text, sizeof(text), "[params]\nmail_domain = x\nmailboxes_dir = %s\n", dir);
    c = parse_ok(text);
    if (c != NULL)
        CHECK_STR(c->mailboxes_dir, dir);
    config_free(&c);
    /* A file without a final newline. */
    c = parse_ok("[params]\nmail_domain = x");
    if (c != NULL)
        CHECK_STR(c->mail_domain, "x");
    config_free(&c);
}

static void test_transport_keys(void)
{
    struct config *c = parse_ok("[params]\nmail_domain = x\n"
                                "filtermail_transport_smtp_port = 2525\n"
                                "filtermail_transport_https_port = 8443\n"
                                "filtermail_tls_ca_file = /etc/ssl/test-ca.pem\n"
                                "filtermail_transport_state =\n"
                                "filtermail_transport_tls_policy = /etc/filtermail/tls_policy\n"
                                "filtermail_transport_log = /var/log/filtermail-transport.log\n"
                                "filtermail_transport_connect_timeout = 5\n"
                                "filtermail_transport_io_timeout = 6\n"
                                "filtermail_transport_https_timeout = 7\n"
                                "filtermail_transport_deadline = 8\n"
                                "filtermail_transport_down_time = 9\n"
                                "filtermail_transport_destination_concurrency = 4\n");
    if (c == NULL)
        return;
    CHECK_INT(c->transport_smtp_port, 2525);
    CHECK_INT(c->transport_https_port, 8443);
    CHECK_STR(c->tls_ca_file, "/etc/ssl/test-ca.pem");
    CHECK_STR(c->transport_state, "");
    CHECK_STR(c->transport_tls_policy, "/etc/filtermail/tls_policy");
    CHECK_STR(c->transport_log, "/var/log/filtermail-transport.log");
    CHECK_INT(c->transport_connect_timeout, 5);
    CHECK_INT(c->transport_io_timeout, 6);
    CHECK_INT(c->transport_https_timeout, 7);
    CHECK_INT(c->transport_deadline, 8);
    CHECK_INT(c->transport_down_time, 9);
    CHECK_INT(c->transport_destination_concurrency, 4);
    config_free(&c);
    c = parse_ok("[params]\nmail_domain = x\nfiltermail_transport_log = stderr\n");
    if (c != NULL)
        CHECK_STR(c->transport_log, "stderr");
    config_free(&c);
    parse_err("[params]\nmail_domain = x\nfiltermail_transport_smtp_port = 0\n",
              "filtermail_transport_smtp_port");
    parse_err("[params]\nmail_domain = x\nfiltermail_transport_https_port = 65536\n",
              "filtermail_transport_https_port");
    parse_err("[params]\nmail_domain = x\nfiltermail_transport_log = relative.log\n",
              "filtermail_transport_log");
    parse_err("[params]\nmail_domain = x\nfiltermail_transport_log =\n",
              "filtermail_transport_log");
    parse_err("[params]\nmail_domain = x\nfiltermail_transport_deadline = 0\n",
              "filtermail_transport_deadline");
    parse_err("[params]\nmail_domain = x\nfiltermail_transport_destination_concurrency = 0\n",
              "filtermail_transport_destination_concurrency");
    parse_err("[params]\nmail_domain = x\nfiltermail_transport_connect_timeout = 1s\n",
              "filtermail_transport_connect_timeout");
}

static void test_errors(void)
{
    parse_err("mail_domain = x\n", "no [params] section");
    parse_err("[params]\n", "missing key mail_domain");
    parse_err("[ params ]\nmail_domain = x\n", "no [params] section");
    parse_err("[params]\nmail_domain = x\nfiltermail_smtp_port = abc\n", "filtermail_smtp_port");
    parse_err("[params]\nmail_domain = x\nfiltermail_smtp_port = 20025 # comment\n",
              "filtermail_smtp_port");
    parse_err("[params]\nmail_domain = x\nfiltermail_smtp_port = 70000\n", "filtermail_smtp_port");
    parse_err("[params]\nmail_domain = x\nfiltermail_smtp_port = 0\n", "filtermail_smtp_port");
    parse_err("[params]\nmail_domain = x\npostfix_reinject_port =\n", "postfix_reinject_port");
    parse_err("[params]\nmail_domain = x\nmax_message_size = 99999999999999999999999\n",
              "max_message_size");
    parse_err("[params]\nmail_domain = x\nmax_message_size = -1\n", "max_message_size");
    parse_err("[params]\nmail_domain = x\nmax_user_send_per_minute = 0\n",
              "max_user_send_per_minute");
    parse_err("[params]\nmail_domain = x\nmax_user_send_burst_size = 0\n",
              "max_user_send_burst_size");
    parse_err("[params]\nmail_domain = x\nfiltermail_host = localhost\n", "filtermail_host");
    parse_err("[params]\nmail_domain = x\nfiltermail_log_level = loud\n", "filtermail_log_level");
    parse_err("[params]\nmail_domain =\n", "mail_domain");
    parse_err("[params]\nmail_domain = x\nfiltermail_dkim_sign = maybe\n", "filtermail_dkim_sign");
    parse_err("[params]\nmail_domain = x\nfiltermail_ratelimit_redis_fallback = drop\n",
              "filtermail_ratelimit_redis_fallback");
    parse_err("[params]\nmail_domain = x\nfiltermail_dkim_selector =\n", "filtermail_dkim_selector");
    parse_err("[params]\nmail_domain = \xff\xfe\n", "UTF-8");
    parse_err("[params]\nmail_domain = \xc0\xaf\n", "UTF-8"); /* overlong */
}

static void test_load(void)
{
    char err[512], path[] = "/tmp/filtermail-test-XXXXXX";
    struct config *c = NULL;
    int fd;

    CHECK(config_load("/nonexistent/chatmail.ini", &c, err, sizeof(err)) < 0);
    CHECK(strstr(err, "/nonexistent/chatmail.ini") != NULL);
    CHECK(strstr(err, "No such file") != NULL);
    CHECK(config_load("/tmp", &c, err, sizeof(err)) < 0);

    fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0)
        return;
    const char text[] = "[params]\nmail_domain = file.example\n";
    CHECK(write(fd, text, sizeof(text) - 1) == (ssize_t)(sizeof(text) - 1));
    close(fd);
    CHECK(config_load(path, &c, err, sizeof(err)) == 0);
    if (c != NULL)
        CHECK_STR(c->mail_domain, "file.example");
    config_free(&c);
    unlink(path);
}

/* config_changed names the first differing key, by type, lists included. */
static void test_changed(void)
{
    struct config *a = parse_ok("[params]\nmail_domain = x.org\nmax_message_size = 10\n"
                                "filtermail_ratelimit_exempt = a b\nfiltermail_dkim_sign = yes\n");
    struct config *b = parse_ok("[params]\nmail_domain = x.org\nmax_message_size = 10\n"
                                "filtermail_ratelimit_exempt = a c\nfiltermail_dkim_sign = no\n");
    static const char *const same[] = {"mail_domain", "max_message_size",
                                       "filtermail_milter_socket", NULL};
    static const char *const list[] = {"mail_domain", "filtermail_ratelimit_exempt", NULL};
    static const char *const flag[] = {"filtermail_dkim_sign", NULL};
    static const char *const bad[] = {"no_such_key", NULL};
    if (a == NULL || b == NULL)
        return;
    CHECK(config_changed(a, b, same) == NULL);
    CHECK_STR(config_changed(a, b, list), "filtermail_ratelimit_exempt");
    CHECK_STR(config_changed(a, b, flag), "filtermail_dkim_sign");
    CHECK_STR(config_changed(a, b, bad), "no_such_key");
    CHECK(config_changed(a, a, list) == NULL);
    config_free(&a);
    config_free(&b);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f != NULL) {
        fputs(text, f);
        fclose(f);
    }
}

/* A reload takes what each daemon may change at run time from the file and
 * keeps the rest as running, naming the first such key that changed. */
static void test_reload(void)
{
    char err[512], path[] = "/tmp/filtermail-reload-XXXXXX";
    struct config *run = NULL, *n = NULL;
    const char *restart;
    int fd = mkstemp(path);

    CHECK(fd >= 0);
    if (fd < 0)
        return;
    close(fd);
    write_text(path, "[params]\nmail_domain = a.example\nmax_message_size = 1000\n"
                     "max_user_send_per_minute = 5\nfiltermail_log_level = info\n"
                     "filtermail_ratelimit_state = /var/lib/a.state\n");
    CHECK(config_load(path, &run, err, sizeof(err)) == 0);
    if (run == NULL)
        return;

    /* Nothing changed. */
    CHECK_INT(config_reload(path, run, CONFIG_PROG_POLICYD, NULL, &n, &restart, err, sizeof(err)),
              0);
    CHECK(restart == NULL);
    config_free(&n);

    write_text(path, "[params]\nmail_domain = b.example\nmax_message_size = 2000\n"
                     "max_user_send_per_minute = 7\nfiltermail_log_level = debug\n"
                     "filtermail_ratelimit_state = /var/lib/b.state\n"
                     "filtermail_ratelimit_exempt = bot@b.example\n");
    /* The policy server: limits and exemptions change, its state file and
     * log level do not. */
    CHECK_INT(config_reload(path, run, CONFIG_PROG_POLICYD, NULL, &n, &restart, err, sizeof(err)),
              0);
    CHECK_STR(restart, "filtermail_log_level");
    if (n != NULL) {
        CHECK_INT(n->max_user_send_per_minute, 7);
        CHECK(config_list_has(&n->ratelimit_exempt, "bot@b.example"));
        CHECK_STR(n->ratelimit_state, "/var/lib/a.state");
        CHECK_STR(n->log_level, "info");
        CHECK_STR(n->mail_domain, "b.example"); /* not the policy server's */
    }
    config_free(&n);
    /* Fixed for this run only (the policy server's limits with Redis). */
    static const char *const limits[] = {"max_user_send_per_minute", "filtermail_ratelimit_exempt",
                                         NULL};
    CHECK_INT(config_reload(path, run, CONFIG_PROG_POLICYD, limits, &n, &restart, err,
                            sizeof(err)),
              0);
    CHECK_STR(restart, "max_user_send_per_minute");
    if (n != NULL) {
        CHECK_INT(n->max_user_send_per_minute, 5);
        CHECK_INT(n->ratelimit_exempt.n, 0);
    }
    config_free(&n);
    /* mxdeliv: the size limit changes. The milter: not its mail_domain. */
    CHECK_INT(config_reload(path, run, CONFIG_PROG_MXDELIV, NULL, &n, &restart, err, sizeof(err)),
              0);
    if (n != NULL)
        CHECK_INT(n->max_message_size, 2000);
    config_free(&n);
    CHECK_INT(config_reload(path, run, CONFIG_PROG_MILTER, NULL, &n, &restart, err, sizeof(err)),
              0);
    CHECK_STR(restart, "mail_domain");
    if (n != NULL) {
        CHECK_STR(n->mail_domain, "a.example");
        CHECK_INT(n->max_message_size, 2000);
    }
    config_free(&n);

    /* A file that does not load: an error, nothing new. */
    write_text(path, "[params]\nmax_message_size = lots\n");
    CHECK_INT(config_reload(path, run, CONFIG_PROG_MXDELIV, NULL, &n, &restart, err, sizeof(err)),
              -1);
    CHECK(n == NULL && strstr(err, "mail_domain") != NULL);

    /* Any number of reloads, each replacing the last whole: nothing grows
     * (LeakSanitizer checks that each old one was freed). */
    write_text(path, "[params]\nmail_domain = c.example\nfiltermail_ratelimit_exempt = a b c\n");
    for (int i = 0; i < 2000; i++) {
        CHECK_INT(config_reload(path, run, CONFIG_PROG_POLICYD, NULL, &n, &restart, err,
                                sizeof(err)),
                  0);
        config_free(&run);
        run = n;
        n = NULL;
    }
    CHECK(run != NULL && run->ratelimit_exempt.n == 3);
    config_free(&run);
    unlink(path);
}

struct reader_arg {
    struct config_live *live;
    atomic_bool stop;
    unsigned long reads;
};

static void *reader(void *p)
{
    struct reader_arg *a = p;
    while (!atomic_load(&a->stop)) {
        const struct config *c = config_live_get(a->live);
        if (strcmp(c->mail_domain, "live.example") != 0)
            abort();
        config_release(&c);
        a->reads++;
    }
    return NULL;
}

/* Threads reading the live configuration while it is replaced: each sees a
 * whole one, and the replaced ones are freed once their last reader is done
 * (ASan reports a use after free or a leak otherwise). */
static void test_live(void)
{
    char err[256];
    const char text[] = "[params]\nmail_domain = live.example\n";
    struct config *c;
    struct reader_arg a = {0};
    pthread_t t[2];

    CHECK(config_parse(text, sizeof(text) - 1, "t", &c, err, sizeof(err)) == 0);
    a.live = config_live_new(c);
    CHECK(a.live != NULL);
    if (a.live == NULL)
        return;
    /* A reference outlives the holder's. */
    const struct config *held = config_live_get(a.live);
    for (int i = 0; i < 2; i++)
        CHECK(pthread_create(&t[i], NULL, reader, &a) == 0);
    for (int i = 0; i < 500; i++) {
        struct config *n;
        CHECK(config_parse(text, sizeof(text) - 1, "t", &n, err, sizeof(err)) == 0);
        config_live_set(a.live, n);
    }
    atomic_store(&a.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    CHECK_STR(held->mail_domain, "live.example");
    config_release(&held);
    CHECK(held == NULL);
    config_live_free(&a.live);
    CHECK(a.live == NULL);
}

int main(void)
{
    UNIT_RUN(test_defaults);
    UNIT_RUN(test_values);
    UNIT_RUN(test_serini_rules);
    UNIT_RUN(test_transport_keys);
    UNIT_RUN(test_errors);
    UNIT_RUN(test_load);
    UNIT_RUN(test_changed);
    UNIT_RUN(test_reload);
    UNIT_RUN(test_live);
    return unit_summary();
}
