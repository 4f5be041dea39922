/* reply: SMTP reply texts as a milter sends them.
 *
 * Pure; thread-safe.
 */
#ifndef FILTERMAIL_REPLY_H
#define FILTERMAIL_REPLY_H

#include <stddef.h>

/* The longest reply sent, as libmilter allows (MAXREPLYLEN in
 * libmilter/smfi.c): code, enhanced code, text and separators together. */
#define REPLY_MAX 980

/* Prepares text for a reply with code ("554") and xcode ("5.7.1" or ""):
 * '%' is doubled, the milter convention (sendmail expands reply texts
 * printf-style; Postfix undoes the doubling), and a text that would not fit
 * REPLY_MAX (a From: of a thousand characters quoted back) is cut, never a
 * doubled '%' in half. out has room for REPLY_MAX + 1 bytes. Returns out. */
char *reply_escape(const char *code, const char *xcode, const char *text, char *out);

#endif
