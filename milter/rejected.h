/* rejected: keeps messages refused by the DKIM check for inspection (spec 6.7),
 * bounded where upstream is not.
 *
 * While an incoming message streams by, it is spooled into an anonymous file
 * (O_TMPFILE) in the store's directory: nothing is named, so nothing is left
 * behind when the message passes or the milter dies. Only a rejected message
 * gets a name, <dir>/<reason>/<unix-seconds>-<queue-id>-<n>.eml, mode 0600;
 * then the oldest files of that reason are deleted until at most max_files
 * files and max_bytes bytes remain. A message larger than max_bytes is not
 * kept.
 */
#ifndef FILTERMAIL_REJECTED_H
#define FILTERMAIL_REJECTED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct rejected_store;

/* Opens the directory, creating it (mode 0700, owned by uid:gid, for the
 * user the daemon will run as) when it is missing. NULL with a message in err. */
struct rejected_store *rejected_open(const char *dir, uint32_t max_files, uint64_t max_bytes,
                                     uid_t uid, gid_t gid, char *err, size_t errlen);
void rejected_close(struct rejected_store **s);

/* One message's spool. */
struct rejected_spool {
    int fd;          /* -1: not spooling (off, failed, or too large) */
    uint64_t bytes;
};

/* Starts spooling; on failure the spool stays off (fd -1) and errno tells. */
void rejected_spool_begin(struct rejected_store *s, struct rejected_spool *sp);
/* Appends; past max_bytes or on a write error the spool is dropped. */
void rejected_spool_write(struct rejected_store *s, struct rejected_spool *sp, const void *data,
                          size_t len);
/* Drops the spool (the message passed). */
void rejected_spool_discard(struct rejected_spool *sp);

/* Names the spooled message under reason ("dkim-verify") and applies the caps.
 * qid must be Postfix's queue id (only letters and digits are kept). Writes
 * the path, or a reason it was not kept, to out. Returns 0 or -1. The spool is
 * closed either way. */
int rejected_keep(struct rejected_store *s, struct rejected_spool *sp, const char *reason,
                  const char *qid, char *out, size_t outlen);

#endif
