/* snapshot: the rate-limit table kept across restarts in
 * filtermail_ratelimit_state.
 *
 * The table is written whole (common/fileio: a temporary file renamed over
 * the old one) at shutdown, and on SIGHUP and every SNAPSHOT_EVERY seconds
 * when it changed, by a forked child so that the event loop never waits for
 * the disk (a million senders take about a second to write); it is read back
 * at start, so a restart does not hand every sender a new burst. A failing
 * disk is logged at the first failure and then every tenth.
 *
 * Logs (filtermail::policyd). Single-threaded: one per process.
 */
#ifndef FILTERMAIL_POLICYD_SNAPSHOT_H
#define FILTERMAIL_POLICYD_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>

#include "ratelimit.h"

#define SNAPSHOT_EVERY 60 /* seconds */

struct snapshot;

/* For the state file at path ("" turns persistence off). Returns NULL when
 * out of memory. */
struct snapshot *snapshot_new(const char *path);

/* Waits for a background writer, then frees; sets *sp to NULL. NULL-safe. */
void snapshot_free(struct snapshot **sp);

/* Reads the file into the (empty) table at start; a missing file is no
 * error, a bad one is logged and ignored. Returns the senders loaded. */
long snapshot_load(struct snapshot *s, struct ratelimit *rl, uint64_t now_mono, uint64_t now_wall);

/* Notes that the in-process table changed since the last save. */
void snapshot_touch(struct snapshot *s);

/* True when the table changed since the last save started. */
bool snapshot_dirty(const struct snapshot *s);

/* Starts a background save (unless one is running or persistence is off);
 * why goes into the debug log. */
void snapshot_save_background(struct snapshot *s, const struct ratelimit *rl, const char *why);

/* Once a second: reaps a finished writer (a failed one leaves the table
 * dirty, to be saved again) and starts the periodic save when due. */
void snapshot_tick(struct snapshot *s, const struct ratelimit *rl, uint64_t now_mono);

/* Saves now, in this process, after any background writer is done (at
 * shutdown). Returns 0, or -1 (logged). */
int snapshot_save(struct snapshot *s, const struct ratelimit *rl, const char *why);

#endif
