/* mailbox: the per-address flag files of a chatmail relay (spec 2.4).
 *
 * `<mailboxes_dir>/<address>/enforceE2EEincoming` makes a recipient refuse
 * cleartext; `<mailboxes_dir>/<address>/DISABLED` disables an address. Lookups
 * are safe against any address string: an address that is empty, lacks '@' or
 * contains '/' never reaches a path (it takes the flag's default), the mailbox
 * directory is opened relative to mailboxes_dir without following a symlink,
 * and a flag must not be a symlink either, so nothing outside mailboxes_dir is
 * ever looked at. Nothing is cached: every message checks again.
 *
 * Thread-safe (no shared state).
 */
#ifndef FILTERMAIL_MAILBOX_H
#define FILTERMAIL_MAILBOX_H

#include <stdbool.h>

struct mailbox_flags {
    bool enforce_e2ee; /* cleartext must be refused (also for invalid addresses) */
    bool disabled;     /* the address is disabled */
};

/* Looks up both flags of addr (lowercased, without angle brackets). Returns 0
 * and fills *flags_r. A missing mailbox directory or flag means "absent", as
 * upstream. Returns -1 with errno set when the answer cannot be known (the
 * directory is unreadable, a mailbox or flag is a symlink: ELOOP, an I/O
 * error); callers answer with a temporary failure rather than guess. */
int mailbox_lookup(const char *mailboxes_dir, const char *addr, struct mailbox_flags *flags_r);

#endif
