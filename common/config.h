/* config: the relay's chatmail.ini, read the way upstream filtermail reads it.
 *
 * Only the [params] section is used. Syntax (upstream's serini rules, spec 2.1):
 * lines split on LF (a trailing CR dropped) and trimmed; empty lines and lines
 * starting with ';' or '#' are comments; there are no inline comments; `[name]`
 * opens a section, and declaring one again discards its earlier keys; `key =
 * value` splits at the first '=', both sides trimmed, quotes kept, escapes
 * \\ \n \r \t \" \; \# undone; the last of repeated keys wins; unknown keys and
 * other lines are ignored. The file must be UTF-8.
 *
 * Every program loads the same file through config_load(); the struct is
 * immutable afterwards and may be shared by threads. It is reference-counted:
 * a reload (config_reload) makes a new one that replaces the running one
 * whole, and each user of the old one lets go of it when done with it, so
 * any number of reloads keeps at most the configurations still in use.
 */
#ifndef FILTERMAIL_CONFIG_H
#define FILTERMAIL_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most a chatmail.ini may hold; a larger file is a configuration error. */
#define CONFIG_MAX_FILE_SIZE (1024 * 1024)

/* A space-separated list value (empty items ignored). */
struct config_list {
    char **items;
    size_t n;
};

struct config {
    /* Keys of upstream filtermail 0.7.4 (spec 2.2), with upstream's defaults. */
    char *mail_domain;                       /* required */
    char *mailboxes_dir;                     /* /home/vmail/mail/<mail_domain> */
    char *filtermail_host;                   /* 127.0.0.1 (an IP address) */
    uint16_t filtermail_smtp_port;           /* 10080 */
    uint16_t filtermail_smtp_port_incoming;  /* 10081 */
    uint16_t filtermail_http_port_incoming;  /* 10082 */
    uint16_t filtermail_lmtp_port_transport; /* 10083 */
    char *postfix_host;                      /* 127.0.0.1 */
    uint16_t postfix_reinject_port;          /* 10025 */
    uint16_t postfix_reinject_port_incoming; /* 10026 */
    uint64_t max_message_size;               /* 31457280 */
    uint32_t max_user_send_per_minute;       /* 60, nonzero */
    uint32_t max_user_send_burst_size;       /* 10, nonzero */
    /* Removed upstream in 0.7.0; kept here as optional exceptions (spec 4.8). */
    struct config_list passthrough_senders;
    struct config_list passthrough_recipients;

    /* filtermail's own keys. */
    char *milter_socket;                     /* filtermail_milter_socket */
    uint32_t milter_timeout;                 /* filtermail_milter_timeout, seconds: 600 */
    struct config_list outgoing_daemon_names; /* filtermail_outgoing_daemon_names */
    char *user;                              /* filtermail_user */
    char *socket_group;                      /* filtermail_socket_group */
    char *log_level;                         /* filtermail_log_level */

    /* DKIM (milter). */
    bool dkim_sign;                          /* filtermail_dkim_sign: yes */
    char *dkim_selector;                     /* filtermail_dkim_selector: opendkim */
    char *dkim_key;                          /* filtermail_dkim_key */
    char *rejected_dir;                      /* filtermail_rejected_dir ("" = off) */
    uint32_t rejected_max_files;             /* filtermail_rejected_max_files: 100 */
    uint64_t rejected_max_bytes;             /* filtermail_rejected_max_bytes: 100 MiB */

    /* DNS (milter, transport). */
    char *unbound_config;                    /* filtermail_unbound_config ("" = none) */
    char *trust_anchor;                      /* filtermail_trust_anchor */
    uint32_t dns_timeout;                    /* filtermail_dns_timeout, seconds: 10 */

    /* Rate limiting (policy server). */
    char *policy_socket;                     /* filtermail_policy_socket */
    struct config_list ratelimit_exempt;     /* filtermail_ratelimit_exempt */
    char *ratelimit_redis;                   /* filtermail_ratelimit_redis ("" = off) */
    char *ratelimit_redis_fallback;          /* filtermail_ratelimit_redis_fallback: local */
    char *ratelimit_state;                   /* filtermail_ratelimit_state ("" = off) */

