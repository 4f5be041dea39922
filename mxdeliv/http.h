/* http: the /mxdeliv request handler, driven by libmicrohttpd.
 *
 * The request headers become the envelope (request.c), the body is checked
 * as it streams by (request.c) and passed on at once to the DATA of an SMTP
 * session with Postfix's reinjection smtpd (reinject.c), which runs
 * filtermail-milter in the incoming direction. So every check (encryption,
 * DKIM, size, envelope rewrite) happens in one place, and the HTTP answer is
 * Postfix's: 200 `250 OK` when it queued the message for every recipient the
 * request named, 400 (413 for 552) with its reply when it refused, 503 with
 * a 4xx reply when it could not take the message now.
 *
 * Streaming, not spooling: the SMTP session is opened when the request
 * headers are in (so a refused recipient or an unreachable Postfix is answered
 * before the body is read), and each body chunk is written to it as it
 * arrives, through a 64 KiB buffer; nothing holds a whole message. A body
 * found invalid, or a client gone before the end, only costs an SMTP session
 * closed without its final dot: Postfix discards the message. On a direct
 * connection the idle timeout bounds each pause and HTTP_REQUEST_DEADLINE
 * the body from the end of the headers on.
 *
 * Each request holds a reference to the configuration it started with, so a
 * reload changes the next requests only. Thread-safe: libmicrohttpd calls
 * these from one thread per connection; nothing is shared but the context.
 */
#ifndef FILTERMAIL_MXDELIV_HTTP_H
#define FILTERMAIL_MXDELIV_HTTP_H

#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>

#include <microhttpd.h>

#include "config.h"
#include "reinject.h"

/* The longest a request's body may take to arrive, in seconds. */
#define HTTP_REQUEST_DEADLINE 600
/* Each connect, read and write towards Postfix (spec 3.5). */
#define HTTP_SMTP_TIMEOUT_MS 60000

/* What the handlers share: the cls argument of each. */
struct http_context {
    struct config_live *live;        /* the running configuration */
    char helo[INET6_ADDRSTRLEN + 8]; /* our name towards Postfix */
    struct reinject_pool *pool;      /* SMTP sessions kept between requests */
};

/* The MHD_AccessHandlerCallback (cls: the context). */
enum MHD_Result http_on_request(void *cls, struct MHD_Connection *c, const char *url,
                                const char *method, const char *version, const char *upload,
                                size_t *upload_size, void **req_cls);

/* The MHD_OPTION_NOTIFY_COMPLETED callback: ends the request's SMTP session
 * (an unfinished message is discarded by Postfix) and frees it. */
void http_on_completed(void *cls, struct MHD_Connection *c, void **req_cls,
                       enum MHD_RequestTerminationCode why);

/* The MHD_OPTION_EXTERNAL_LOGGER: reaching the connection limit is a
 * warning, the rest debug detail. */
void http_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

#endif
