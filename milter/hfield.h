/* hfield: a header field as it was in the message, rebuilt from what
 * Postfix's milter protocol gives (name and value apart), for the DKIM
 * verifier and signer, the MIME parser and the rejected-mail spool.
 *
 * Pure; thread-safe on distinct buffers.
 */
#ifndef FILTERMAIL_HFIELD_H
#define FILTERMAIL_HFIELD_H

#include <stdbool.h>

#include "buf.h"

/* Replaces f's content with "Name:" + value + CRLF. With leadspc
 * (SMFIP_HDR_LEADSPC negotiated) the value keeps its leading space as
 * received; without it ": " is put in. Postfix sends folded lines joined by
 * a bare LF (or CRLF): each becomes CRLF. Returns 0; or -1 with errno
 * ENOBUFS when the field is longer than f's maximum (the message's fault:
 * 552, final) or ENOMEM (ours: 451). */
int hfield_build(struct buf *f, const char *name, const char *value, bool leadspc);

#endif