    /* Remote delivery (filtermail-transport). */
    uint16_t transport_smtp_port;            /* filtermail_transport_smtp_port: 25 */
    uint16_t transport_https_port;           /* filtermail_transport_https_port: 443 */
    char *tls_ca_file;                       /* filtermail_tls_ca_file ("" = system store) */
    char *transport_state;                   /* filtermail_transport_state ("" = none) */
    char *transport_tls_policy;              /* filtermail_transport_tls_policy ("" = none) */
    char *transport_log;                     /* filtermail_transport_log: syslog */
    char *transport_socket;                  /* filtermail_transport_socket (deliverd) */
    uint32_t transport_connect_timeout;      /* filtermail_transport_connect_timeout, s: 30 */
    uint32_t transport_io_timeout;           /* filtermail_transport_io_timeout, s: 120 */
    uint32_t transport_https_timeout;        /* filtermail_transport_https_timeout, s: 60 */
    uint32_t transport_deadline;             /* filtermail_transport_deadline, s: 600 */
    uint32_t transport_down_time;            /* filtermail_transport_down_time, s: 300 */
    uint32_t transport_destination_concurrency; /* ..._destination_concurrency: 20 */

    atomic_uint refs; /* private: config_ref(), config_free() */
};

/* The daemons, for which keys each may change at run time. */
enum config_program {
    CONFIG_PROG_MILTER = 1u << 0,
    CONFIG_PROG_POLICYD = 1u << 1,
    CONFIG_PROG_MXDELIV = 1u << 2,
};

/* Reads and checks the file at path. Returns 0 and a new config in *cfg_r, or
 * -1 with a message in err (at most errlen bytes, NUL-terminated) that names
 * the file and, for a bad or missing value, the key. The caller prints it after
 * "Failed to read config: " and exits 1. Free with config_free. */
int config_load(const char *path, struct config **cfg_r, char *err, size_t errlen);

/* As config_load, from text in memory; origin names it in messages. */
int config_parse(const char *text, size_t len, const char *origin, struct config **cfg_r,
                 char *err, size_t errlen);

/* Drops one reference and sets *cfg to NULL; the last frees the config.
 * NULL-safe; thread-safe. */
void config_free(struct config **cfg);

/* Takes another reference to c (thread-safe); returns c. Each is dropped
 * with config_release (or config_free). */
const struct config *config_ref(const struct config *c);

/* config_free for a const pointer (a reference taken with config_ref). */
void config_release(const struct config **cfg);

/* SIGHUP: reads path again for the daemon prog (one CONFIG_PROG_*) while
 * running is in use. A file that does not load returns -1 with the message
 * in err (the caller logs "Failed to reload config: <err> (keeping the
 * running configuration)"). Otherwise returns 0 with a new configuration in
 * *new_r: the file's values for the keys prog may change at run time, and
 * running's values for the keys it reads only at start-up (the key table in
 * config.c says which) and for the NULL-terminated extra_fixed (keys fixed
 * for this run only; may be NULL). *restart_key_r is the first of those
 * whose value in the file differs (for "... changed ...: takes effect at the
 * next restart"), or NULL. Thread-safe. */
int config_reload(const char *path, const struct config *running, enum config_program prog,
                  const char *const *extra_fixed, struct config **new_r,
                  const char **restart_key_r, char *err, size_t errlen);

/* The running configuration of a threaded daemon: readers take a reference
 * to the current one, a reload replaces it whole. */
struct config_live;

/* Takes over the caller's reference to c. NULL when out of memory. */
struct config_live *config_live_new(struct config *c);

/* The current configuration, with a reference for the caller to release
 * (config_release). Thread-safe. */
const struct config *config_live_get(struct config_live *l);

/* Makes c (whose reference it takes over) the current configuration and
 * drops the live holder's reference to the previous one. Thread-safe. */
void config_live_set(struct config_live *l, struct config *c);

/* Drops the current configuration and frees the holder; sets *l to NULL. */
void config_live_free(struct config_live **l);

/* The first of the NULL-terminated key names whose values differ between a
 * and b, or NULL when they are all equal (a reload uses it to name the
 * settings that need a restart). An unknown name is returned as differing. */
const char *config_changed(const struct config *a, const struct config *b,
                           const char *const *keys);

/* True when item is in the list (exact, case-sensitive comparison). */
bool config_list_has(const struct config_list *l, const char *item);

#endif
