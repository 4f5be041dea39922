/* rejected: keeps messages refused by the DKIM check for inspection (spec 6.7),
 * bounded where upstream is not.
 *
 * While an incoming message streams by, it is spooled: its first
 * REJECTED_MEM_MAX bytes in memory (most messages end there: no file system
 * work for a message that passes), beyond that into an anonymous file
 * (O_TMPFILE) in the store's directory: nothing is named, so nothing is left
 * behind when the message passes or the milter dies. Only a rejected message
 * is written to a file of its own (fileio.h's atomic writer: whole, synced,
 * then named), <dir>/<reason>/<unix-seconds>-<queue-id>-<n>.eml, mode 0600;
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

/* Bytes of a message kept in memory before the spool becomes a file. */
#define REJECTED_MEM_MAX (64 * 1024)

/* One message's spool; the fields are for tests. */
struct rejected_spool {
    bool on;              /* spooling this message */
    bool too_large;       /* dropped: over max_bytes */
    int err;              /* dropped: errno of the failed file */
    int fd;               /* the file, -1 while the message is in memory */
    uint64_t bytes;
    unsigned char *mem;   /* the message while it fits REJECTED_MEM_MAX */
    size_t memcap;
};

/* Makes an empty spool (once, before its first use). */
void rejected_spool_init(struct rejected_spool *sp);
/* Starts spooling a message (s may be NULL: the store is off). */
void rejected_spool_begin(struct rejected_store *s, struct rejected_spool *sp);
/* Appends; past max_bytes or when the file cannot be made or written the
 * spool is dropped. */
void rejected_spool_write(struct rejected_store *s, struct rejected_spool *sp, const void *data,
                          size_t len);
/* Drops the spool (the message passed) and frees what it held. */
void rejected_spool_discard(struct rejected_spool *sp);

/* Names the spooled message under reason ("dkim-verify") and applies the caps.
 * qid must be Postfix's queue id (only letters and digits are kept). Writes
 * the path, or a reason it was not kept, to out. Returns 0 or -1. The spool is
 * closed either way. */
int rejected_keep(struct rejected_store *s, struct rejected_spool *sp, const char *reason,
                  const char *qid, char *out, size_t outlen);

#endif
