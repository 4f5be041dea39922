/* state: what one delivery leaves for the next, in a directory shared by all
 * filtermail-transport processes (filtermail_transport_state).
 *
 * pipe(8) starts a fresh process per delivery, so anything learnt about a
 * remote host would be lost. Three things are kept:
 *
 *  - hosts that refused HTTPS (an HTTPS failure followed by an SMTP delivery):
 *    HTTPS is skipped for them for 30 minutes, as upstream does;
 *  - hosts that could not be connected to: skipped for
 *    filtermail_transport_down_time, so a dead MX does not cost every message
 *    a connect timeout (pipe(8) deferrals never throttle a destination);
 *  - TLS sessions per host, channel and verification policy, for resumption.
 *
 * Layout:
 *
 *    <dir>/hosts          text, one entry a line, rewritten atomically:
 *                           filtermail-transport-state 1
 *                           https-refused mx.example.org 443 1767225600
 *                           down mx.example.org 25 1767225900
 *                         (kind, host, port, expiry in Unix seconds)
 *    <dir>/hosts.lock     flock(2)ed by writers (read-modify-write)
 *    <dir>/tls/<xyz>      one of 4096 slots (3 hex digits of a hash of the
 *                         key): a line with the key, then the DER session
 *
 * Bounded: at most STATE_MAX_ENTRIES host entries (expired ones are dropped,
 * then those expiring first) and 4096 session files of at most 16 KiB.
 * Concurrency-safe: readers see a whole file (rename), writers serialise on
 * the lock file (for at most STATE_LOCK_WAIT_MS; then the update is skipped).
 * Temporary files (*.tmp) left by a killed process are removed once older
 * than STATE_TMP_AGE, after the next hosts update or by one session save in
 * STATE_SWEEP_EVERY. Harmless to delete at any time: a missing or damaged file is
 * an empty state; damaged lines are skipped.
 *
 * The table functions are pure; the store functions do the I/O. Not
 * thread-safe (one delivery per process).
 */
#ifndef FILTERMAIL_STATE_H
#define FILTERMAIL_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "fileio.h"

#define STATE_MAX_ENTRIES 4096
#define STATE_MAX_FILE (1024 * 1024)
#define STATE_SESSION_MAX (16 * 1024)
#define STATE_SESSION_SLOTS 4096
/* Upstream skips HTTPS for a host that refused it for 30 minutes. */
#define STATE_HTTPS_REFUSED_TIME (30 * 60)
#define STATE_TMP_SUFFIX FILEIO_TMP_SUFFIX /* the same names as fileio's writer */
#define STATE_TMP_AGE 600
#define STATE_SWEEP_EVERY 64
/* How long a writer waits for the hosts lock before giving up. */
#define STATE_LOCK_WAIT_MS 2000

enum state_kind { STATE_HTTPS_REFUSED, STATE_DOWN };

struct state_entry {
    enum state_kind kind;
    char host[256];
    uint16_t port;
    int64_t until; /* Unix seconds */
};

struct state_table {
    struct state_entry *e;
    size_t n, cap;
};

void state_table_init(struct state_table *t);
void state_table_free(struct state_table *t);

/* Reads the text of a hosts file into t (which is emptied first). Bad lines
 * and entries expired at `now` are skipped; at most STATE_MAX_ENTRIES are
 * kept. Returns the number of lines skipped as bad, or -1 when out of memory. */
int state_parse(const char *text, size_t len, int64_t now, struct state_table *t);

/* Writes t as a hosts file (entries expired at `now` left out). Returns 0 or
 * -1 (out of memory, or out past its maximum). */
int state_format(const struct state_table *t, int64_t now, struct buf *out);

/* True when t has an unexpired entry of that kind for host and port. */
bool state_has(const struct state_table *t, enum state_kind kind, const char *host,
               uint16_t port, int64_t now);

/* Adds or replaces an entry. When the table is full, the entry expiring first
 * makes room. Returns 0, or -1 when out of memory or host is not a host name. */
int state_set(struct state_table *t, enum state_kind kind, const char *host, uint16_t port,
              int64_t until);

/* Removes the entry, if any. Returns true when one was removed. */
bool state_clear(struct state_table *t, enum state_kind kind, const char *host, uint16_t port);

/* A change to apply to the stored table. */
struct state_op {
    bool set;        /* set (until) or clear */
    enum state_kind kind;
    char host[256];
    uint16_t port;
    int64_t until;
};

struct state_store;

/* Opens (creating it, mode 0700, when missing) the state directory. Returns
 * NULL with a message in err when it cannot be used. */
struct state_store *state_open(const char *dir, char *err, size_t errlen);
void state_close(struct state_store **s);

/* Reads the hosts file into t: an empty table when there is none, or one
 * that cannot be used (larger than STATE_MAX_FILE, not a regular file).
 * Returns 0, or -1 when it could not be read (a read error: never part of
 * it as if it were all) or parsed (out of memory); t is then empty. */
int state_load(struct state_store *s, int64_t now, struct state_table *t);

/* Removes temporary files older than STATE_TMP_AGE at `now` from the
 * directory and tls/. Returns how many were removed. */
int state_sweep(struct state_store *s, int64_t now);

/* Applies ops to the stored table under the lock: reads the current file,
 * changes it, writes and renames a new one if anything changed. Returns 0 or
 * -1 with a message in err. */
int state_update(struct state_store *s, int64_t now, const struct state_op *ops, size_t nops,
                 char *err, size_t errlen);

/* The slot file name ("tls/3a7") of a session key. Pure. */
void state_session_slot(const char *key, char out[8]);

/* Loads the session stored under key into a new buffer (*der_r, free()d by
 * the caller). Returns 0, or -1 when there is none (or it is for another key). */
int state_session_load(struct state_store *s, const char *key, unsigned char **der_r,
                       size_t *len_r);

/* Stores a session under key (replacing what its slot held). Returns 0 or -1. */
int state_session_save(struct state_store *s, const char *key, const unsigned char *der,
                       size_t len);

#endif
